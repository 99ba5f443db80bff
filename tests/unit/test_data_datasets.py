"""Datasets (COCO, YOLO-seg): parsing, bad-input handling, rasterisation, image decoding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fastsam_core.data.datasets import (
    load_coco,
    load_dataset,
    load_rgb,
    rasterize_instances,
)
from fastsam_core.data.synthetic import make_synthetic_dataset
from fastsam_core.export.rle import encode_dense
from fastsam_core.io.images import load_image


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
    ys, xs = np.nonzero(masks[2])
    assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (30, 20, 40, 30)


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


def test_image_size_mismatch_is_an_error(tmp_path):
    path = _coco(tmp_path, [{"id": 1, "image_id": 1, "category_id": 7, "segmentation": SQUARE}])
    Image.new("RGB", (41, 30)).save(tmp_path / "images" / "1.png")
    record = load_coco(path).records[0]
    with pytest.raises(
        ValueError,
        match=r"image is \(30, 41\) \(H, W\) after EXIF orientation but the annotation says "
        r"\(30, 40\)",
    ):
        load_rgb(record)


def _rotated_jpeg(path: Path, stored_hw: tuple[int, int]) -> np.ndarray:
    """Write a JPEG stored as `stored_hw` with EXIF orientation 6 (display rotated 90 degrees
    clockwise), as phones write portrait photos; returns the stored pixels."""
    rng = np.random.default_rng(0)
    stored = np.repeat(rng.integers(0, 256, (stored_hw[0], 1, 3), dtype=np.uint8), stored_hw[1], 1)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(path, exif=exif, quality=95)
    return stored


def test_exif_rotated_images_decode_like_inference(tmp_path):
    """Issue 12 item 6: datasets decode with the inference decoder, EXIF orientation applied."""
    (tmp_path / "images" / "train").mkdir(parents=True)
    (tmp_path / "labels" / "train").mkdir(parents=True)
    photo = tmp_path / "images" / "train" / "portrait.jpg"
    _rotated_jpeg(photo, (20, 40))  # stored 40 wide, 20 high -> upright 20 wide, 40 high
    (tmp_path / "labels" / "train" / "portrait.txt").write_text("0 0.1 0.1 0.9 0.1 0.9 0.5\n")
    (tmp_path / "data.yaml").write_text("train: images/train\nval: images/train\nnames: [a]\n")
    record = load_dataset(tmp_path / "data.yaml").records[0]
    assert (record.height, record.width) == load_image(photo).hw == (40, 20)
    assert np.array_equal(load_rgb(record), load_image(photo).image.numpy())
    mask = rasterize_instances(record)[0]  # labels are normalised to the upright frame
    ys, xs = np.nonzero(mask)  # triangle (2, 4), (18, 4), (18, 20), outline included
    assert mask.shape == (40, 20) and (xs.min(), ys.min(), xs.max(), ys.max()) == (2, 4, 18, 20)

    # A COCO file whose sizes come from `fastsam segment` (the upright frame) loads and decodes.
    coco = {
        "images": [{"id": 3, "file_name": "portrait.jpg", "height": 40, "width": 20}],
        "annotations": [
            {"id": 1, "image_id": 3, "category_id": 1, "segmentation": [[2, 4, 18, 4, 18, 20]]}
        ],
        "categories": [{"id": 1, "name": "a"}],
    }
    (tmp_path / "images" / "train" / "ann.json").write_text(json.dumps(coco))
    record = load_coco(tmp_path / "images" / "train" / "ann.json").records[0]
    assert load_rgb(record).shape == (40, 20, 3)
