"""Run journal (export/jsonl.py) and dataset COCO files (export/coco.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fastsam_core.export.coco import coco_images, coco_results, image_ids_from_gt
from fastsam_core.export.jsonl import append_line, open_journal, read_journal
from fastsam_core.results import results_from_dense

coco_api = pytest.importorskip("pycocotools.coco", reason="pycocotools reads the COCO files")
cocoeval = pytest.importorskip("pycocotools.cocoeval")


def _line(image_id: int, stem: str, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    masks = torch.zeros((3, 40, 50), dtype=torch.bool)
    for i in range(3):
        x, y = torch.randint(0, 30, (2,), generator=g).tolist()
        masks[i, y : y + 10, x : x + 15] = True
    boxes = torch.tensor([[0.0, 0.0, 20.0, 20.0]] * 3)
    doc = results_from_dense(masks, boxes, torch.tensor([0.9, 0.6, 0.3]), (40, 50)).to_json()
    return {"image_id": image_id, "file_name": f"{stem}.jpg", "stem": stem} | doc


def test_journal_keeps_complete_lines_and_cuts_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    with open_journal(path, resume=False) as handle:
        append_line(handle, _line(1, "a", 0))
        append_line(handle, _line(2, "b", 1))
    complete = path.read_bytes()
    path.write_bytes(complete + b'{"image_id": 3, "ann')  # killed mid-write
    lines, good = read_journal(path)
    assert [line["stem"] for line in lines] == ["a", "b"] and good == len(complete)
    with open_journal(path, resume=True) as handle:
        append_line(handle, _line(3, "c", 2))
    assert [line["stem"] for line in read_journal(path)[0]] == ["a", "b", "c"]
    assert path.read_bytes().count(b"\n") == 3
    with open_journal(path, resume=False):
        pass
    assert read_journal(path) == ([], 0) and read_journal(tmp_path / "missing.jsonl") == ([], 0)


def test_coco_results_load_and_evaluate_against_their_own_ground_truth(tmp_path: Path) -> None:
    lines = [_line(7, "a", 0), _line(9, "b", 1)]
    results = coco_results(lines)
    table = coco_images(lines, ["object"])
    assert [im["id"] for im in table["images"]] == [7, 9]
    assert table["images"][0] == {"id": 7, "file_name": "a.jpg", "height": 40, "width": 50}
    assert {r["image_id"] for r in results} == {7, 9} and "id" not in results[0]
    assert {"score", "bbox", "segmentation", "category_id", "predicted_iou"} <= set(results[0])
    gt = dict(table)
    gt["annotations"] = [
        {"id": k + 1, "iscrowd": 0, "image_id": r["image_id"], "category_id": 0,
         "segmentation": r["segmentation"], "bbox": r["bbox"], "area": r["area"]}
        for k, r in enumerate(results)
    ]  # fmt: skip
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(results))
    coco_gt = coco_api.COCO(str(tmp_path / "gt.json"))
    coco_dt = coco_gt.loadRes(str(tmp_path / "res.json"))
    for iou_type in ("segm", "bbox"):
        ev = cocoeval.COCOeval(coco_gt, coco_dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        assert ev.stats[0] == pytest.approx(1.0)  # bbox is the mask's tight box: exact match
    assert image_ids_from_gt(tmp_path / "gt.json") == {"a.jpg": 7, "b.jpg": 9}
    (tmp_path / "bad.json").write_text("[]")
    with pytest.raises(ValueError, match="not a COCO annotation file"):
        image_ids_from_gt(tmp_path / "bad.json")
    assert np.isfinite(ev.stats).all()
