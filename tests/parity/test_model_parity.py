"""Our converter + YoloV8Seg vs the ultralytics 8.4.190 oracle, stage by stage (spec §1, §3.10).

Checkpoints are random-weight models made by the oracle, BatchNorm recalibrated on the real
photos and saved the way its trainer saves (tests/support/oracle_models.py); OUR converter reads
them in a subprocess where `import ultralytics` fails. Both networks then run the same input
tensor (a real photo resized to the case size) and every stage is compared:
backbone P3/P4/P5 (oracle layers 4/6/9), neck N3/N4/N5 (15/18/21), per-level raw box / class /
mask-coefficient tensors, protos, and the decoded eval output (B, 4 + nc + 32, A).
Modes: unfused vs unfused; ours fused with formula "current" vs the oracle's `.fuse()`; ours
fused with "v8.0" (the official FastSAM formula) vs the oracle's `.fuse()` with that formula
swapped in, and vs the unfused oracle (looser: fusion changes rounding, see FUSION_ATOL).
FastSAM-x cases are kept to one input size each: x is slow on 2 CPU cores.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.oracle
pytest.importorskip("ultralytics", reason="parity tests need the oracle: pip install -e .[oracle]")

from tests.support.oracle_models import (
    calibrated_oracle_checkpoint,
    convert_in_subprocess,
    load_converted,
    load_oracle,
    oracle_checkpoint,
    oracle_stages,
    our_stages,
    photo_input,
    split_decoded,
)

ATOL = 1e-4  # spec §3.10: fp32 on CPU, same formula and op order (measured: bit-exact)
# Fused vs unfused is not like with like: folding BN into the weights changes the rounding of
# every conv, and the error grows with depth and activation size. Measured max (CPU fp32):
# s 8.2e-5, x at 640x640 1.7e-4 (protos; layer 15: 1.3e-4). So this mode gets 3e-4.
FUSION_ATOL = 3e-4
# Decoded boxes are compared in grid units (xywh / stride, up to ~130): our test-side decode
# (spec §1.5) orders its float ops differently from the oracle's, so allow ~8 ulp relative.
DECODED_RTOL = 1e-6
RESULTS_FILE = os.environ.get("FASTSAM_PARITY_RESULTS")  # optional JSON lines of measured diffs


@dataclass(frozen=True)
class Case:
    scale: str
    reg_max: int
    nc: int
    dtype: torch.dtype
    calibrated: bool  # the class-calibrated checkpoint the e2e tests share (built once)

    @property
    def id(self) -> str:
        return f"{self.scale}-r{self.reg_max}-nc{self.nc}-{str(self.dtype).removeprefix('torch.')}"

    def checkpoint(self) -> Path:
        build = calibrated_oracle_checkpoint if self.calibrated else oracle_checkpoint
        return build(self.scale, self.reg_max, self.nc, self.dtype)


S16 = Case("s", 16, 1, torch.float16, calibrated=True)  # FastSAM-s twin
S26 = Case("s", 26, 1, torch.float32, calibrated=False)
S16_NC80 = Case("s", 16, 80, torch.float32, calibrated=False)
X26 = Case("x", 26, 1, torch.float16, calibrated=True)  # FastSAM-x twin
X16 = Case("x", 16, 1, torch.float32, calibrated=False)
CASES = {c.id: c for c in (S16, S26, S16_NC80, X26, X16)}

# (case, (B, H, W)): every checkpoint at least once; non-square sizes; one batch of 2.
RUNS = [
    (S16, (1, 640, 640)),
    (S16, (1, 704, 1024)),
    (S16, (1, 320, 480)),
    (S26, (2, 320, 480)),
    (S26, (1, 640, 640)),
    (S16_NC80, (1, 320, 480)),
    (X26, (1, 640, 640)),
    (X16, (1, 320, 480)),
]


class _Store:
    """Per-session caches: converted files, loaded models (oracle + ours, unfused + fused)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.models: dict[str, dict] = {}

    def models_for(self, case: Case) -> dict:
        if case.id not in self.models:
            self.models.clear()  # keep at most one case's models in memory (x is 5 x 290 MB)
            ckpt = case.checkpoint()
            converted = self.tmp / f"{case.id}.converted.pt"
            if not converted.exists():
                convert_in_subprocess(ckpt, converted)
            oracle = load_oracle(ckpt)
            ours, meta = load_converted(converted)
            self.models[case.id] = {
                "checkpoint": ckpt,
                "meta": meta,
                "oracle": oracle,
                "oracle_current": load_oracle(ckpt, fuse="current"),
                "oracle_v8.0": load_oracle(ckpt, fuse="v8.0"),
                "ours": ours,
                "ours_current": load_converted(converted, fuse="current")[0],
                "ours_v8.0": load_converted(converted, fuse="v8.0")[0],
            }
        return self.models[case.id]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> _Store:
    return _Store(tmp_path_factory.mktemp("parity"))


def _with_split_decoded(stages: dict[str, torch.Tensor], nc: int) -> dict[str, torch.Tensor]:
    sizes = [tuple(stages[f"box{i}"].shape[2:]) for i in range(3)]
    out = {k: v for k, v in stages.items() if k != "decoded"}
    out.update(split_decoded(stages["decoded"], nc, sizes))
    return out


