"""fastsam_core.ops.masks (reference mask assembly, spec §3.8): unit behaviour and pixel-exact parity with
ultralytics 8.4.190 (in process) and 8.0.120 (``tests.support.ul120`` subprocess).

OFFICIAL parity: ``rule="sigmoid"`` is compared with 8.0.120's own ``process_mask``/``process_mask_native``.
The FastSAM repo HEAD changed exactly one thing in those functions (spec §3.8): logits are thresholded at 0
instead of sigmoid at 0.5. For ``rule="logit"`` the same 8.0.120 functions are run with ``Tensor.sigmoid``
patched to the identity and ``Tensor.gt_(0.5)`` patched to ``gt_(0.0)`` (see ``_UL120_MASKS``).
"""

from __future__ import annotations

import os
import tempfile

import pytest
import torch
import torch.nn.functional as F

from fastsam_core.ops import masks as M
from fastsam_core.ops.boxes import scale_boxes
from fastsam_core.ops.letterbox import letterbox_geometry

# (orig_hw, imgsz, auto): the photos' sizes (f = 1, 4, 1), odd sizes (f = 2 / 4), an original smaller than
# the prototypes (retina then downsamples)
GEOMETRY_CASES = [
    ((603, 1072), 1024, True),
    ((1500, 2250), 1024, True),
    ((1920, 1080), 1024, True),
    ((517, 333), 1024, True),
    ((101, 999), 640, True),
    ((7, 5), 64, False),
]


