"""YoloV8Seg: shapes for every scale, train/eval contract, autograd, errors, Conv+BN fusion."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fastsam_core.config import FASTSAM_S, YoloSegConfig, yolov8_seg_config
from fastsam_core.model import SegOutput, YoloV8Seg, build_model, fastsam_s, fuse_conv_bn
from fastsam_core.model.layers import ConvBnAct


def _randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BatchNorm affine params and running stats, so fusion is really tested."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(c, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
    return model


def _expected_shapes(cfg: YoloSegConfig, B: int, H: int, W: int) -> dict[str, tuple[int, ...]]:
    sizes = [(H // s, W // s) for s in (8, 16, 32)]
    A = sum(h * w for h, w in sizes)
    K = cfg.num_mask_coeffs
    return {
        "box_dist": (B, 4 * cfg.reg_max, A),
        "class_logits": (B, cfg.num_classes, A),
        "mask_coeffs": (B, K, A),
        "protos": (B, K, H // 4, W // 4),
    }


def _check_output(out: SegOutput, cfg: YoloSegConfig, B: int, H: int, W: int) -> None:
    assert isinstance(out, SegOutput)
    for name, shape in _expected_shapes(cfg, B, H, W).items():
        tensor = getattr(out, name)
        assert tuple(tensor.shape) == shape, name
        assert tensor.dtype == torch.float32, name
        assert torch.isfinite(tensor).all(), name
    assert tuple(out.feature_sizes) == ((H // 8, W // 8), (H // 16, W // 16), (H // 32, W // 32))


@pytest.mark.parametrize("scale", ["n", "s", "m", "l", "x"])
def test_output_shapes_every_scale(scale: str) -> None:
    torch.manual_seed(0)
    cfg = yolov8_seg_config(scale)
    model = build_model(cfg).eval()
    B, H, W = 1, 64, 96  # non-square, smallest sizes with every level present
    with torch.no_grad():
        out = model(torch.rand(B, 3, H, W))
    _check_output(out, cfg, B, H, W)


@pytest.mark.parametrize(
    "cfg",
    [
        yolov8_seg_config("n", reg_max=26),
        yolov8_seg_config("n", num_classes=80),
        yolov8_seg_config("n", num_mask_coeffs=16),
    ],
    ids=["reg_max26", "nc80", "K16"],
)
@pytest.mark.parametrize("B, H, W", [(2, 128, 96), (1, 32, 32), (1, 96, 320)])
def test_output_shapes_variants_and_sizes(cfg: YoloSegConfig, B: int, H: int, W: int) -> None:
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():
        out = model(torch.rand(B, 3, H, W))
    _check_output(out, cfg, B, H, W)


def test_train_and_eval_return_the_same_type() -> None:
    torch.manual_seed(0)
    cfg = yolov8_seg_config("n")
    model = build_model(cfg)
    x = torch.rand(2, 3, 64, 64)
    model.train()
    out_train = model(x)
    model.eval()
    with torch.no_grad():
        out_eval = model(x)
    assert type(out_train) is type(out_eval) is SegOutput
    _check_output(out_train, cfg, 2, 64, 64)
    _check_output(out_eval, cfg, 2, 64, 64)
    # Same tensors apart from BatchNorm statistics (batch vs running).
    assert not torch.allclose(out_train.class_logits, out_eval.class_logits)


def test_forward_leaves_input_untouched() -> None:
    model = build_model(yolov8_seg_config("n")).eval()
    x = torch.rand(1, 3, 64, 64)
    before = x.clone()
    with torch.no_grad():
        model(x)
    assert torch.equal(x, before)


def test_eval_forward_is_deterministic_and_batch_independent() -> None:
    torch.manual_seed(0)
    model = _randomize_bn(build_model(yolov8_seg_config("n"))).eval()
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        both = model(x)
        first = model(x[:1])
    torch.testing.assert_close(both.protos[:1], first.protos, rtol=0, atol=1e-5)
    torch.testing.assert_close(both.box_dist[:1], first.box_dist, rtol=0, atol=1e-5)


def test_autograd_reaches_every_trainable_parameter() -> None:
    torch.manual_seed(0)
    model = build_model(yolov8_seg_config("n", reg_max=8)).train()
    out = model(torch.rand(2, 3, 64, 64))
    loss = (
        out.box_dist.square().mean()
        + out.class_logits.sigmoid().mean()
        + out.mask_coeffs.square().mean()
        + out.protos.mean()
    )
    loss.backward()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {"head.dfl.conv.weight"}  # the fixed DFL bins 0..R-1
    missing = [n for n, p in trainable.items() if p.grad is None]
    assert not missing, f"no gradient for {missing}"
    nonfinite = [n for n, p in trainable.items() if not torch.isfinite(p.grad).all()]
    assert not nonfinite
    zero = [n for n, p in trainable.items() if not p.grad.abs().sum() > 0]
    assert not zero, f"all-zero gradient for {zero}"


def test_dfl_weights_are_the_bin_indices() -> None:
    model = build_model(FASTSAM_S)
    w = model.head.dfl.conv.weight
    assert tuple(w.shape) == (1, 16, 1, 1)
    assert torch.equal(w.flatten(), torch.arange(16, dtype=torch.float32))


@pytest.mark.parametrize(
    "shape, match",
    [
        ((3, 64, 64), r"expected images of shape \(B, 3, H, W\), got \(3, 64, 64\)"),
        ((1, 1, 64, 64), r"expected images of shape \(B, 3, H, W\), got \(1, 1, 64, 64\)"),
        ((1, 64, 64, 3), r"expected images of shape \(B, 3, H, W\), got \(1, 64, 64, 3\)"),
        ((1, 3, 64, 70), r"multiples of 32, got \(64, 70\); letterbox the input first"),
        ((1, 3, 48, 64), r"multiples of 32, got \(48, 64\)"),
    ],
)
def test_bad_input_shapes_raise(shape: tuple[int, ...], match: str) -> None:
    model = build_model(yolov8_seg_config("n")).eval()
    with pytest.raises(ValueError, match=match):
        model(torch.rand(*shape))


def test_builders() -> None:
    model = fastsam_s()
    assert isinstance(model, YoloV8Seg) and model.cfg == FASTSAM_S
    assert model.head.class_branch[0][-1].bias.abs().sum() > 0  # spec §1.6 prior biases applied


# ---- Conv+BN fusion (spec §1.10) ----


def _all_outputs(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out = model(x)
    return {n: getattr(out, n) for n in ("box_dist", "class_logits", "mask_coeffs", "protos")}


@pytest.mark.parametrize("formula", ["v8.0", "current"])
@pytest.mark.parametrize("scale", ["n", "s"])
def test_fuse_matches_unfused(formula: str, scale: str) -> None:
    torch.manual_seed(0)
    model = _randomize_bn(build_model(yolov8_seg_config(scale, reg_max=26))).eval()
    fused = fuse_conv_bn(model, formula=formula)  # type: ignore[arg-type]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert all(m.conv.bias is not None for m in fused.modules() if isinstance(m, ConvBnAct))
    assert not fused.training
    x = torch.rand(1, 3, 96, 128)
    ref, got = _all_outputs(model, x), _all_outputs(fused, x)
    for name in ref:
        # fp32: folding BN into the weights reorders roundings; 1e-4 is ~100 ulp at these magnitudes.
        torch.testing.assert_close(got[name], ref[name], rtol=0, atol=1e-4, msg=name)


def test_fuse_formulas_agree_to_an_ulp() -> None:
    torch.manual_seed(0)
    model = _randomize_bn(build_model(yolov8_seg_config("n"))).eval()
    a = fuse_conv_bn(model, formula="v8.0").state_dict()
    b = fuse_conv_bn(model, formula="current").state_dict()
    assert a.keys() == b.keys()
    for k in a:
        # 1e-6 relative: a few float32 ulps (different sqrt/rsqrt + mm/mul order).
        torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=1e-7, msg=k)


def test_fuse_leaves_the_original_untouched() -> None:
    torch.manual_seed(0)
    model = _randomize_bn(build_model(yolov8_seg_config("n"))).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(1, 3, 64, 64)
    fused = fuse_conv_bn(model)
    assert fused is not model
    assert model.training  # mode not changed
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 66  # spec §1.7
    # The fused copy shares no storage with the original.
    fused_ptrs = {p.data_ptr() for p in fused.parameters()}
    assert not fused_ptrs & {p.data_ptr() for p in model.parameters()}
    model.eval()
    torch.testing.assert_close(
        _all_outputs(fused, x)["protos"], _all_outputs(model, x)["protos"], rtol=0, atol=1e-4
    )


def test_fuse_casts_half_models_to_float() -> None:
    torch.manual_seed(0)
    model = _randomize_bn(build_model(yolov8_seg_config("n"))).half().eval()
    fused = fuse_conv_bn(model)
    assert all(p.dtype == torch.float32 for p in fused.parameters())
    ref = _all_outputs(
        model.float(), torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    )
    got = _all_outputs(fused, torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1)))
    for name in ref:
        torch.testing.assert_close(got[name], ref[name], rtol=0, atol=1e-4, msg=name)


def test_fuse_rejects_unknown_formula() -> None:
    model = build_model(yolov8_seg_config("n"))
    with pytest.raises(
        ValueError, match=r"unknown fuse formula 'v9'; expected 'v8.0' or 'current'"
    ):
        fuse_conv_bn(model, formula="v9")  # type: ignore[arg-type]


def test_conv_bn_act_inplace_silu_only_without_autograd():
    """Inference runs the SiLU in place (no new activation tensor); values equal the out-of-place
    path, the caller's input is untouched, and training still back-propagates."""
    torch.manual_seed(0)
    layer = ConvBnAct(4, 6, 3).eval()
    x = torch.randn(2, 4, 9, 11)
    x_before = x.clone()
    with torch.no_grad():
        conv_out = layer.bn(layer.conv(x))
        expected = conv_out * torch.sigmoid(conv_out)
    with torch.inference_mode():
        fast = layer(x)
    assert torch.allclose(fast, expected, rtol=0, atol=1e-6)
    assert torch.equal(fast, torch.nn.functional.silu(conv_out))  # bit-identical to out of place
    assert torch.equal(x, x_before)
    layer.train()
    x.requires_grad_(True)
    out = layer(x)
    out.sum().backward()  # would raise if the SiLU had overwritten what its backward needs
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert torch.equal(x.detach(), x_before)
