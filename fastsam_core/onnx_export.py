"""`export_onnx`: the network plus box decoding as one ONNX graph with runtime metadata (issue 14).

The graph (`ExportGraph`) takes the letterboxed uint8 batch and returns, all float32:
decoded xywh boxes, sigmoid scores, mask coefficients, prototypes and the anchor centres, i.e.
everything exact and cheap before NMS (`fastsam_core.onnxrt.graph` states the I/O contract).
NMS and mask assembly stay outside: data-dependent shapes, and the two post-processing
references differ there.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import torch
from torch import nn

from fastsam_core.model.fuse import fuse_conv_bn
from fastsam_core.model.yolov8_seg import YoloV8Seg
from fastsam_core.onnxrt.graph import INPUT_NAME, OUTPUT_NAMES, GraphInfo, write_metadata
from fastsam_core.ops.anchors import decode_boxes, dfl_decode, make_anchors
from fastsam_core.ops.letterbox import check_imgsz
from fastsam_core.ops.references import Postprocess, check_postprocess

logger = logging.getLogger(__name__)

MAX_SIDE = 8192  # largest H or W a dynamic graph accepts (256 cells of stride 32)


class ExportGraph(nn.Module):
    """uint8 letterboxed images -> (boxes, scores, mask_coeffs, protos, anchors), float32.

    Args:
        network: a fused `YoloV8Seg` (fp32, or fp16 for `half`).
    """

    def __init__(self, network: YoloV8Seg) -> None:
        super().__init__()
        self.network = network
        self.compute_dtype = next(network.parameters()).dtype

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """images: (B, 3, H, W) uint8 RGB -> boxes (B, 4, A) xywh px, scores (B, nc, A),
        mask_coeffs (B, K, A), protos (B, K, H/4, W/4), anchors (A, 2) px."""
        cfg = self.network.cfg
        x = (images.float() / 255.0).to(self.compute_dtype)  # the torch path's fp32 / 255, cast
        out = self.network(x)
        distances = dfl_decode(out.box_dist.float(), cfg.reg_max)  # (B, 4, A), decoded in fp32
        points, strides = make_anchors(out.feature_sizes, cfg.strides, dtype=torch.float32)
        boxes = decode_boxes(distances, points, strides)  # (B, 4, A) letterbox px
        scores = out.class_logits.float().sigmoid()  # (B, nc, A)
        anchors = points * strides  # (A, 2) * (A, 1) -> (A, 2) px
        return boxes, scores, out.mask_coeffs.float(), out.protos.float(), anchors


def _load(model: YoloV8Seg | str | Path) -> tuple[YoloV8Seg, str | None]:
    """The network and the sha256 of its weights file (None for an in-memory model)."""
    if isinstance(model, YoloV8Seg):
        return model, None
    if not isinstance(model, (str, Path)):
        raise TypeError(
            f"model must be a YoloV8Seg, a weights path or a name like 'fastsam-s', got "
            f"{type(model).__name__}"
        )
    from fastsam_core.hub import resolve_weights
    from fastsam_core.weights import load_model, sha256_file

    path = resolve_weights(model)
    return load_model(path, fuse=False), sha256_file(path)


def _require_exporter() -> None:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise ImportError(
            f"ONNX export needs onnx and onnxscript ({err}): pip install onnx onnxscript"
        ) from None


def _check_out(out: Path, force: bool) -> None:
    if out.suffix != ".onnx":
        raise ValueError(f"output must end in .onnx, got {out.name!r}")
    if out.is_dir():
        raise ValueError(f"{out} is a directory; give a file name ending in .onnx")
    if out.exists() and not force:
        raise FileExistsError(f"{out} already exists; pass force=True (--force) to overwrite it")


def export_onnx(
    model: YoloV8Seg | str | Path,
    out: str | Path,
    *,
    imgsz: int | tuple[int, int] | None = None,
    dynamic: bool = False,
    opset: int = 18,
    half: bool = False,
    postprocess: Postprocess = "official",
    force: bool = False,
) -> Path:
    """Export `model` as an ONNX graph with `GraphInfo` metadata; the file is complete or absent.

    Args:
        model: a `YoloV8Seg`, a weights path or a name (`hub.resolve_weights`).
        out: destination `.onnx` file.
        imgsz: (H, W) or int, rounded up to multiples of 32; default the checkpoint's imgsz. The
            input size of a fixed graph, the default letterbox size of a dynamic one.
        dynamic: free H and W (multiples of 32, up to `MAX_SIDE`); the batch is always free.
        opset: ONNX opset (the dynamo exporter needs >= 18).
        half: fp16 network (uint8 input and float32 outputs unchanged).
        postprocess: whose Conv+BN fuse formula to bake in (spec §1.10).
        force: overwrite an existing `out`.

    Returns:
        The written path.
    Raises:
        FileExistsError: `out` exists and not `force`.
        ValueError: bad `out`, `imgsz`, `opset` or `postprocess`.
    """
    _require_exporter()
    from fastsam_core import __version__
    from fastsam_core.export.files import new_temp_file, publish
    from fastsam_core.postprocess import POSTPROCESS

    out = Path(out)
    _check_out(out, force)
    check_postprocess(postprocess)
    if not isinstance(opset, int) or opset < 18:
        raise ValueError(f"opset must be an int >= 18 (the dynamo exporter's minimum), got {opset}")
    network, sha256 = _load(model)
    formula = POSTPROCESS[postprocess].fuse_formula
    network = cast(YoloV8Seg, fuse_conv_bn(network, formula=formula)).cpu()  # fp32 copy
    if half:
        network = network.half()
    cfg = network.cfg
    hw = check_imgsz(cfg.imgsz if imgsz is None else imgsz, max(cfg.strides))
    if dynamic and max(hw) > MAX_SIDE:
        raise ValueError(f"imgsz {hw} exceeds the dynamic graph's largest side {MAX_SIDE}")
    graph = ExportGraph(network).eval()
    example = torch.full((2, 3, *hw), 114, dtype=torch.uint8)  # batch 2: 1 would specialize
    batch = torch.export.Dim("batch", min=1, max=1024)
    axes: dict[int, object] = {0: batch}
    if dynamic:
        cells = MAX_SIDE // 32
        axes[2] = 32 * torch.export.Dim("h", min=1, max=cells)
        axes[3] = 32 * torch.export.Dim("w", min=1, max=cells)
    info = GraphInfo.for_config(
        cfg,
        imgsz=hw,
        dynamic=dynamic,
        fuse_formula=formula,
        postprocess=postprocess,
        half=half,
        int8=False,
        opset=opset,
        fastsam_core_version=__version__,
        source_sha256=sha256,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = new_temp_file(out.parent, out.name)
    try:
        with torch.no_grad(), _quiet_exporter():
            torch.onnx.export(
                graph,
                (example,),
                str(tmp),
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                dynamo=True,
                opset_version=opset,
                dynamic_shapes={"images": axes},
                external_data=False,  # one self-contained file (FastSAM-x: ~280 MB < 2 GB)
                verbose=False,
            )
        write_metadata(tmp, info)
        publish(tmp, out, overwrite=force)
    finally:
        tmp.unlink(missing_ok=True)
        tmp.with_name(tmp.name + ".data").unlink(missing_ok=True)  # external-data exporters
    size = "dynamic" if dynamic else f"{hw[0]}x{hw[1]}"
    logger.info("exported %s (%s, %s)", out, size, "fp16" if half else "fp32")
    return out


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's per-initializer warnings (onnx_ir's deduplication pass logs one
    line per skipped constant) and progress prints; errors still propagate."""
    loggers = [logging.getLogger(name) for name in ("onnx_ir", "onnxscript", "torch.onnx")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