def _case(orig_hw, imgsz, auto, n: int = 8, seed: int = 0):
    """Smooth prototypes (like a trained Proto's) and boxes on, inside and past the input edges."""
    g = letterbox_geometry(orig_hw, imgsz, auto=auto)
    in_h, in_w = g.input_hw
    hp, wp = in_h // 4, in_w // 4
    gen = torch.Generator().manual_seed(seed + in_h + in_w)
    coarse = torch.randn(1, 32, max(hp // 8, 1) + 1, max(wp // 8, 1) + 1, generator=gen)
    # (32, Hp, Wp)
    protos = F.interpolate(coarse, size=(hp, wp), mode="bilinear", align_corners=False)[0]
    coeffs = torch.randn(n, 32, generator=gen) * 0.5
    span, lo = torch.tensor([in_w * 1.1, in_h * 1.1]), torch.tensor([in_w * 0.05, in_h * 0.05])
    xy = torch.rand(n, 2, generator=gen) * span - lo
    wh = torch.rand(n, 2, generator=gen) * torch.tensor([in_w * 0.6, in_h * 0.6]) + 2
    boxes = torch.cat((xy - wh / 2, xy + wh / 2), dim=1)  # (n, 4) xyxy input px
    boxes[0] = torch.tensor([0.0, 0.0, in_w, in_h])  # the full-image box
    boxes[1] = torch.tensor([10.25, 3.5, 10.75, 3.75])  # sub-pixel box: empty masks
    return g, protos, coeffs, boxes


# ---------------------------------------------------------------- unit


def test_mask_logits_is_a_float32_linear_combination():
    gen = torch.Generator().manual_seed(0)
    protos, coeffs = torch.randn(4, 3, 5, generator=gen), torch.randn(2, 4, generator=gen)
    out = M.mask_logits(protos.half(), coeffs.half())
    assert out.shape == (2, 3, 5) and out.dtype == torch.float32
    expected = torch.einsum("nk,khw->nhw", coeffs.half().float(), protos.half().float())
    torch.testing.assert_close(out, expected)
    with pytest.raises(ValueError, match=r"matching K, got \(4, 3, 5\) and \(2, 3\)"):
        M.mask_logits(protos, coeffs[:, :3])


@pytest.mark.parametrize("dtype", [torch.bool, torch.uint8, torch.float32])
def test_crop_masks_half_open_float_boxes(dtype):
    masks = torch.ones(2, 4, 5, dtype=dtype)
    boxes = torch.tensor([[1.5, 0.0, 3.0, 2.0], [-1.0, 2.9, 9.0, 3.1]])
    out = M.crop_masks(masks, boxes)
    assert out.dtype == dtype
    assert torch.nonzero(out[0]).tolist() == [[0, 2], [1, 2]]  # 1.5 <= x < 3, 0 <= y < 2
    assert torch.nonzero(out[1]).tolist() == [[3, x] for x in range(5)]  # 2.9 <= y < 3.1 -> row 3
    with pytest.raises(ValueError, match="same N"):
        M.crop_masks(masks, boxes[:1])


def test_official_non_retina_crops_at_proto_resolution():
    # constant positive logits, box covering input columns 0..6 -> proto columns 0..1.5 (cols 0, 1)
    protos = torch.ones(1, 4, 4)
    coeffs = torch.ones(1, 1)
    box = torch.tensor([[0.0, 0.0, 6.0, 16.0]])
    masks = M.process_mask_official(protos, coeffs, box, (16, 16), rule="logit")
    # logit rule: > 0 wherever a kept proto column contributes: x = 9 samples x' = 1.875 (weight 1/8 on col 1)
    assert masks[0, 0].nonzero().flatten().tolist() == list(range(10))
    masks = M.process_mask_official(protos, coeffs, box, (16, 16), rule="sigmoid")
    # sigmoid rule: output column x samples proto x' = (x + 0.5)/4 - 0.5 and blends sigmoid(1) = 0.731 with
    # the cropped 0: x = 6 -> 0.875 * 0.731 = 0.64 > 0.5 kept, x = 7 -> 0.625 * 0.731 = 0.46 dropped
    assert masks[0, 0].nonzero().flatten().tolist() == list(range(7))


def test_empty_inputs_give_empty_masks():
    protos, coeffs, boxes = torch.zeros(32, 16, 24), torch.zeros(0, 32), torch.zeros(0, 4)
    assert M.process_mask_official(protos, coeffs, boxes, (64, 96)).shape == (0, 64, 96)
    assert M.process_mask_native_official(protos, coeffs, boxes, (50, 80)).shape == (0, 50, 80)
    assert M.process_mask_ultralytics(protos, coeffs, boxes, (64, 96)).shape == (0, 64, 96)
    out = M.process_mask_native_ultralytics(protos, coeffs, boxes, (50, 80))
    assert out.shape == (0, 50, 80) and out.dtype == torch.bool


def test_input_validation():
    protos = torch.zeros(32, 16, 24)
    with pytest.raises(ValueError, match=r"coeffs must be \(N, K\) with K = 32"):
        M.process_mask_official(protos, torch.zeros(2, 16), torch.zeros(2, 4), (64, 96))
    with pytest.raises(ValueError, match=r"boxes must be \(N, 4\) xyxy with N = 2"):
        M.process_mask_ultralytics(protos, torch.zeros(2, 32), torch.zeros(3, 4), (64, 96))
    with pytest.raises(ValueError, match="rule must be 'logit'"):
        M.process_mask_native_official(
            protos, torch.zeros(2, 32), torch.zeros(2, 4), (64, 96), "tanh"
        )
    with pytest.raises(ValueError, match=r"protos must be \(K, Hp, Wp\)"):
        M.process_mask_official(protos[None], torch.zeros(2, 32), torch.zeros(2, 4), (64, 96))


@pytest.mark.parametrize(
    "proto_hw,orig_hw,f",
    [((144, 256), (603, 1072), 1), ((176, 256), (1500, 2250), 4), ((256, 168), (517, 333), 2)],
)
def test_native_upsample_factor(proto_hw, orig_hw, f):
    # total input padding P per axis: P % 8 == 0 -> 1, P % 4 == 0 -> 2, else 4; the larger f wins.
    # 576x1024 input: P = 0 -> 1; 704x1024: 21 rows -> 4; 1024x672: 672 - 660 = 12 columns -> 2
    assert M._native_upsample_factor(proto_hw, orig_hw) == f


def test_chunking_does_not_change_pixels(monkeypatch):
    g, protos, coeffs, boxes = _case((517, 333), 1024, True, n=5)
    boxes_orig = scale_boxes(boxes, g, "official")
    full = [
        M.process_mask_official(protos, coeffs, boxes, g.input_hw),
        M.process_mask_native_official(protos, coeffs, boxes_orig, g.orig_hw),
        M.process_mask_ultralytics(protos, coeffs, boxes, g.input_hw),
        M.process_mask_native_ultralytics(protos, coeffs, boxes_orig, g.orig_hw),
    ]
    monkeypatch.setattr(M, "_CHUNK_PIXELS", 1)  # one instance per chunk
    chunked = [
        M.process_mask_official(protos, coeffs, boxes, g.input_hw),
        M.process_mask_native_official(protos, coeffs, boxes_orig, g.orig_hw),
        M.process_mask_ultralytics(protos, coeffs, boxes, g.input_hw),
        M.process_mask_native_ultralytics(protos, coeffs, boxes_orig, g.orig_hw),
    ]
    for a, b in zip(full, chunked):
        assert torch.equal(a, b)


def test_nonempty_masks_and_logit_vs_sigmoid():
    g, protos, coeffs, boxes = _case((603, 1072), 1024, True)
    logit = M.process_mask_official(protos, coeffs, boxes, g.input_hw, "logit")
    sigmoid = M.process_mask_official(protos, coeffs, boxes, g.input_hw, "sigmoid")
    keep = M.nonempty_masks(logit)
    # the sub-pixel box (row 1) gives an empty mask
    assert keep.dtype == torch.bool and not keep[1] and keep.sum() >= 5
    differ = (logit != sigmoid).float().mean().item()
    assert 0 < differ < 0.01  # the rules differ only near crop edges (spec §3.8: ~0.1% of pixels)
    # logit masks are larger at box edges
    assert (logit & ~sigmoid).sum() > (sigmoid & ~logit).sum()


@pytest.mark.parametrize("retina", [False, True])
@pytest.mark.parametrize("reference", ["official", "ultralytics"])
def test_assemble_masks_dispatch(retina, reference):
    g, protos, coeffs, boxes = _case((517, 333), 1024, True, n=4)
    boxes_orig = scale_boxes(boxes, g, reference)
    masks = M.assemble_masks(
        protos, coeffs, boxes, boxes_orig, g, retina=retina, postprocess=reference
    )
    if reference == "official":
        expected = (
            M.process_mask_native_official(protos, coeffs, boxes_orig, g.orig_hw)
            if retina
            else M.process_mask_official(protos, coeffs, boxes, g.input_hw)
        )
    else:
        expected = (
            M.process_mask_native_ultralytics(protos, coeffs, boxes_orig, g.orig_hw)
            if retina
            else M.process_mask_ultralytics(protos, coeffs, boxes, g.input_hw)
        )
    assert masks.shape == ((4, *g.orig_hw) if retina else (4, *g.input_hw))
    assert torch.equal(masks, expected)


def test_assemble_masks_rule_and_bad_choice():
    g, protos, coeffs, boxes = _case((7, 5), 64, False, n=2)
    logit = M.assemble_masks(
        protos, coeffs, boxes, boxes, g, retina=False, postprocess="ultralytics"
    )
    sigmoid = M.assemble_masks(
        protos,
        coeffs,
        boxes,
        boxes,
        g,
        retina=False,
        postprocess="ultralytics",
        mask_rule="sigmoid",
    )
    assert torch.equal(logit, sigmoid)  # 8.4.190 thresholds logits at 0 whatever the rule
    with pytest.raises(ValueError, match="postprocess must be"):
        M.assemble_masks(protos, coeffs, boxes, boxes, g, retina=False, postprocess="v5")  # type: ignore[arg-type]


# ---------------------------------------------------------------- oracle: 8.4.190


@pytest.fixture(scope="module")
def ul_ops():
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo-cfg-"))
    pytest.importorskip("ultralytics", reason="oracle extra (ultralytics==8.4.190) not installed")
    from ultralytics.utils import ops

    return ops


@pytest.mark.oracle
@pytest.mark.parametrize("orig_hw,imgsz,auto", GEOMETRY_CASES)
def test_masks_equal_ultralytics(ul_ops, orig_hw, imgsz, auto):
    g, protos, coeffs, boxes = _case(orig_hw, imgsz, auto)
    # non-retina (construct_result, retina_masks=False): masks from input-space boxes
    expected = ul_ops.process_mask(protos, coeffs, boxes.clone(), g.input_hw, upsample=True)
    ours = M.process_mask_ultralytics(protos, coeffs, boxes, g.input_hw)
    assert torch.equal(ours, expected.bool())
    # retina: boxes scaled first, then masks at the original size
    boxes_orig = ul_ops.scale_boxes(g.input_hw, boxes.clone(), orig_hw)
    assert torch.equal(scale_boxes(boxes, g, "ultralytics"), boxes_orig)
    expected = ul_ops.process_mask_native(protos, coeffs, boxes_orig.clone(), orig_hw)
    ours = M.process_mask_native_ultralytics(protos, coeffs, boxes_orig, orig_hw)
    assert torch.equal(ours, expected.bool())
    # empty-mask drop (construct_result: keep = masks.amax((-2, -1)) > 0)
    assert torch.equal(M.nonempty_masks(ours), expected.amax((-2, -1)) > 0)
    assert not M.nonempty_masks(ours)[1]


@pytest.mark.oracle
@pytest.mark.parametrize("orig_hw,imgsz,auto", GEOMETRY_CASES[:4])
def test_scale_masks_equals_ultralytics(ul_ops, orig_hw, imgsz, auto):
    _, protos, coeffs, _ = _case(orig_hw, imgsz, auto, n=3)
    logits = M.mask_logits(protos, coeffs)
    for f in (1, 2, 4):
        up = logits
        if f > 1:
            up = F.interpolate(logits[None], scale_factor=f, mode="bilinear", align_corners=False)[
                0
            ]
        expected = ul_ops.scale_masks(up[None], orig_hw)[0]
        assert torch.equal(M.scale_masks_ultralytics(up, orig_hw), expected), f


# ---------------------------------------------------------------- oracle: 8.0.120 (official)

_UL120_MASKS = """
def run_all():
    out = {}
    for key, (protos, coeffs, boxes, input_hw, orig_hw) in inputs.items():
        # the official predictor: non-retina masks from input boxes; retina after scale_boxes
        non_retina = ops.process_mask(protos, coeffs, boxes.clone(), input_hw, upsample=True)
        boxes_orig = ops.scale_boxes(input_hw, boxes.clone(), orig_hw)
        retina = ops.process_mask_native(protos, coeffs, boxes_orig.clone(), orig_hw)
        out[key] = (non_retina, boxes_orig, retina)
    return out

result = {"sigmoid": run_all()}
# FastSAM HEAD = these functions with logits thresholded at 0 instead of sigmoid > 0.5
_gt_ = torch.Tensor.gt_
torch.Tensor.sigmoid = lambda self: self
torch.Tensor.gt_ = lambda self, other: _gt_(self, 0.0 if other == 0.5 else other)
result["logit"] = run_all()
"""


@pytest.fixture(scope="module")
def ul120_masks():
    from tests.support.ul120 import run_ul120

    cases = {str(i): _case(*c) for i, c in enumerate(GEOMETRY_CASES)}
    inputs = {k: (p, c, b, g.input_hw, g.orig_hw) for k, (g, p, c, b) in cases.items()}
    return cases, run_ul120(_UL120_MASKS, inputs)


@pytest.mark.oracle
@pytest.mark.parametrize("rule", ["sigmoid", "logit"])
@pytest.mark.parametrize("case", [str(i) for i in range(len(GEOMETRY_CASES))])
def test_official_masks_equal_ultralytics_8_0_120(ul120_masks, rule, case):
    cases, expected = ul120_masks
    g, protos, coeffs, boxes = cases[case]
    non_retina, boxes_orig, retina = expected[rule][case]
    assert non_retina.dtype == torch.float32  # upstream float 0/1; ours bool
    assert torch.equal(
        M.process_mask_official(protos, coeffs, boxes, g.input_hw, rule), non_retina.bool()
    )
    assert torch.equal(scale_boxes(boxes, g, "official"), boxes_orig)
    ours = M.process_mask_native_official(protos, coeffs, boxes_orig, g.orig_hw, rule)
    assert torch.equal(ours, retina.bool())
