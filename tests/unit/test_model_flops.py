"""fastsam_core.model.flops: parameter and FLOP counts per part."""

from __future__ import annotations

import pytest

from fastsam_core.config import FASTSAM_S
from fastsam_core.model import fastsam_s
from fastsam_core.model.flops import count_flops, count_parameters


def test_parameters_per_part_sum_to_the_spec_total():
    counts = count_parameters(fastsam_s())
    assert counts["total"] == 11_790_483  # spec §1.7
    assert counts["backbone"] + counts["neck"] + counts["head"] == counts["total"]


def test_flops_per_part_scale_with_area():
    small, large = count_flops(FASTSAM_S, 320), count_flops(FASTSAM_S, 640)
    assert small["total"] == small["backbone"] + small["neck"] + small["head"]
    for part in small:  # convolutions dominate: FLOPs grow exactly with the pixel count
        assert large[part] == 4 * small[part], part
    # Stem: 3x3 conv 3 -> 32 at stride 2, 2 FLOPs per multiply-add (FlopCounterMode convention).
    assert small["backbone"] > 2 * 160 * 160 * 32 * 3 * 9
    with pytest.raises(ValueError, match="multiple of 32"):
        count_flops(FASTSAM_S, 100)
