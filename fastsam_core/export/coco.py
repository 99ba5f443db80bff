"""Dataset-level COCO files of a `fastsam segment --format coco` run (issue 13).

* `coco_results(lines)`: one COCO results list (what `COCO.loadRes` reads) with every mask of
  every image: `image_id`, `category_id`, `segmentation` (RLE), `score`, `bbox` (the mask's
  tight box, xywh) plus the SAM-style fields of `export.records` (`predicted_iou`,
  `stability_score`, `point_coords`, `crop_box`, `det_bbox`, prompt columns).
* `coco_images(lines, names)`: the images table (`id`, `file_name`, `height`, `width`) and
  the categories, in COCO ground-truth layout, so results can be matched to files.
* `image_ids_from_gt(path)`: file name -> image id of an existing COCO annotation file, to
  number images as a ground truth does (`--coco-gt`).

FastSAM is class-agnostic (one class, id 0): evaluate against a ground truth with other
category ids with `COCOeval.params.useCats = 0`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def coco_results(lines: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """COCO results of journal lines (`export.jsonl`): each annotation with its `image_id`."""
    results = []
    for line in lines:
        for record in line["annotations"]:
            entry = {"image_id": line["image_id"]}
            entry.update((k, v) for k, v in record.items() if k != "id")  # loadRes sets ids
            results.append(entry)
    return results


def coco_images(lines: Sequence[dict[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    """{"images": [{id, file_name, height, width}], "categories": [{id, name}]}."""
    return {
        "images": [
            {
                "id": line["image_id"],
                "file_name": line["file_name"],
                "height": line["image"]["height"],
                "width": line["image"]["width"],
            }
            for line in lines
        ],
        "categories": [{"id": i, "name": name} for i, name in enumerate(names)],
    }


def image_ids_from_gt(path: str | Path) -> dict[str, int]:
    """file name (as listed, and its base name) -> image id of a COCO annotation file."""
    try:
        document = json.loads(Path(path).read_text())
        images = document["images"]
        ids = {str(im["file_name"]): int(im["id"]) for im in images}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"--coco-gt {path}: not a COCO annotation file ({err})") from err
    ids.update({Path(name).name: image_id for name, image_id in list(ids.items())})
    return ids
