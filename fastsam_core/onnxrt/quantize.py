"""INT8 graphs: static QDQ quantization of the backbone and neck, calibrated on photos (issue 14).

`quantize_graph` quantizes an fp32 graph from `export_onnx` with onnxruntime's static quantizer:
int8 weights per output channel, uint8 activations, MinMax ranges collected on letterboxed
photos. The head (box, class and coefficient branches, their DFL decode) and the Proto mask
branch stay float: their outputs are compared against thresholds (scores, logit > 0), where int8
steps would move boxes and mask borders. `mask_agreement` then runs both graphs through
`OnnxPredictor` and reports the mean mask IoU of matched detections.

Torch-free, like the rest of `onnxrt` (needs `onnx` besides onnxruntime); only the final atomic
write borrows `fastsam_core.weights`' temp-file helpers.
"""

from __future__ import annotations

import ast
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from fastsam_core.onnxrt.graph import INPUT_NAME, write_metadata

logger = logging.getLogger(__name__)

QUANTIZED_SCOPES = ("network.backbone", "network.neck")  # module scopes that become int8
_SCOPE_KEY = "pkg.torch.onnx.name_scopes"  # node metadata the dynamo exporter writes
MATCH_IOU = 0.5  # box IoU that pairs an int8 detection with an fp32 one


@dataclass(frozen=True)
class ImageAgreement:
    """One photo: detections of each graph, matched pairs and their mean mask IoU."""

    name: str
    fp32_detections: int
    int8_detections: int
    matched: int
    mean_mask_iou: float  # over matched pairs; 1.0 when neither graph detects anything


@dataclass(frozen=True)
class AgreementReport:
    """Mask agreement of an int8 graph with its fp32 source over a set of photos."""

    images: tuple[ImageAgreement, ...]

    @property
    def mean_mask_iou(self) -> float:
        """Mean mask IoU over all matched pairs of all photos (1.0 when none)."""
        pairs = sum(im.matched for im in self.images)
        total = sum(im.mean_mask_iou * im.matched for im in self.images)
        return total / pairs if pairs else 1.0

    @property
    def recall(self) -> float:
        """Share of fp32 detections with an int8 match."""
        fp32 = sum(im.fp32_detections for im in self.images)
        return sum(im.matched for im in self.images) / fp32 if fp32 else 1.0

    @property
    def worst(self) -> ImageAgreement:
        return min(self.images, key=lambda im: im.mean_mask_iou)

    def summary(self) -> str:
        """Lines for the CLI: the means and the worst photo."""
        worst = self.worst
        return (
            f"int8 vs fp32 on {len(self.images)} calibration photos: mean mask IoU "
            f"{self.mean_mask_iou:.4f} over {sum(im.matched for im in self.images)} matched "
            f"detections, recall {self.recall:.3f}; worst {Path(worst.name).name} "
            f"{worst.mean_mask_iou:.4f} ({worst.matched}/{worst.fp32_detections} matched)"
        )


def _import_quantization() -> Any:
    try:
        import onnx  # noqa: F401
        from onnxruntime import quantization
    except ImportError as err:
        raise ImportError(
            f"INT8 quantization needs onnx and onnxruntime ({err}): pip install onnx onnxruntime"
        ) from None
    return quantization


def float_node_names(model: Any) -> list[str]:
    """Names of the nodes that stay float: every node outside `QUANTIZED_SCOPES`.

    The scope comes from the dynamo exporter's `pkg.torch.onnx.name_scopes` node metadata; a
    node without it (graph glue, the uint8 -> float input cast) stays float.
    """
    names = []
    for node in model.graph.node:
        scopes = next((p.value for p in node.metadata_props if p.key == _SCOPE_KEY), "[]")
        try:
            parsed = ast.literal_eval(scopes)
        except (ValueError, SyntaxError):
            parsed = []
        if not any(str(s).startswith(QUANTIZED_SCOPES) for s in parsed):
            names.append(node.name)
    return names


def letterboxed_photos(
    sources: str | Path | Sequence[str | Path], hw: tuple[int, int], count: int
) -> Iterator[tuple[str, np.ndarray]]:
    """(name, (1, 3, H, W) uint8) of up to `count` photos letterboxed to exactly `hw`."""
    from fastsam_core.io.images import expand_sources, load_image
    from fastsam_core.onnxrt.preprocess import letterbox
    from fastsam_core.ops.geometry import letterbox_geometry

    paths = expand_sources(sources)[:count]
    if not paths:
        raise FileNotFoundError(f"no calibration photos in {sources!r}")
    for path in paths:
        image = load_image(path, array=True).image  # (H0, W0, 3) uint8 RGB
        geometry = letterbox_geometry(image.shape[:2], hw, stride=32, auto=False)
        yield str(path), letterbox(image, geometry).transpose(2, 0, 1)[None].copy()


