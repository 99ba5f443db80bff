"""Every fast mask-assembly backend against the reference (`assemble_masks_reference`, spec §3.8).

Exactness rule: masks must be equal pixel for pixel, except pixels whose reference value (logit, or
probability for the official "sigmoid" rule), recomputed here in float64 in the reference's order of
operations, lies within EPS of the threshold. The reference itself and the backends accumulate in
float32 in different orders (GEMM vs per-window dot product, x-then-y bilinear vs two small matmuls,
ultralytics' two resizes folded into one), so their values differ by a few float32 ulps: |value| is
below ~20 in these tests, one ulp is ~2e-6, and EPS = 1e-4 leaves a 50x margin while excusing about
1e-5 of the pixels. Pixels that the crop zeroes are exactly 0 in every backend and are never excused.

The Triton kernel runs on CPU under the Triton interpreter (TRITON_INTERPRET=1, set per test before
the kernel is first built; small frames keep it fast) and natively on CUDA (`gpu` marker).
"""

from __future__ import annotations

import importlib.util
import logging

import pytest
import torch

from fastsam_core.compact_masks import CompactMasks
from fastsam_core.mask_backends import (
    MASK_BACKENDS,
    assemble_masks_reference,
    auto_backend_name,
    get_mask_backend,
)
from fastsam_core.ops import masks as mask_ops
from fastsam_core.ops.boxes import scale_boxes
from fastsam_core.ops.letterbox import LetterboxGeometry, letterbox_geometry

HAS_TRITON = importlib.util.find_spec("triton") is not None
NEEDS_TRITON = pytest.mark.skipif(not HAS_TRITON, reason="triton not installed: pip install triton")
CPU_BACKENDS = ["eager", "compiled", pytest.param("triton", marks=NEEDS_TRITON)]
PATHS = [(post, rule, retina) for post in ("official", "ultralytics") for rule in ("logit", "sigmoid")
         for retina in (False, True)]
# (orig_hw, imgsz): proto 40x24 and 24x32 (not multiples of the 16/32/64 tiles); odd original sizes;
# "wide" has an original smaller than the letterbox input.
FRAMES = {"tall": ((181, 97), 160), "wide": ((70, 100), 128)}
# Value tolerance per coefficient dtype (see module docstring). fp16/bf16 coefficients (and protos)
# are converted exactly to float32 by every backend and by the reference, so the bound is the same.
EPS = {torch.float32: 1e-4, torch.float16: 1e-4, torch.bfloat16: 1e-4}


if HAS_TRITON:
    # Import triton natively first: its own @jit helpers (and torch.compile's on GPU) must not be
    # decorated in interpreter mode. Our kernel is wrapped per mode when it is first launched.
    import triton  # noqa: F401


