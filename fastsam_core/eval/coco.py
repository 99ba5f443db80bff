"""COCO box and mask AP/AR with pycocotools (the `eval` extra), on any dataset `load_dataset` reads.

The ground truth is rebuilt from the parsed `DatasetIndex` (masks rasterised exactly as for
training, RLE-encoded), so COCO and YOLO-seg datasets are scored alike and the same skip rules
apply. Predictions come from a callable `predict(image_rgb_uint8 (H0, W0, 3)) -> (boxes xyxy (N, 4),
scores (N,), class_ids (N,), rles)`; `evaluate_model` wraps the `Predictor`. Class-agnostic mode
(FastSAM style) puts every ground truth and prediction in one category.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fastsam_core.data.datasets import DatasetIndex, load_dataset, load_rgb, rasterize_instances

PredictFn = Callable[[np.ndarray], tuple[Any, Any, Any, Sequence[dict[str, Any]]]]

STAT_NAMES = (
    "map",
    "map50",
    "map75",
    "map_small",
    "map_medium",
    "map_large",
    "ar1",
    "ar10",
    "ar100",
    "ar_small",
    "ar_medium",
    "ar_large",
)


def _pycocotools() -> tuple[Any, Any]:
    try:
        from pycocotools.coco import COCO  # type: ignore[import-untyped]
        from pycocotools.cocoeval import COCOeval  # type: ignore[import-untyped]
    except ImportError as err:
        raise ImportError(
            "COCO evaluation needs pycocotools: pip install fastsam-core[eval]"
        ) from err
    return COCO, COCOeval


def ground_truth(index: DatasetIndex, class_agnostic: bool) -> dict[str, Any]:
    """A COCO dict (RLE masks) of the dataset; category ids are class id + 1 (or 1 if agnostic)."""
    from fastsam_core.export.rle import encode_dense

    names = ("object",) if class_agnostic else index.class_names
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for record in index.records:
        images.append(
            {
                "id": record.image_id,
                "height": record.height,
                "width": record.width,
                "file_name": str(record.path),
            }
        )
        masks = rasterize_instances(record)  # (N, H0, W0)
        for inst, mask in zip(record.instances, masks):
            if not mask.any():
                continue
            ys, xs = np.nonzero(mask)
            rle = encode_dense(mask)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": record.image_id,
                    "category_id": 1 if class_agnostic else inst.class_id + 1,
                    "segmentation": _jsonable(rle),
                    "area": float(mask.sum()),
                    "iscrowd": 0,
                    "bbox": [
                        float(xs.min()),
                        float(ys.min()),
                        float(xs.max() + 1 - xs.min()),
                        float(ys.max() + 1 - ys.min()),
                    ],
                }
            )
    categories = [{"id": i + 1, "name": n} for i, n in enumerate(names)]
    return {"images": images, "annotations": annotations, "categories": categories}


def _jsonable(rle: dict[str, Any]) -> dict[str, Any]:
    counts = rle["counts"]
    return {
        "size": [int(v) for v in rle["size"]],
        "counts": counts.decode() if isinstance(counts, bytes) else counts,
    }


def predictions(
    index: DatasetIndex, predict: PredictFn, class_agnostic: bool
) -> list[dict[str, Any]]:
    """COCO result entries ("bbox" xywh, "segmentation" RLE, "score") for every image."""
    results = []
    for record in index.records:
        boxes, scores, class_ids, rles = predict(load_rgb(record))
        boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4).tolist()
        scores = torch.as_tensor(scores, dtype=torch.float32).reshape(-1).tolist()
        class_ids = torch.as_tensor(class_ids).reshape(-1).tolist()
        if not len(boxes) == len(scores) == len(class_ids) == len(rles):
            raise ValueError(
                f"predict returned {len(boxes)} boxes, {len(scores)} scores, "
                f"{len(class_ids)} class ids and "
                f"{len(rles)} masks for {record.path}; they must have the same length"
            )
        for (x1, y1, x2, y2), score, cls, rle in zip(boxes, scores, class_ids, rles):
            results.append(
                {
                    "image_id": record.image_id,
                    "category_id": 1 if class_agnostic else int(cls) + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": score,
                    "segmentation": _jsonable(rle),
                }
            )
    return results


def coco_metrics(gt: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, float]:
    """pycocotools COCOeval for "bbox" and "segm": {"box_map", ..., "mask_ar100", ...}."""
    COCO, COCOeval = _pycocotools()
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        metrics: dict[str, float] = {}
        for iou_type, prefix in (("bbox", "box"), ("segm", "mask")):
            if not results:
                metrics.update({f"{prefix}_{n}": 0.0 for n in STAT_NAMES})
                continue
            coco_dt = coco_gt.loadRes([dict(r) for r in results])
            evaluator = COCOeval(coco_gt, coco_dt, iou_type)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
            # COCOeval reports -1 where a category/area range has no ground truth; keep it visible.
            metrics.update({f"{prefix}_{n}": float(v) for n, v in zip(STAT_NAMES, evaluator.stats)})
    return metrics


def evaluate(
    data: str | Path | DatasetIndex,
    predict: PredictFn,
    class_agnostic: bool = False,
    split: str = "val",
) -> dict[str, float]:
    """COCO box and mask metrics of `predict` on a dataset (a `load_dataset` file, or an index)."""
    _pycocotools()  # fail before running the model
    index = data if isinstance(data, DatasetIndex) else load_dataset(data, split=split)
    gt = ground_truth(index, class_agnostic)
    return coco_metrics(gt, predictions(index, predict, class_agnostic))


def predictor_fn(predictor: Any) -> PredictFn:
    """Adapt a `fastsam_core.predictor.Predictor` to the `predict` callable."""

    def predict(image: np.ndarray) -> tuple[Any, Any, Any, Sequence[dict[str, Any]]]:
        result = predictor(image)[0]
        return result.boxes, result.scores, result.class_ids, result.to_rle()

    return predict


def evaluate_model(
    model: Any,
    data: str | Path | DatasetIndex,
    imgsz: int | None = None,
    device: str | torch.device = "auto",
    class_agnostic: bool = False,
    conf: float = 0.001,
    iou: float = 0.7,
    max_det: int = 100,
    split: str = "val",
) -> dict[str, float]:
    """Run the `Predictor` (model object, path or name) over a dataset and score it.

    Defaults are COCO-evaluation settings (conf 0.001, 100 detections), not FastSAM's inference
    settings (conf 0.4, iou 0.9).
    """
    from fastsam_core.predictor import Predictor

    _pycocotools()
    index = data if isinstance(data, DatasetIndex) else load_dataset(data, split=split)  # fail fast
    predictor = Predictor(
        model, device=device, imgsz=imgsz, conf=conf, iou=iou, max_det=max_det, fuse=False
    )
    return evaluate(index, predictor_fn(predictor), class_agnostic=class_agnostic)
