"""The FastSAM paper's downstream tasks on top of everything mode (issue #16).

`edges` (zero-shot edge maps), `proposals` (ranked masks/boxes as object proposals) and
`box_prompted` (a detector's boxes as prompts -> COCO instance segmentation); their scores live in
`fastsam_core.eval` (`boundaries`, `proposals`, `coco`). `evaluate_task` runs one of them on a
dataset, as `fastsam eval --task ...` does. Modules load on first use (no torch at import).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# task -> (conf, iou, max_det) defaults: COCO proposal-recall settings for proposals (low
# confidence, up to 1000 per image), FastSAM's inference settings where the task reuses the
# everything-mode masks as they are ("instances" is `eval.coco.evaluate_model`, with its own).
TASK_DEFAULTS: dict[str, tuple[float, float, int]] = {
    "proposals": (0.001, 0.7, 1000),
    "edges": (0.4, 0.9, 300),
    "box-prompted": (0.4, 0.9, 300),
}
# the metrics `fastsam eval` prints per task (evaluate_task returns more)
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "proposals": (
        "box_AR@10", "box_AR@100", "box_AR@1000", "box_AR_s@1000", "box_AR_m@1000",
        "box_AR_l@1000", "mask_AR@10", "mask_AR@100", "mask_AR@1000",
    ),
    "edges": ("ODS", "OIS", "AP", "R50"),
    "box-prompted": ("mask_map", "mask_map50", "mask_map75", "box_map"),
}  # fmt: skip


def evaluate_task(
    task: str,
    model: Any,
    data: str | Path,
    boxes: str | Path | None = None,
    imgsz: int | None = None,
    device: str = "auto",
    conf: float | None = None,
    iou: float | None = None,
    max_det: int | None = None,
    split: str = "val",
) -> dict[str, float]:
    """Run `model` on a dataset for one of "proposals", "edges", "box-prompted" and score it.

    Args:
        task: which task; "instances" is `eval.coco.evaluate_model`.
        model: a YoloV8Seg, weights path or name.
        data: COCO `.json` / YOLO-seg `.yaml` (edges: also a BSDS-style folder).
        boxes: box-prompted only: the detector's COCO results `.json`.
        imgsz, device: as `Predictor`.
        conf, iou, max_det: None = `TASK_DEFAULTS[task]`.
        split: the YAML entry to read.
    """
    if task not in TASK_METRICS:
        raise ValueError(f"task must be one of {sorted(TASK_METRICS)}, got {task!r}")
    if (task == "box-prompted") != (boxes is not None):
        raise ValueError("--boxes DETECTIONS.json is required by (and only by) box-prompted")
    default_conf, default_iou, default_max_det = TASK_DEFAULTS[task]
    from fastsam_core.predictor import Predictor
    from fastsam_core.tasks.edges import SoftMaskPredictor, evaluate_edges

    predictor = (SoftMaskPredictor if task == "edges" else Predictor)(
        model,
        device=device,
        imgsz=imgsz,
        conf=default_conf if conf is None else conf,
        iou=default_iou if iou is None else iou,
        max_det=default_max_det if max_det is None else max_det,
    )
    if task == "edges":
        assert isinstance(predictor, SoftMaskPredictor)
        return evaluate_edges(predictor, data, split)
    if task == "proposals":
        from fastsam_core.tasks.proposals import evaluate_proposals

        return evaluate_proposals(predictor, data, split)
    from fastsam_core.tasks.box_prompted import evaluate_box_prompted

    assert boxes is not None  # checked above
    return evaluate_box_prompted(predictor, data, boxes)
