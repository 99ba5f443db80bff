"""The committed ultralytics-8.0.120 fixture (old checkpoint layout) vs its recorded oracle outputs.

Runs on every test run; no oracle needed. The fixture and the expected tensors were written by
`tests/fixtures/make_ul120_fixture.py` under ultralytics 8.0.120 (see tests/fixtures/README.md).
Conversion runs in a subprocess where `import ultralytics` fails.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.support.oracle_models import (
    convert_in_subprocess,
    load_converted,
    our_stages,
    split_decoded,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CKPT = FIXTURES / "ul120_tiny_seg_r26.pt"
EXPECTED = FIXTURES / "ul120_tiny_seg_r26_expected.pt"
ATOL = 1e-4  # fp32 CPU, spec §3.10; measured: raw stages bit-exact unfused, <= 2e-5 fused
# Decoded boxes are compared in grid units (xywh / stride): our test-side decode (spec §1.5)
# orders its float ops differently from the oracle's, so allow ~8 ulp relative.
DECODED_RTOL = 1e-6


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return convert_in_subprocess(CKPT, tmp_path_factory.mktemp("ul120") / "converted.pt")


@pytest.fixture(scope="module")
def expected() -> dict:
    return torch.load(EXPECTED, weights_only=True)


def test_fixture_files_are_small_and_present() -> None:
    assert CKPT.stat().st_size < 2_000_000
    assert EXPECTED.stat().st_size < 500_000


def test_old_layout_is_really_old() -> None:
    """The pickle references the 8.0.x-only globals the official FastSAM files carry (spec §2.3)."""
    import pickletools
    import zipfile

    with zipfile.ZipFile(CKPT) as zf:
        pkl = zf.read(next(n for n in zf.namelist() if n.endswith("data.pkl")))
    text = "\n".join(str(arg) for _, arg, _ in pickletools.genops(pkl))
    assert "ultralytics.yolo.utils IterableSimpleNamespace" in text
    assert "ultralytics.nn.modules.head Segment" in text
    assert "__builtin__ getattr" in text  # Segment.detect = Detect.forward


def test_converted_config(converted: Path, expected: dict) -> None:
    _, meta = load_converted(converted)
    cfg = meta["config"]
    assert expected["ultralytics_version"] == "8.0.120"
    assert cfg.channels == (8, 8, 16, 32, 64)  # width 0.0625: ceil(64 * 0.0625 / 8) * 8 = 8 ...
    assert cfg.depths == (1, 2, 2, 1) and cfg.neck_depth == 1
    assert cfg.proto_channels == 16
    assert (cfg.num_classes, cfg.reg_max, cfg.num_mask_coeffs) == (1, 26, 32)
    assert cfg.box_hidden == 104
    assert cfg.imgsz == 1024
    assert cfg.class_names == ("object",)
    assert cfg.scale is None  # not one of n/s/m/l/x


STAGES = ["layer4", "layer6", "layer9", "layer15", "layer18", "layer21",
          "head_levels", "mask_coeffs", "protos", "decoded"]  # fmt: skip


def _expected_stage(
    expected: dict, prefix: str, stage: str, reg_max: int
) -> dict[str, torch.Tensor]:
    if stage == "head_levels":  # 8.0.120 keeps per-level cat(box, cls): (B, 4R + nc, Hi, Wi)
        out = {}
        for i in range(3):
            level = expected[f"{prefix}/level{i}"]
            out[f"box{i}"], out[f"cls{i}"] = level.split(
                [4 * reg_max, level.shape[1] - 4 * reg_max], 1
            )
        return out
    if stage == "mask_coeffs":
        return {"mask_coeffs": expected[f"{prefix}/mask_coeffs"]}
    if stage == "decoded":
        sizes = [tuple(expected[f"{prefix}/level{i}"].shape[2:]) for i in range(3)]
        return split_decoded(expected[f"{prefix}/decoded"], 1, sizes)
    return {stage: expected[f"{prefix}/{stage}"]}


def _ours_stage(stages: dict[str, torch.Tensor], stage: str) -> dict[str, torch.Tensor]:
    if stage == "head_levels":
        return {f"{n}{i}": stages[f"{n}{i}"] for n in ("box", "cls") for i in range(3)}
    if stage == "mask_coeffs":
        coeffs = [stages[f"coeff{i}"].flatten(2) for i in range(3)]  # (B, K, Hi*Wi)
        return {"mask_coeffs": torch.cat(coeffs, 2)}  # (B, K, A)
    if stage == "decoded":
        sizes = [tuple(stages[f"box{i}"].shape[2:]) for i in range(3)]
        return split_decoded(stages["decoded"], 1, sizes)
    return {stage: stages[stage]}


@pytest.mark.parametrize(
    "prefix, fuse",
    [("unfused", "none"), ("fused", "v8.0"), ("fused", "current")],
    ids=["unfused", "fused-v8.0", "fused-current"],
)
def test_stage_outputs_match_ul120(converted: Path, expected: dict, prefix: str, fuse: str) -> None:
    model, meta = load_converted(converted, fuse=fuse)  # type: ignore[arg-type]
    image = expected["image_uint8"].float() / 255
    ours = our_stages(model, image)
    reg_max = meta["config"].reg_max
    report, bad = {}, {}
    for stage in STAGES:
        want = _expected_stage(expected, prefix, stage, reg_max)
        got = _ours_stage(ours, stage)
        rtol = DECODED_RTOL if stage == "decoded" else 0.0
        for name in want:
            assert got[name].shape == want[name].shape, (stage, name)
            diff = (got[name] - want[name]).abs()
            report[name] = float(diff.max())
            if not (diff <= ATOL + rtol * want[name].abs()).all():
                bad[name] = report[name]
    print(
        f"\nul120 fixture {prefix} / ours {fuse}: "
        + ", ".join(f"{k}={v:.1e}" for k, v in report.items())
    )
    assert not bad, f"stages over atol {ATOL}: {bad} (all max abs diffs: {report})"


def test_load_model_reads_the_old_layout_in_process(expected: dict) -> None:
    """`fastsam_core.weights.load_model` on the .pt gives the same decoded output."""
    weights = pytest.importorskip("fastsam_core.weights")
    model = weights.load_model(CKPT)
    image = expected["image_uint8"].float() / 255
    got = our_stages(model, image)
    sizes = [tuple(got[f"box{i}"].shape[2:]) for i in range(3)]
    ours = split_decoded(got["decoded"], 1, sizes)
    want = split_decoded(expected["unfused/decoded"], 1, sizes)
    for name in want:
        torch.testing.assert_close(ours[name], want[name], rtol=DECODED_RTOL, atol=ATOL, msg=name)
