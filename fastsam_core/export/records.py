"""Per-mask JSON records that COCO and SAM tools read (issue 13): `Results.to_json()`.

Each record is a COCO result (`segmentation` RLE, `bbox` xywh, `score`, `category_id`, `area`)
and a SAM automatic-mask-generator record (`predicted_iou`, `stability_score`, `point_coords`,
`crop_box`), so `COCO.loadRes` (with an `image_id` added, see `export.coco`) and
`sv.Detections.from_sam` both read it. Field meanings:

* `bbox`: the tight box of the mask's pixels, COCO [x, y, w, h] in original pixels (what SAM
  and COCO mean by a mask's box; [0, 0, 0, 0] for an empty mask);
* `det_bbox` / `bbox_xyxy`: the detector's box, [x, y, w, h] / [x0, y0, x1, y1];
* `score` and `predicted_iou`: the same number, the detector's confidence (FastSAM predicts no
  IoU; the name is SAM's);
* `stability_score`: SAM's stability of the mask logits (`ops.stability`), null if unknown;
* `point_coords`: [[x, y]] the detection's anchor point (its prediction cell centre), or the
  detector box centre when the Results carries no anchor points;
* `crop_box`: [0, 0, W, H], the whole image (FastSAM does not crop);
* prompt rows (`PromptResults`) add `prompt_kind`, `prompt_id`, `prompt_score`, `source_id`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastsam_core.onnxrt.results import NumpyResults
    from fastsam_core.results import Results


def mask_records(results: Results | NumpyResults) -> list[dict[str, Any]]:
    """One JSON-ready record per mask of `results` (torch or runtime Results; see the module
    docstring). Prompt rows are recognised by their `prompt_kinds` column."""
    from fastsam_core.export.rle import encode_masks

    masks = results.masks_original()
    rles = encode_masks(masks)
    areas = masks.areas().tolist()
    tight = masks.tight_boxes().tolist()
    boxes, scores = results.boxes.tolist(), results.scores.tolist()
    class_ids = results.class_ids.tolist()
    stable = results.stability()  # computed here if the predictor left it pending
    stability = [None] * len(boxes) if stable is None else stable.tolist()
    points = (
        [[(x0 + x1) / 2, (y0 + y1) / 2] for x0, y0, x1, y1 in boxes]
        if results.point_coords is None
        else results.point_coords.tolist()
    )
    height, width = results.orig_hw
    records = []
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        class_id = int(class_ids[i])
        tx0, ty0, tx1, ty1 = tight[i]
        records.append(
            {
                "id": i,
                "bbox": [tx0, ty0, tx1 - tx0, ty1 - ty0],
                "det_bbox": [x0, y0, x1 - x0, y1 - y0],
                "bbox_xyxy": [x0, y0, x1, y1],
                "score": float(scores[i]),
                "predicted_iou": float(scores[i]),
                "stability_score": stability[i],
                "point_coords": [points[i]],
                "crop_box": [0, 0, width, height],
                "area": int(areas[i]),
                "category_id": class_id,
                "category_name": (
                    results.names[class_id] if 0 <= class_id < len(results.names) else str(class_id)
                ),
                "segmentation": rles[i],
            }
        )
    prompt_kinds = getattr(results, "prompt_kinds", None)  # PromptResults (torch or numpy)
    if prompt_kinds is not None:
        columns = zip(
            prompt_kinds,
            results.prompt_ids.tolist(),  # type: ignore[union-attr]
            results.prompt_scores.tolist(),  # type: ignore[union-attr]
            results.source_ids.tolist(),  # type: ignore[union-attr]
        )
        for record, (kind, prompt_id, prompt_score, source_id) in zip(records, columns):
            record.update(
                prompt_kind=kind,
                prompt_id=int(prompt_id),
                prompt_score=float(prompt_score),
                source_id=int(source_id),
            )
    return records


def results_document(results: Results | NumpyResults) -> dict[str, Any]:
    """`Results.to_json()`: image info, class names and `mask_records`."""
    height, width = results.orig_hw
    return {
        "image": {"path": results.path, "height": height, "width": width},
        "names": list(results.names),
        "annotations": mask_records(results),
    }
