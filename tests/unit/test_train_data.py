"""Datasets (COCO, YOLO-seg), bad-input handling, rasterisation and seeded augmentations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fastsam_core.export.rle import encode_dense
from fastsam_core.train.augment import (
    NO_AUGMENT,
    AugmentConfig,
    downsample_masks,
    masks_to_boxes,
    warp,
)
from fastsam_core.train.dataset import load_coco, load_dataset, rasterize_instances
from fastsam_core.train.loader import SegmentationDataset, collate, epoch_batches
from fastsam_core.train.synthetic import make_synthetic_dataset


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return make_synthetic_dataset(
        tmp_path_factory.mktemp("shapes"), num_images=6, image_size=(64, 80), seed=1
    )


def _coco(tmp_path: Path, annotations: list[dict], images: int = 1) -> Path:
    (tmp_path / "images").mkdir(exist_ok=True)
    for i in range(1, images + 1):
        Image.new("RGB", (40, 30), (100, 50, 20)).save(tmp_path / "images" / f"{i}.png")
    data = {
        "images": [
            {"id": i, "file_name": f"{i}.png", "height": 30, "width": 40}
            for i in range(1, images + 1)
        ],
        "annotations": annotations,
        "categories": [{"id": 7, "name": "a"}, {"id": 9, "name": "b"}],
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return path


SQUARE = [[5, 5, 15, 5, 15, 15, 5, 15]]


def test_synthetic_dataset_loads_with_polygons_and_rle(shapes):
    index = load_dataset(shapes)
    data = json.loads(shapes.read_text())
    assert len(index.records) == 6 and index.num_instances == len(data["annotations"])
    assert index.class_names == ("circle", "rectangle", "triangle") and index.category_ids == (
        1,
        2,
        3,
    )
    kinds = {type(a["segmentation"]).__name__ for a in data["annotations"]}
    assert kinds == {"list", "dict"}  # both encodings exercised
    # Every rasterised mask agrees with the annotation's area and box.
    for record in index.records:
        anns = [a for a in data["annotations"] if a["image_id"] == record.image_id]
        for ann, mask in zip(anns, rasterize_instances(record)):
            assert mask.sum() == ann["area"]
            ys, xs = np.nonzero(mask)
            assert [xs.min(), ys.min()] == ann["bbox"][:2]


def test_polygon_and_rle_rasterise_identically(tmp_path):
    poly_path = _coco(
        tmp_path, [{"id": 1, "image_id": 1, "category_id": 7, "segmentation": SQUARE}]
    )
    mask = rasterize_instances(load_coco(poly_path).records[0])[0]
    rle = encode_dense(mask)
    rle["counts"] = rle["counts"].decode() if isinstance(rle["counts"], bytes) else rle["counts"]
    rle_path = _coco(tmp_path, [{"id": 1, "image_id": 1, "category_id": 9, "segmentation": rle}])
    index = load_coco(rle_path)
    assert np.array_equal(rasterize_instances(index.records[0])[0], mask)
    assert index.records[0].instances[0].class_id == 1  # category 9 is the second category
    assert mask[5:16, 5:16].all() and mask.sum() == 121  # PIL fills the outline too


def test_single_class_collapses_categories(shapes):
    index = load_dataset(shapes, single_class=True)
    assert index.class_names == ("object",)
    assert {inst.class_id for r in index.records for inst in r.instances} == {0}


def test_yolo_seg_format(tmp_path):
    (tmp_path / "images" / "train").mkdir(parents=True)
    (tmp_path / "labels" / "train").mkdir(parents=True)
    Image.new("RGB", (40, 20)).save(tmp_path / "images" / "train" / "a.jpg")
    Image.new("RGB", (40, 20)).save(
        tmp_path / "images" / "train" / "b.jpg"
    )  # no label file: background
    (tmp_path / "labels" / "train" / "a.txt").write_text(
        "1 0.25 0.25 0.5 0.25 0.5 0.75 0.25 0.75\n0 0.1 0.1 0.2\n"
    )
    (tmp_path / "data.yaml").write_text(
        "path: .\ntrain: images/train\nval: images/train\nnames: [cat, dog]\n"
    )
    index = load_dataset(tmp_path / "data.yaml")
    assert [r.path.name for r in index.records] == ["a.jpg", "b.jpg"] and index.class_names == (
        "cat",
        "dog",
    )
    assert index.skipped == {
        "polygon with < 3 points": 1,
        "image without instances (kept as background)": 1,
    }
    inst = index.records[0].instances[0]
    assert inst.class_id == 1 and np.allclose(inst.polygons[0][0], [10, 5])
    mask = rasterize_instances(index.records[0])[0]
    assert mask[5:16, 10:21].all() and mask.sum() == 11 * 11

    (tmp_path / "labels" / "train" / "a.txt").write_text("5 0.1 0.1 0.2 0.1 0.2 0.2\n")
    with pytest.raises(ValueError, match=r"a.txt:1: class id 5 is not in names \(0..1\)"):
        load_dataset(tmp_path / "data.yaml")


def test_missing_images_are_an_error(tmp_path):
    path = _coco(
        tmp_path, [{"id": 1, "image_id": 1, "category_id": 7, "segmentation": SQUARE}], images=2
    )
    (tmp_path / "images" / "2.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of 2 images are missing, e\.g\. \[.*2\.png"):
        load_coco(path)


def test_unknown_category_ids_are_an_error(tmp_path):
    path = _coco(tmp_path, [{"id": 5, "image_id": 1, "category_id": 3, "segmentation": SQUARE}])
    with pytest.raises(
        ValueError, match=r"category ids \[3\] are not in 'categories' .*annotation ids \[5\]"
    ):
        load_coco(path)


def test_short_polygons_and_outside_boxes_are_skipped_and_counted(tmp_path):
    anns = [
        {"id": 1, "image_id": 1, "category_id": 7, "segmentation": SQUARE},
        {"id": 2, "image_id": 1, "category_id": 7, "segmentation": [[1, 1, 5, 5]]},  # 2 points
        {
            "id": 3,
            "image_id": 1,
            "category_id": 7,
            "segmentation": [[1, 1, 5, 5], *SQUARE],
        },  # one bad part
        {
            "id": 4,
            "image_id": 1,
            "category_id": 7,
            "segmentation": [[50, 40, 60, 40, 60, 50]],
            "bbox": [50, 40, 10, 10],
        },  # outside the 40 x 30 image
        {
            "id": 5,
            "image_id": 1,
            "category_id": 7,
            "segmentation": [[30, 20, 60, 20, 60, 50, 30, 50]],
            "bbox": [30, 20, 30, 30],
        },  # partly outside: kept, mask clipped to the image
        {"id": 6, "image_id": 1, "category_id": 9, "segmentation": SQUARE, "iscrowd": 1},
    ]
    index = load_coco(_coco(tmp_path, anns))
    assert index.skipped == {
        "polygon with < 3 points": 2,
        "annotation without a valid polygon": 1,
        "box outside the image or empty": 1,
        "crowd annotation": 1,
    }
    masks = rasterize_instances(index.records[0])
    assert len(masks) == 3 and masks[2].sum() == 10 * 10  # x 30..39, y 20..29 inside the image
    assert torch.equal(
        masks_to_boxes(torch.from_numpy(masks[2:3])), torch.tensor([[30.0, 20.0, 40.0, 30.0]])
    )


def test_empty_datasets_are_an_error(tmp_path):
    path = tmp_path / "empty.json"
    path.write_text(
        json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}]})
    )
    with pytest.raises(ValueError, match="has no images"):
        load_coco(path)
    only_bad = _coco(
        tmp_path, [{"id": 1, "image_id": 1, "category_id": 7, "segmentation": [[1, 1, 2, 2]]}]
    )
    with pytest.raises(ValueError, match="no usable instances"):
        load_coco(only_bad)
    with pytest.raises(ValueError, match=r"\.json \(COCO\) or \.yaml"):
        load_dataset(only_bad.with_suffix(".png").parent / "images" / "1.png")


def test_warp_identity_and_shift():
    image = torch.randint(0, 256, (3, 8, 12), dtype=torch.uint8)
    masks = torch.rand(2, 8, 12) > 0.5
    out, out_masks = warp(image, masks, (8, 12), 1.0, (6.0, 4.0))
    assert torch.equal(out, image) and torch.equal(out_masks, masks)
    shifted, shifted_masks = warp(image, masks, (8, 12), 1.0, (6.0, 4.0), shift=(2.0, 0.0))
    assert torch.equal(shifted[:, :, 2:], image[:, :, :-2]) and (shifted[:, :, :2] == 114).all()
    assert (
        torch.equal(shifted_masks[:, :, 2:], masks[:, :, :-2]) and not shifted_masks[:, :, :2].any()
    )


def test_downsample_masks_by_majority():
    masks = torch.zeros(1, 8, 8, dtype=torch.bool)
    masks[0, :4, :3] = True  # 12 of 16 pixels in the top-left cell, 0 in the others
    assert torch.equal(
        downsample_masks(masks, 4), torch.tensor([[[1, 0], [0, 0]]], dtype=torch.uint8)
    )


@pytest.mark.parametrize("augment", [AugmentConfig(), NO_AUGMENT])
def test_samples_are_seeded_and_consistent(shapes, augment):
    index = load_dataset(shapes)
    ds = SegmentationDataset(index, 64, augment, seed=3)
    a, b = ds[2], ds[2]
    assert (
        torch.equal(a.image, b.image)
        and torch.equal(a.masks, b.masks)
        and torch.equal(a.boxes, b.boxes)
    )
    assert a.image.shape == (3, 64, 64) and a.masks.shape[1:] == (16, 16)
    assert len(a.classes) == len(a.boxes) == len(a.masks)
    assert (
        (a.boxes[:, 2:] > a.boxes[:, :2]).all() and (a.boxes >= 0).all() and (a.boxes <= 64).all()
    )
    if augment.mosaic:
        ds.set_epoch(1)
        assert not torch.equal(ds[2].image, a.image)  # another epoch, another augmentation
    images, targets, idx = collate([ds[0], ds[1]])
    assert images.shape == (2, 3, 64, 64) and images.dtype == torch.float32 and images.max() <= 1
    assert targets.masks.shape[0] == targets.boxes.shape[0] == targets.batch_idx.shape[
        0
    ] and idx == [0, 1]


def test_letterbox_only_keeps_every_instance(shapes):
    index = load_dataset(shapes)
    ds = SegmentationDataset(index, 64, NO_AUGMENT)
    for i, record in enumerate(index.records):
        sample = ds[i]
        assert torch.equal(
            sample.classes, torch.tensor([inst.class_id for inst in record.instances])
        )


def test_mosaic_can_be_switched_off(shapes):
    index = load_dataset(shapes)
    mosaic_only = AugmentConfig(
        mosaic=1.0, fliplr=0, hsv_h=0, hsv_s=0, hsv_v=0, scale=0, translate=0
    )
    ds = SegmentationDataset(index, 64, mosaic_only, seed=0)
    ds.set_epoch(0, mosaic=False)
    assert torch.equal(ds[1].image, SegmentationDataset(index, 64, NO_AUGMENT)[1].image)
    ds.set_epoch(0, mosaic=True)
    assert not torch.equal(ds[1].image, SegmentationDataset(index, 64, NO_AUGMENT)[1].image)


def test_epoch_batches_are_a_seeded_permutation():
    batches = epoch_batches(10, 3, seed=1, epoch=0)
    flat = [i for b in batches for i in b]
    assert len(batches) == 3 and len(set(flat)) == 9
    assert batches == epoch_batches(10, 3, seed=1, epoch=0) != epoch_batches(10, 3, seed=1, epoch=1)
    with pytest.raises(ValueError, match="lower --batch"):
        epoch_batches(2, 4, seed=0, epoch=0)


def test_image_size_mismatch_is_an_error(tmp_path):
    path = _coco(tmp_path, [{"id": 1, "image_id": 1, "category_id": 7, "segmentation": SQUARE}])
    Image.new("RGB", (41, 30)).save(tmp_path / "images" / "1.png")
    ds = SegmentationDataset(load_coco(path), 64, NO_AUGMENT)
    with pytest.raises(
        ValueError, match=r"image is \(30, 41\) \(H, W\) but the annotation says \(30, 40\)"
    ):
        ds[0]
