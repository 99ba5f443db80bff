"""Fast path (`fastsam_core.runtime`) against the plain path: every option, end to end.

The network is a YOLOv8n-seg with random weights made realistic in-test (BatchNorm statistics
recalibrated on real photos, class bias shifted so conf 0.4 keeps a few dozen boxes), run
through `Predictor(fast=...)` and `Predictor(fast=False)` on the same photos. Agreement:
masks >= 99.9 % of pixels (a detection present on one side only counts all its pixels as
disagreeing), boxes and scores within the tolerance written beside each option.
"""

from __future__ import annotations

import pytest
import torch

from fastsam_core import Predictor
from fastsam_core.config import yolov8_seg_config
from fastsam_core.model.yolov8_seg import YoloV8Seg, build_model
from fastsam_core.ops.letterbox import letterbox, letterbox_geometry
from fastsam_core.results import Results
from fastsam_core.runtime import (
    FAST_PRESETS,
    FastOptions,
    InferenceRunner,
    bucket_shape,
    crop_output,
    resolve_fast,
)
from tests.support.small_nets import calibrate_random_net, small_photos

IMGSZ = 256
OPTIONS = {"imgsz": IMGSZ, "retina_masks": False}  # letterbox-frame masks: fast to build


def _photos(count: int = 3) -> list[torch.Tensor]:
    """Real photos downscaled (long side 320 px) as (H, W, 3) uint8 RGB; the third is transposed
    to a portrait, so the three letterbox to three different input shapes."""
    photos = small_photos(count, 320)  # square, then two 3:2 landscapes
    if count >= 3:
        photos[2] = photos[2].transpose(0, 1).contiguous()
    return photos


@pytest.fixture(scope="module")
def model() -> YoloV8Seg:
    torch.manual_seed(0)
    net = build_model(yolov8_seg_config("n", imgsz=IMGSZ))
    inputs = [
        letterbox(im, letterbox_geometry(im.shape[:2], IMGSZ)).permute(2, 0, 1)[None].float() / 255
        for im in _photos()
    ]  # (1, 3, H, W) each, as the predictor feeds them
    return calibrate_random_net(net, inputs)  # >= 20 anchors above conf 0.4 on every photo


@pytest.fixture(scope="module")
def plain_results(model: YoloV8Seg) -> list[Results]:
    return Predictor(model, **OPTIONS, fast=False)(_photos())


def _box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, 4), (M, 4) xyxy -> (N, M) IoU."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).prod(-1)
    return inter / (area_a[:, None] + area_b[None] - inter).clamp(min=1e-9)


def compare(plain: Results, fast: Results) -> dict[str, float]:
    """Pixel agreement of the masks and the largest box/score differences of matched detections.

    Detections are matched greedily by box IoU (> 0.5, best first); an unmatched detection on
    either side counts as an empty mask on the other (all its pixels disagree).
    """
    masks_p, masks_f = plain.dense_masks, fast.dense_masks  # (N, H, W) bool
    assert masks_p.shape[1:] == masks_f.shape[1:]
    iou = _box_iou(plain.boxes, fast.boxes) if len(plain) and len(fast) else torch.zeros(0, 0)
    pairs = []
    while iou.numel() and float(iou.max()) > 0.5:
        i, j = divmod(int(iou.argmax()), iou.shape[1])
        pairs.append((i, j))
        iou[i, :], iou[:, j] = -1, -1
    matched_p, matched_f = {i for i, _ in pairs}, {j for _, j in pairs}
    differing = sum(int((masks_p[i] ^ masks_f[j]).sum()) for i, j in pairs)
    differing += sum(int(masks_p[i].sum()) for i in range(len(plain)) if i not in matched_p)
    differing += sum(int(masks_f[j].sum()) for j in range(len(fast)) if j not in matched_f)
    rows = max(len(plain), len(fast), 1)
    box_diff = max(
        (float((plain.boxes[i] - fast.boxes[j]).abs().max()) for i, j in pairs), default=0.0
    )
    score_diff = max((abs(float(plain.scores[i] - fast.scores[j])) for i, j in pairs), default=0.0)
    return {
        "agreement": 1.0 - differing / (rows * masks_p.shape[1] * masks_p.shape[2]),
        "unmatched": float(len(plain) + len(fast) - 2 * len(pairs)),
        "box_diff": box_diff,
        "score_diff": score_diff,
    }


