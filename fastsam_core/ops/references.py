"""The two post-processing references this package reproduces (spec §3.7, §3.8).

* "official": the FastSAM repository (ultralytics 8.0.120 with logit > 0 mask thresholds).
* "ultralytics": ultralytics 8.4.190's FastSAMPredictor.

`Postprocess` names the choice everywhere (predictor options, box scaling, mask assembly, box
prompts); what each reference does step by step is the table `fastsam_core.postprocess.POSTPROCESS`.
"""

from __future__ import annotations

from typing import Literal, get_args

Postprocess = Literal["official", "ultralytics"]
POSTPROCESS_NAMES: tuple[str, ...] = get_args(Postprocess)


def check_postprocess(value: object, name: str = "postprocess") -> Postprocess:
    """`value` if it names a reference, else ValueError listing both."""
    if value not in POSTPROCESS_NAMES:
        raise ValueError(f"{name} must be one of {POSTPROCESS_NAMES}, got {value!r}")
    return value  # type: ignore[return-value]