def quantize_graph(
    fp32: str | Path,
    out: str | Path,
    calib: str | Path | Sequence[str | Path],
    *,
    count: int = 32,
    force: bool = False,
    measure: bool = True,
) -> AgreementReport | None:
    """Write an INT8 copy of the fp32 graph `fp32` to `out` (complete or absent).

    Args:
        fp32: an fp32 `.onnx` from `export_onnx` (not --half).
        out: destination `.onnx`.
        calib: calibration photos: a folder, a glob pattern or a list of paths.
        count: use at most this many photos.
        force: overwrite an existing `out`.
        measure: also run `mask_agreement` on the calibration photos (and log it).

    Returns:
        The agreement report (None when not `measure`).
    """
    from fastsam_core.export.files import new_temp_file, publish  # the one atomic writer
    from fastsam_core.onnxrt.session import OnnxNetwork

    quantization = _import_quantization()
    import onnx

    out = Path(out)
    if out.suffix != ".onnx":
        raise ValueError(f"output must end in .onnx, got {out.name!r}")
    if out.exists() and not force:
        raise FileExistsError(f"{out} already exists; pass force=True (--force) to overwrite it")
    info = OnnxNetwork(fp32, threads=1).info
    if info.half or info.int8:
        kind = "fp16" if info.half else "int8"
        raise ValueError(f"{fp32} is an {kind} graph; quantize an fp32 export (without --half)")
    batches = list(letterboxed_photos(calib, info.imgsz, count))
    excluded = float_node_names(onnx.load(str(fp32), load_external_data=False))

    items = iter(batches)

    def get_next(self: object) -> dict[str, np.ndarray] | None:  # one photo per call, then None
        item = next(items, None)
        return None if item is None else {INPUT_NAME: item[1]}

    reader = type("PhotoReader", (quantization.CalibrationDataReader,), {"get_next": get_next})()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = new_temp_file(out.parent, out.name)
    try:
        quantization.quantize_static(
            str(fp32),
            str(tmp),
            reader,
            quant_format=quantization.QuantFormat.QDQ,
            per_channel=True,  # conv weights per output channel: BN-folded scales vary a lot
            activation_type=quantization.QuantType.QUInt8,
            weight_type=quantization.QuantType.QInt8,
            nodes_to_exclude=excluded,
            calibrate_method=quantization.CalibrationMethod.MinMax,
        )
        write_metadata(tmp, replace(info, int8=True))
        publish(tmp, out, overwrite=force)
    finally:
        tmp.unlink(missing_ok=True)
    logger.info("quantized %s -> %s on %d photos", fp32, out, len(batches))
    if not measure:
        return None
    report = mask_agreement(fp32, out, [name for name, _ in batches])
    logger.info("%s", report.summary())
    return report


def mask_agreement(
    reference: str | Path, candidate: str | Path, photos: Sequence[str | Path]
) -> AgreementReport:
    """Run both graphs through `OnnxPredictor` (everything mode, FastSAM defaults) on `photos`;
    pair each fp32 detection (by score) with the free int8 one of best mask IoU among those of box
    IoU >= `MATCH_IOU`, and average the pairs' mask IoU."""
    from fastsam_core.onnxrt.boxes import box_iou
    from fastsam_core.onnxrt.predictor import OnnxPredictor

    predictors = [OnnxPredictor(path, device="cpu") for path in (reference, candidate)]
    rows = []
    for photo in photos:
        first, second = (p(str(photo))[0] for p in predictors)
        masks_a, masks_b = first.dense_masks, second.dense_masks  # (N, H, W) bool
        boxes_a, boxes_b = np.asarray(first.boxes), np.asarray(second.boxes)  # (Na, 4), (Nb, 4)
        ious = np.nan_to_num(box_iou(boxes_a, boxes_b))  # (Na, Nb); 0/0 for zero-area boxes
        ious[(boxes_a[:, None] == boxes_b[None]).all(-1)] = 1.0  # equal boxes, even degenerate
        taken: set[int] = set()
        mask_ious = []
        for i in np.argsort(-np.asarray(first.scores), kind="stable"):
            # among free int8 detections whose box overlaps, the best mask (boxes alone are
            # ambiguous: the full-image step gives several detections the same box)
            best, best_iou, best_key = -1, -1.0, (-1.0, -1.0)
            for j in np.where(ious[i] >= MATCH_IOU)[0] if ious.shape[1] else ():
                if j in taken:
                    continue
                union = np.logical_or(masks_a[i], masks_b[j]).sum()
                iou = float(np.logical_and(masks_a[i], masks_b[j]).sum() / union) if union else 1.0
                if (iou, ious[i, j]) > best_key:  # ties (equal masks): the closer box
                    best, best_iou, best_key = int(j), iou, (iou, float(ious[i, j]))
            if best >= 0:
                taken.add(best)
                mask_ious.append(best_iou)
        rows.append(
            ImageAgreement(
                name=str(photo),
                fp32_detections=len(first),
                int8_detections=len(second),
                matched=len(mask_ious),
                mean_mask_iou=float(np.mean(mask_ious)) if mask_ious else float(len(first) == 0),
            )
        )
    return AgreementReport(tuple(rows))