@pytest.fixture(autouse=True)
def _triton_interpreter(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """CPU tests run the Triton kernel in the interpreter (TRITON_INTERPRET is read at launch)."""
    if "gpu" not in request.keywords:
        monkeypatch.setenv("TRITON_INTERPRET", "1")


def make_inputs(
    frame: str, n: int, dtype: torch.dtype = torch.float32, seed: int = 0
) -> tuple[LetterboxGeometry, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Protos (K, Hp, Wp), coeffs (N, K) and input-space boxes with every edge case in the first 7."""
    orig_hw, imgsz = FRAMES[frame]
    geometry = letterbox_geometry(orig_hw, imgsz)
    h, w = geometry.input_hw
    gen = torch.Generator().manual_seed(seed)
    protos = torch.randn(32, h // 4, w // 4, generator=gen)
    coeffs = torch.randn(n, 32, generator=gen) * 0.5
    special = torch.tensor([
        [0.0, 0.0, w, h],  # the full frame (edges exactly on the border)
        [-15.3, -7.2, w + 10.5, 0.6 * h],  # past three edges
        [w + 5.0, h + 5.0, w + 40.0, h + 30.0],  # fully outside
        [20.0, 10.0, 20.0, 0.8 * h],  # zero width
        [5.2, 5.9, 6.1, 6.8],  # about one pixel
        [16.0, 8.0, 48.0, 40.0],  # integer, on tile boundaries
    ])
    xy = torch.rand(n, 2, generator=gen) * torch.tensor([w, h]) * 0.8
    wh = torch.rand(n, 2, generator=gen) * torch.tensor([w, h]) * 0.6 + 1
    boxes = torch.cat([xy, xy + wh], 1)  # (N, 4) random fractional boxes
    k = min(n - 1, special.shape[0]) if n > 1 else 0
    boxes[1 : 1 + k] = special[:k]
    return geometry, protos, coeffs.to(dtype), boxes


def orig_boxes(boxes_input: torch.Tensor, geometry: LetterboxGeometry, postprocess: str) -> torch.Tensor:
    """Original-space boxes as the predictor makes them, plus unclipped past/outside rows (1, 2)."""
    boxes = scale_boxes(boxes_input, geometry, rule=postprocess)
    h0, w0 = geometry.orig_hw
    raw = torch.tensor([[-9.5, -3.0, w0 + 7.25, 0.5 * h0], [w0 + 1.0, -20.0, w0 + 9.0, -1.0]])
    rows = min(2, max(boxes.shape[0] - 1, 0))
    boxes[1 : 1 + rows] = raw[:rows]
    return boxes


def reference_values(
    protos: torch.Tensor, coeffs: torch.Tensor, boxes_input: torch.Tensor, boxes_orig: torch.Tensor,
    geometry: LetterboxGeometry, postprocess: str, rule: str, retina: bool,
) -> tuple[torch.Tensor, float]:
    """(N, H?, W?) float64 pre-threshold values in the reference's order, and the threshold."""
    k, hp, wp = protos.shape
    if coeffs.shape[0] == 0:
        frame = geometry.orig_hw if retina else geometry.input_hw
        return torch.zeros((0, *frame), dtype=torch.float64), 0.0
    logits = (coeffs.double() @ protos.double().reshape(k, -1)).reshape(-1, hp, wp)  # (N, Hp, Wp)
    resize = mask_ops._resize
    if postprocess == "ultralytics":
        if not retina:
            return mask_ops.crop_masks(resize(logits, geometry.input_hw), boxes_input.double()), 0.0
        f = mask_ops._native_upsample_factor((hp, wp), geometry.orig_hw)
        if f > 1:
            logits = torch.nn.functional.interpolate(logits[None], scale_factor=f, mode="bilinear")[0]
        values = mask_ops.scale_masks_ultralytics(logits, geometry.orig_hw)
        return mask_ops.crop_masks(values, boxes_orig.double()), 0.0
    values = logits.sigmoid() if rule == "sigmoid" else logits
    threshold = 0.5 if rule == "sigmoid" else 0.0
    if not retina:
        in_h, in_w = geometry.input_hw
        x = boxes_input[:, 0::2].float() * (wp / in_w)
        y = boxes_input[:, 1::2].float() * (hp / in_h)
        boxes_proto = torch.stack((x[:, 0], y[:, 0], x[:, 1], y[:, 1]), dim=1)
        return resize(mask_ops.crop_masks(values, boxes_proto), geometry.input_hw), threshold
    h0, w0 = geometry.orig_hw
    gain = min(hp / h0, wp / w0)
    pad_x, pad_y = (wp - w0 * gain) / 2, (hp - h0 * gain) / 2
    values = values[:, int(pad_y) : int(hp - pad_y), int(pad_x) : int(wp - pad_x)]
    return mask_ops.crop_masks(resize(values, (h0, w0)), boxes_orig.double()), threshold


def assert_same_masks(
    got: CompactMasks, ref: CompactMasks, values: torch.Tensor, threshold: float, eps: float
) -> None:
    assert got.image_hw == ref.image_hw
    assert len(got) == len(ref)
    dense_got, dense_ref = got.to_dense().cpu(), ref.to_dense()
    ambiguous = ((values - threshold).abs() <= eps) & (values != 0)  # crop zeros are never excused
    # the float64 mirror agrees with the float32 reference away from the threshold
    assert not ((dense_ref != (values > threshold)) & ~ambiguous).any()
    bad = (dense_got != dense_ref) & ~ambiguous
    assert not bad.any(), f"{int(bad.sum())} pixels differ beyond eps={eps} at {bad.nonzero()[:5].tolist()}"


def run_case(
    backend: str, frame: str, n: int, postprocess: str, rule: str, retina: bool,
    dtype: torch.dtype = torch.float32, device: str = "cpu", seed: int = 0,
) -> CompactMasks:
    geometry, protos, coeffs, boxes_input = make_inputs(frame, n, dtype, seed)
    boxes_orig = orig_boxes(boxes_input, geometry, postprocess)
    options = {"retina": retina, "postprocess": postprocess, "mask_rule": rule}
    ref = assemble_masks_reference(protos, coeffs, boxes_input, boxes_orig, geometry, **options)
    values, threshold = reference_values(protos, coeffs.float(), boxes_input, boxes_orig, geometry,
                                         postprocess, rule, retina)
    protos_in = protos.to(dtype) if dtype != torch.float32 else protos
    if dtype != torch.float32:  # the reference saw the same rounded protos
        ref = assemble_masks_reference(protos_in, coeffs, boxes_input, boxes_orig, geometry, **options)
        values, threshold = reference_values(protos_in.float(), coeffs.float(), boxes_input, boxes_orig,
                                             geometry, postprocess, rule, retina)
    got = get_mask_backend(backend)(
        protos_in.to(device), coeffs.to(device), boxes_input.to(device), boxes_orig.to(device), geometry,
        **options,
    )
    assert got.device.type == torch.device(device).type
    assert_same_masks(got, ref, values, threshold, EPS[dtype])
    return got


@pytest.mark.parametrize("frame", sorted(FRAMES))
@pytest.mark.parametrize(("postprocess", "rule", "retina"), PATHS)
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_matches_reference(backend: str, frame: str, postprocess: str, rule: str, retina: bool) -> None:
    got = run_case(backend, frame, 7, postprocess, rule, retina)
    # only pixels inside each mask's region are stored (the crop box in the output frame, or for the
    # separable backends the part of it where the mask can be set)
    heights = got.regions[:, 3] - got.regions[:, 1]
    widths = got.regions[:, 2] - got.regions[:, 0]
    assert got.data.numel() == int((heights * widths).sum())
    assert int(heights[3] * widths[3]) == 0 and int(heights[4] * widths[4]) == 0  # outside, zero width


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize(("postprocess", "retina"), [("official", False), ("ultralytics", True)])
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_low_precision_inputs(backend: str, dtype: torch.dtype, postprocess: str, retina: bool) -> None:
    run_case(backend, "tall", 7, postprocess, "logit", retina, dtype=dtype)  # EPS[dtype] inside


@pytest.mark.parametrize("n", [0, 1])
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_zero_and_one_mask(backend: str, n: int) -> None:
    got = run_case(backend, "wide", n, "official", "logit", True)
    assert len(got) == n


@pytest.mark.parametrize(("backend", "postprocess", "retina"), [
    ("eager", "official", False), ("eager", "ultralytics", True), ("compiled", "official", False),
    ("compiled", "ultralytics", True), pytest.param("triton", "ultralytics", True, marks=NEEDS_TRITON),
])  # the interpreter runs ~1 program per mask here: one Triton case (the three-tap path) keeps it ~15 s
def test_300_masks_small_frame(backend: str, postprocess: str, retina: bool) -> None:
    FRAMES["tiny"] = ((48, 64), 64)  # proto 12x16: 300 masks stay fast in the Triton interpreter
    got = run_case(backend, "tiny", 300, postprocess, "logit", retina, seed=3)
    assert len(got) == 300


def test_compiled_large_crops() -> None:
    """Crops big enough to go through the torch.compile'd y pass (small ones stay eager)."""
    FRAMES["photo"] = ((300, 500), 320)
    for retina in (False, True):
        run_case("compiled", "photo", 7, "official", "logit", retina)
    run_case("compiled", "photo", 7, "ultralytics", "logit", True)  # three-tap band


# ------------------------------------------------------------------ Triton specifics


def _triton_inputs() -> tuple[torch.Tensor, ...]:
    geometry, protos, coeffs, boxes = make_inputs("tall", 3)
    return protos, coeffs, boxes, orig_boxes(boxes, geometry, "official"), geometry  # type: ignore[return-value]


@NEEDS_TRITON
def test_triton_guards(monkeypatch: pytest.MonkeyPatch) -> None:
    from fastsam_kernels.mask_assembly.triton import assemble_masks_triton

    protos, coeffs, boxes, boxes_orig, geometry = _triton_inputs()
    options = {"retina": True, "postprocess": "official", "mask_rule": "logit"}
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match="device guard"):
        assemble_masks_triton(protos, coeffs, boxes, boxes_orig, geometry, **options)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    with pytest.raises(ValueError, match="dtype guard"):
        assemble_masks_triton(protos.double(), coeffs, boxes, boxes_orig, geometry, **options)
    tiny = letterbox_geometry((6, 5), 640)  # 160x160 protos squeezed into 6x5 pixels: ~27x downscale
    box = torch.tensor([[0.0, 0.0, 5.0, 6.0]])
    with pytest.raises(ValueError, match="size guard"):
        assemble_masks_triton(torch.randn(32, 160, 160), coeffs[:1], box, box, tiny, **options)


@NEEDS_TRITON
def test_triton_op_contiguity_guard_and_fake() -> None:
    from fastsam_kernels.mask_assembly.triton import mask_assembly_op
    from torch._subclasses.fake_tensor import FakeTensorMode

    i64 = torch.zeros(2, 4, dtype=torch.int64)
    f32 = torch.zeros(2, 4)
    protos = torch.zeros(8, 6, 4).transpose(1, 2)  # non-contiguous
    args = (protos, torch.zeros(1, 8), i64, f32, i64[0], i64, f32, i64[0], torch.zeros(1, 4, dtype=torch.int64),
            torch.zeros(1, 4, dtype=torch.int64), torch.zeros(2, dtype=torch.int64),
            torch.zeros(0, 3, dtype=torch.int64), 0, 0.0, False, False, 16, 16, 16, 16)
    with pytest.raises(ValueError, match="contiguity guard"):
        mask_assembly_op(*args)
    with FakeTensorMode() as mode:
        fake = [mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args]
        fake[-8] = 123  # total
        out = mask_assembly_op(*fake)
    assert out.shape == (123,) and out.dtype == torch.bool


@NEEDS_TRITON
@pytest.mark.parametrize("consts", [
    {"TAPS_Y": 2, "TAPS_X": 2, "BLOCK_H": 64, "BLOCK_W": 64, "PATCH_H": 16, "PATCH_W": 16, "SIGMOID": True,
     "KEEP": True},
    {"TAPS_Y": 3, "TAPS_X": 3, "BLOCK_H": 16, "BLOCK_W": 32, "PATCH_H": 32, "PATCH_W": 16, "SIGMOID": False,
     "KEEP": False},
], ids=["official", "ultralytics-retina"])
def test_triton_kernel_compiles_for_h100_without_tf32(
    consts: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ahead-of-time compile for sm_90 (no GPU needed): the native path at least lowers, and its
    bilinear matmuls stay IEEE fp32 FMAs (no tensor-core mma, which would round to TF32)."""
    monkeypatch.setenv("TRITON_INTERPRET", "0")  # a native JITFunction, not the interpreter
    import triton
    from fastsam_kernels.mask_assembly import _triton_kernel
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    pointers = ["protos", "coeffs", "row_index", "row_weight", "row_lo", "col_index", "col_weight", "col_lo",
                "regions", "keep", "offsets", "tiles", "out"]
    types = ["*fp16", "*bf16", "*i64", "*fp32", "*i64", "*i64", "*fp32", "*i64", "*i64", "*i64", "*i64",
             "*i64", "*u8"]
    signature = {f"{name}_ptr": t for name, t in zip(pointers, types)}
    signature.update({"Hp": "i32", "Wp": "i32", "H": "i32", "W": "i32", "threshold": "fp32"})
    signature.update({name: "constexpr" for name in ["K", *consts]})
    source = ASTSource(fn=triton.jit(_triton_kernel.mask_assembly_kernel), signature=signature,
                       constexprs={"K": 32, **consts})
    try:
        kernel = triton.compile(source, target=GPUTarget("cuda", 90, 32))
    except RuntimeError as err:  # e.g. no ptxas / CUDA backend in this triton build
        pytest.skip(f"cannot compile for sm_90 here: {err}")
    ptx = kernel.asm["ptx"]
    assert ".target sm_90" in ptx
    assert "fma.rn.f32" in ptx and "mma" not in ptx


def test_triton_missing_gives_pip_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from fastsam_kernels.mask_assembly import triton as triton_backend

    monkeypatch.setitem(sys.modules, "triton", None)  # `import triton` now raises ImportError
    monkeypatch.setattr(triton_backend, "_kernels", {})
    monkeypatch.delitem(sys.modules, "fastsam_kernels.mask_assembly._triton_kernel", raising=False)
    protos, coeffs, boxes, boxes_orig, geometry = _triton_inputs()
    with pytest.raises(ImportError, match="pip install triton"):
        triton_backend.assemble_masks_triton(protos, coeffs, boxes, boxes_orig, geometry, retina=True,
                                             postprocess="official", mask_rule="logit")


# ------------------------------------------------------------------ dispatcher


def test_registry_and_auto(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import fastsam_core.mask_backends as backends

    assert {"reference", "eager", "compiled", "triton", "auto"} <= set(MASK_BACKENDS)
    assert auto_backend_name("cpu") == "eager"
    protos, coeffs, boxes, boxes_orig, geometry = _triton_inputs()
    options = {"retina": True, "postprocess": "official", "mask_rule": "logit"}
    ref = assemble_masks_reference(protos, coeffs, boxes, boxes_orig, geometry, **options)
    # auto falls back to the reference (logged once) when its pick refuses the inputs
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    monkeypatch.setattr(backends, "auto_backend_name", lambda device: "triton")
    monkeypatch.setattr(backends, "_logged", set())
    with caplog.at_level(logging.INFO, logger="fastsam_core.mask_backends"):
        for _ in range(2):
            got = backends.assemble_masks_auto(protos, coeffs, boxes, boxes_orig, geometry, **options)
            assert torch.equal(got.to_dense(), ref.to_dense())
    fallbacks = [r for r in caplog.records if "using 'reference'" in r.getMessage()]
    assert len(fallbacks) == 1 and "device guard" in fallbacks[0].getMessage()
    # explicit names never fall back
    with pytest.raises(ValueError, match="device guard"):
        get_mask_backend("triton")(protos, coeffs, boxes, boxes_orig, geometry, **options)


# ------------------------------------------------------------------ through the predictor


@pytest.mark.parametrize(("postprocess", "retina"), [("official", True), ("official", False),
                                                     ("ultralytics", True)])
def test_predictor_backends_agree(postprocess: str, retina: bool) -> None:
    """A random FastSAM-n network on a downscaled real photo, 60 detections: the predictor gives the
    same Results with mask_backend 'eager' / 'auto' as with the reference."""
    import numpy as np
    from PIL import Image

    from fastsam_core.config import yolov8_seg_config
    from fastsam_core.model.yolov8_seg import build_model
    from fastsam_core.predictor import Predictor
    from tests.support.photos import photo

    image = np.asarray(Image.open(photo("coffee.jpg")).convert("RGB").resize((150, 100)))  # RGB
    torch.manual_seed(0)
    predictor = Predictor(build_model(yolov8_seg_config("n")).eval(), imgsz=128, conf=0.0, max_det=60)
    options = {"postprocess": postprocess, "retina_masks": retina}
    ref = predictor(image, mask_backend="reference", **options)[0]
    for backend in ("eager", "auto"):
        got = predictor(image, mask_backend=backend, **options)[0]
        assert torch.equal(got.boxes, ref.boxes) and torch.equal(got.scores, ref.scores)
        dense_got, dense_ref = got.masks.to_dense(), ref.masks.to_dense()
        # pixels whose logit is within float32 rounding of 0 may flip (bounded by value above); on
        # this seeded input there are none
        assert int((dense_got != dense_ref).sum()) == 0


# ------------------------------------------------------------------ native GPU


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize(("postprocess", "rule", "retina"), PATHS)
@pytest.mark.parametrize("backend", ["triton", "compiled", "eager"])
def test_gpu_matches_reference(
    backend: str, postprocess: str, rule: str, retina: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    FRAMES["photo"] = ((300, 500), 320)
    for frame, n in (("tall", 7), ("photo", 7), ("wide", 0)):
        run_case(backend, frame, n, postprocess, rule, retina, device="cuda")
    run_case(backend, "tall", 7, postprocess, rule, retina, dtype=torch.bfloat16, device="cuda")