# (options, box tolerance px, score tolerance): fp32 options change only the summation order
# (1e-5-level logits), so detections and masks match.
FP32_CASES = {
    # channels_last convs round differently: ~1e-5 relative on ~1000 px boxes after 60 layers.
    "channels_last": (FastOptions(), 5e-2, 1e-4),
    "nchw_fast_input": (FastOptions(channels_last=False), 5e-2, 1e-4),
}


@pytest.mark.parametrize("name", list(FP32_CASES))
def test_fast_option_matches_plain(
    name: str, model: YoloV8Seg, plain_results: list[Results]
) -> None:
    options, box_tol, score_tol = FP32_CASES[name]
    fast = Predictor(model, **OPTIONS, fast=options)(_photos())
    for plain, res in zip(plain_results, fast):
        assert len(plain) >= 10
        stats = compare(plain, res)
        assert stats["agreement"] >= 0.999, stats
        assert stats["box_diff"] <= box_tol and stats["score_diff"] <= score_tol, stats


def test_bf16_autocast_cpu(model: YoloV8Seg) -> None:
    """bf16 (documented separately): head outputs come back fp32 and within bf16 error of fp32.

    End to end, bf16 is NOT parity-safe on these random-weight nets (measured ~77 % mask
    agreement: small logit shifts flip borderline detections and move DFL boxes), so no preset
    that a default uses enables it.
    """
    photo = _photos(1)[0]  # (H0, W0, 3)
    batch = letterbox(photo, letterbox_geometry(photo.shape[:2], IMGSZ)).permute(2, 0, 1)[None]
    fused = Predictor(model, **OPTIONS, fast=False).model  # (1, 3, H, W) batch above
    plain = InferenceRunner(fused, torch.device("cpu"), None)
    ref = plain(plain.to_input(batch))
    bf16 = InferenceRunner(
        fused, torch.device("cpu"), FastOptions(autocast="bf16", channels_last=False)
    )
    out = bf16(bf16.to_input(batch))
    for name in ("box_dist", "class_logits", "mask_coeffs", "protos"):
        got, want = getattr(out, name), getattr(ref, name)
        assert got.dtype == torch.float32 and got.shape == want.shape, name
        rel = float((got - want).norm() / want.norm())
        # bf16 operands through ~60 random-weight layers: measured 1e-2 (boxes) to 7e-2 (coeffs);
        # fp32 would be < 1e-5, a broken cast ~1.
        assert 1e-4 < rel < 0.2, (name, rel)


def test_bucket_is_grey_padding_then_crop(model: YoloV8Seg) -> None:
    """bucket = the plain network on the input padded with grey (114) at the bottom/right, then
    cropped to the unpadded anchors. Padding is NOT output-preserving (the network sees it through
    its receptive field), so bucket is for fixed-shape CUDA graphs only, never a default."""
    photo = _photos(1)[0]  # (H0, W0, 3)
    geometry = letterbox_geometry(photo.shape[:2], IMGSZ)
    batch = letterbox(photo, geometry).permute(2, 0, 1)[None]  # (1, 3, H, W) uint8
    h, w = geometry.input_hw
    fused = Predictor(model, **OPTIONS, fast=False).model  # fused fp32, as the plain path runs it
    runner = InferenceRunner(
        fused, torch.device("cpu"), FastOptions(bucket=128, channels_last=False)
    )
    out = runner(runner.to_input(batch))
    big_h, big_w = bucket_shape((h, w), 128)
    padded = torch.full((1, 3, big_h, big_w), 114, dtype=torch.uint8)
    padded[:, :, :h, :w] = batch
    with torch.inference_mode():
        expected = crop_output(fused(padded.float() / 255.0), (h, w), fused.cfg.strides)
    assert out.feature_sizes == expected.feature_sizes
    for name in ("box_dist", "class_logits", "mask_coeffs", "protos"):
        torch.testing.assert_close(
            getattr(out, name), getattr(expected, name), rtol=1e-5, atol=1e-5
        )