def _compare(
    ours: dict[str, torch.Tensor], ref: dict[str, torch.Tensor], nc: int, atol: float
) -> tuple[dict, dict]:
    ours, ref = _with_split_decoded(ours, nc), _with_split_decoded(ref, nc)
    diffs, bad = {}, {}
    for name, want in ref.items():
        got = ours[name]
        assert got.shape == want.shape, (
            f"{name}: ours {tuple(got.shape)} vs oracle {tuple(want.shape)}"
        )
        diff = (got - want).abs()
        diffs[name] = float(diff.max())
        rtol = DECODED_RTOL if name.startswith("decoded") else 0.0
        if not (diff <= atol + rtol * want.abs()).all():
            bad[name] = diffs[name]
    return diffs, bad


def _record(case: Case, shape: tuple[int, int, int], mode: str, diffs: dict) -> None:
    if RESULTS_FILE:
        with open(RESULTS_FILE, "a") as f:
            f.write(
                json.dumps({"case": case.id, "input": shape, "mode": mode, "max_abs": diffs}) + "\n"
            )


def _check_config(store: _Store, c: Case) -> None:
    models = store.models_for(c)
    cfg = models["meta"]["config"]
    oracle = models["oracle"]
    head = oracle.model[-1]
    assert (cfg.scale, cfg.reg_max, cfg.num_classes) == (c.scale, head.reg_max, head.nc)
    assert cfg.reg_max == c.reg_max and cfg.num_classes == c.nc
    assert cfg.imgsz == 1024
    assert cfg.class_names == tuple(oracle.names[i] for i in range(c.nc))
    n_ours = sum(p.numel() for p in models["ours"].parameters())
    assert n_ours == sum(p.numel() for p in oracle.parameters())
    n_fused = sum(p.numel() for p in models["ours_current"].parameters())
    assert n_fused == sum(p.numel() for p in models["oracle_current"].parameters())


def _check_stages(store: _Store, case: Case, shape: tuple[int, int, int]) -> None:
    B, H, W = shape
    image = torch.cat([photo_input(H, W, index=i) for i in range(B)])  # (B, 3, H, W) in [0, 1]
    models = store.models_for(case)
    ref = oracle_stages(models["oracle"], image)
    ref_current = oracle_stages(models["oracle_current"], image)
    ref_v80 = oracle_stages(models["oracle_v8.0"], image)
    failures = {}
    for mode, ours_key, reference, atol in (
        ("unfused", "ours", ref, ATOL),
        ("fused-current vs oracle fused-current", "ours_current", ref_current, ATOL),
        ("fused-v8.0 vs oracle fused-v8.0", "ours_v8.0", ref_v80, ATOL),
        ("fused-v8.0 vs oracle unfused", "ours_v8.0", ref, FUSION_ATOL),
    ):
        diffs, bad = _compare(our_stages(models[ours_key], image), reference, case.nc, atol)
        _record(case, shape, mode, diffs)
        print(f"\n{case.id} {shape} {mode}: " + ", ".join(f"{k}={v:.2e}" for k, v in diffs.items()))
        if bad:
            failures[mode] = bad
    assert not failures, f"stages over tolerance (max abs diff per stage): {failures}"


# One test function so pytest keeps this order: each case's models are loaded once (FastSAM-x
# takes most of the time); "config" runs before the first "stages" run of its case.
ORDERED: list[tuple[str, Case, tuple[int, int, int] | None]] = []
for _case, _shape in RUNS:
    if not any(c is _case for _, c, _ in ORDERED):
        ORDERED.append(("config", _case, None))
    ORDERED.append(("stages", _case, _shape))


@pytest.mark.parametrize(
    "kind, case, shape",
    ORDERED,
    ids=[f"{k}-{c.id}" + (f"-{s[0]}x{s[1]}x{s[2]}" if s else "") for k, c, s in ORDERED],
)
def test_parity(store: _Store, kind: str, case: Case, shape: tuple[int, int, int] | None) -> None:
    """config: our converter's inferred config and parameter counts equal the oracle's.
    stages: every stage within tolerance, unfused and fused (see the module docstring)."""
    if kind == "config":
        _check_config(store, case)
    else:
        assert shape is not None
        _check_stages(store, case, shape)


def test_calibrated_checkpoint_gives_realistic_detection_counts() -> None:
    """The e2e checkpoints are useful only if conf 0.4 keeps a realistic few boxes per photo."""
    from ultralytics import FastSAM

    from tests.support.photos import photo_paths

    model = FastSAM(str(S16.checkpoint()))
    photos = photo_paths()[:3]
    counts = {
        (p.name, imgsz): len(
            model.predict(str(p), conf=0.4, iou=0.9, imgsz=imgsz, verbose=False)[0].boxes
        )
        for p in photos
        for imgsz in (640, 1024)
    }
    print(f"\ndetections at conf 0.4 / iou 0.9: {counts}")
    assert all(3 <= n <= 80 for n in counts.values()), counts