@pytest.mark.slow
def test_compile_matches_plain_and_reuses_graphs(
    model: YoloV8Seg, plain_results: list[Results]
) -> None:
    """torch.compile with symbolic shapes: 3 letterbox shapes share graphs (measured: 2 graphs,
    one guard-driven recompile), outputs equal the plain path."""
    from torch._dynamo.utils import counters

    photos = _photos()
    assert len({letterbox_geometry(p.shape[:2], IMGSZ).input_hw for p in photos}) == 3
    torch._dynamo.reset()
    before = counters["stats"]["unique_graphs"]
    predictor = Predictor(model, **OPTIONS, fast=FastOptions(compile=True))
    fast = predictor(photos)
    assert counters["stats"]["unique_graphs"] - before <= 2  # not one graph per shape
    assert len(predictor.runner.compile_seconds) == 3
    for plain, res in zip(plain_results, fast):
        stats = compare(plain, res)
        assert stats["agreement"] >= 0.999, stats
        assert stats["box_diff"] <= 5e-2 and stats["score_diff"] <= 1e-4, stats


def test_to_input_equals_plain_conversion() -> None:
    batch = torch.randint(0, 256, (2, 3, 64, 96), dtype=torch.uint8)
    model = build_model(yolov8_seg_config("n"))
    for options in (None, FastOptions()):
        x = InferenceRunner(model, torch.device("cpu"), options).to_input(batch)
        assert torch.equal(x, batch.float() / 255.0) and x.dtype == torch.float32
    assert x.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\) uint8"):
        InferenceRunner(model, torch.device("cpu"), None).to_input(batch.float())


def test_crop_output_equals_unpadded_shapes() -> None:
    """Cropping the outputs of a padded input gives the anchors/prototypes of the unpadded one,
    and on a constant-grey image (where padding with grey changes nothing far from the border)
    the values of interior anchors are equal."""
    torch.manual_seed(0)
    model = build_model(yolov8_seg_config("n")).eval()
    x = torch.rand(1, 3, 96, 160)
    padded = torch.nn.functional.pad(x, (0, 96, 0, 32), value=114 / 255)  # (1, 3, 128, 256)
    with torch.no_grad():
        ref, big = model(x), model(padded)
    cropped = crop_output(big, (96, 160), model.cfg.strides)
    assert cropped.feature_sizes == ref.feature_sizes
    for name in ("box_dist", "class_logits", "mask_coeffs", "protos"):
        assert getattr(cropped, name).shape == getattr(ref, name).shape, name
    # anchor order: row-major per level, so the top-left P3 cell is the first anchor on both
    p3_ref = ref.class_logits[..., : 12 * 20].unflatten(2, (12, 20))
    p3_big = big.class_logits[..., : 16 * 32].unflatten(2, (16, 32))
    assert torch.equal(
        cropped.class_logits[..., : 12 * 20].unflatten(2, (12, 20)), p3_big[..., :12, :20]
    )
    assert p3_ref.shape == (1, 1, 12, 20)


def test_bucket_shape() -> None:
    assert bucket_shape((480, 640), None) == (480, 640)
    assert bucket_shape((480, 640), 256) == (512, 768)
    assert bucket_shape((512, 512), 256) == (512, 512)


def test_option_errors() -> None:
    cpu = torch.device("cpu")
    model = build_model(yolov8_seg_config("n"))
    with pytest.raises(ValueError, match="bucket must be a positive multiple of 32"):
        InferenceRunner(model, cpu, FastOptions(bucket=48))
    with pytest.raises(ValueError, match="autocast='fp16' is for GPUs"):
        InferenceRunner(model, cpu, FastOptions(autocast="fp16"))
    with pytest.raises(ValueError, match="cuda_graphs=True needs a CUDA device"):
        InferenceRunner(model, cpu, FastOptions(cuda_graphs=True, bucket=256))
    with pytest.raises(ValueError, match="unknown fast preset 'turbo'"):
        resolve_fast("turbo")
    with pytest.raises(TypeError, match="fast must be a bool"):
        resolve_fast(3)  # type: ignore[arg-type]
    assert resolve_fast(False) is None and resolve_fast(True) == FAST_PRESETS["default"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fp16_on_cuda_matches_plain(model: YoloV8Seg, plain_results: list[Results]) -> None:
    """fp16 autocast + pinned async copies on the last visible GPU (not cuda:0 by default)."""
    device = f"cuda:{torch.cuda.device_count() - 1}"
    fast = Predictor(model, **OPTIONS, device=device, fast=FastOptions(autocast="fp16"))(_photos())
    for plain, res in zip(plain_results, fast):
        stats = compare(plain, res.to("cpu"))
        assert stats["agreement"] >= 0.99, stats  # fp16: documented separately from 99.9 %
