"""Instance-segmentation datasets on disk: COCO JSON (polygons or RLE) and YOLO-seg text labels.

Both formats load into the same `DatasetIndex`: one `ImageRecord` per image, each instance a class
id plus its shape (polygons in original-image pixels, or a COCO RLE). Masks are rasterised later,
without OpenCV (`rasterize_instances`: PIL polygon fill, numpy RLE decode). Images are decoded by
`fastsam_core.io.images`, the decoder inference uses: EXIF orientation applied, so image sizes,
labels and predictions all live in the upright frame that `fastsam segment` reports.

Bad input never becomes a silently wrong label:
- image files that do not exist, category ids not in `categories`, YOLO class ids outside `names`,
  and datasets without images raise `FileNotFoundError` / `ValueError` naming the offenders;
- polygons with fewer than 3 points, crowd annotations and annotations whose box lies entirely
  outside the image are skipped and counted in `DatasetIndex.skipped` (logged once);
- boxes partly outside the image are fine: boxes are recomputed from the rasterised mask, which is
  confined to the image.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from fastsam_core.io.images import IMAGE_EXTENSIONS, image_hw, load_image

logger = logging.getLogger(__name__)


@dataclass
class Instance:
    """One object: a class id and its shape (polygons in pixels, or a COCO RLE dict)."""

    class_id: int
    polygons: list[np.ndarray] = field(default_factory=list)  # each (P, 2) float xy, P >= 3
    rle: dict[str, Any] | None = None


@dataclass
class ImageRecord:
    """One image and its instances; `image_id` is the COCO id (or the position for YOLO-seg)."""

    path: Path
    image_id: int
    height: int
    width: int
    instances: list[Instance]


@dataclass
class DatasetIndex:
    """A parsed dataset.

    Attributes:
        records: one per image, in file order.
        class_names: name of each contiguous class id.
        category_ids: the original category id of each class (COCO), for writing predictions back.
        skipped: counts of skipped items by reason.
        source: the file the index was read from.
    """

    records: list[ImageRecord]
    class_names: tuple[str, ...]
    category_ids: tuple[int, ...]
    skipped: dict[str, int]
    source: Path

    @property
    def num_instances(self) -> int:
        return sum(len(r.instances) for r in self.records)


def load_dataset(
    path: str | Path,
    split: str = "train",
    single_class: bool = False,
    images_dir: str | Path | None = None,
) -> DatasetIndex:
    """Load a dataset from a COCO `.json` or a YOLO-seg / COCO `.yaml` description.

    Args:
        path: COCO annotation file (images next to it, or in `images/` beside it, or `images_dir`),
            or a YAML file with `train`/`val` entries (YOLO-seg image folders or COCO json files),
            optional `path` root and `names`.
        split: which YAML entry to read ("train" or "val").
        single_class: collapse every category into class 0 "object" (FastSAM style).
        images_dir: image folder for a COCO file, overriding the default search.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"dataset file {path} does not exist; pass a COCO .json or a .yaml")
    if path.suffix.lower() == ".json":
        return load_coco(path, images_dir=images_dir, single_class=single_class)
    if path.suffix.lower() in (".yaml", ".yml"):
        return _load_yaml(path, split, single_class)
    raise ValueError(f"dataset must be a .json (COCO) or .yaml (YOLO-seg) file, got {path}")


def load_coco(
    json_path: str | Path, images_dir: str | Path | None = None, single_class: bool = False
) -> DatasetIndex:
    """Parse a COCO instance-segmentation file (polygons, RLE or uncompressed RLE)."""
    json_path = Path(json_path)
    with open(json_path) as f:
        data = json.load(f)
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise ValueError(
                f"{json_path}: COCO file needs an {key!r} list, found keys {sorted(data)}"
            )
    root = (
        Path(images_dir) if images_dir is not None else _coco_image_root(json_path, data["images"])
    )
    categories = sorted(data["categories"], key=lambda c: c["id"])
    category_index = {c["id"]: i for i, c in enumerate(categories)}

    unknown = sorted({a["category_id"] for a in data["annotations"]} - set(category_index))
    if unknown:
        bad = [a["id"] for a in data["annotations"] if a["category_id"] in set(unknown)][:5]
        raise ValueError(
            f"{json_path}: category ids {unknown} are not in 'categories' "
            f"(known: {sorted(category_index)}), "
            f"e.g. annotation ids {bad}; add them to 'categories' or fix the annotations"
        )

    skipped: Counter[str] = Counter()
    by_image: dict[int, list[dict[str, Any]]] = {}
    for ann in data["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    known_images = {im["id"] for im in data["images"]}
    orphans = set(by_image) - known_images
    if orphans:
        skipped["annotation with unknown image_id"] += sum(len(by_image[i]) for i in orphans)

    records, missing = [], []
    for im in data["images"]:
        image_path = root / im["file_name"]
        if not image_path.is_file():
            missing.append(str(image_path))
            continue
        height, width = int(im["height"]), int(im["width"])
        instances = []
        for ann in by_image.get(im["id"], []):
            inst = _coco_instance(ann, category_index, height, width, skipped)
            if inst is not None:
                instances.append(inst)
        if not instances:
            skipped["image without instances (kept as background)"] += 1
        records.append(ImageRecord(image_path, int(im["id"]), height, width, instances))
    if missing:
        raise FileNotFoundError(
            f"{json_path}: {len(missing)} of {len(data['images'])} images are missing, "
            f"e.g. {missing[:3]}; "
            "fix 'file_name' or pass images_dir"
        )
    names = tuple(str(c.get("name", c["id"])) for c in categories)
    ids = tuple(int(c["id"]) for c in categories)
    return _finish(records, names, ids, skipped, json_path, single_class)


def _coco_image_root(json_path: Path, images: list[dict[str, Any]]) -> Path:
    """The folder beside the json that holds the first image: the json's folder or `images/`."""
    candidates = [json_path.parent, json_path.parent / "images", json_path.parent.parent / "images"]
    if images:
        for root in candidates:
            if (root / images[0]["file_name"]).is_file():
                return root
    return json_path.parent


def _coco_instance(
    ann: dict[str, Any],
    category_index: dict[int, int],
    height: int,
    width: int,
    skipped: Counter[str],
) -> Instance | None:
    if ann.get("iscrowd", 0):
        skipped["crowd annotation"] += 1
        return None
    if "bbox" in ann:
        x, y, w, h = ann["bbox"]
        if x >= width or y >= height or x + w <= 0 or y + h <= 0 or w <= 0 or h <= 0:
            skipped["box outside the image or empty"] += 1
            return None
    seg = ann.get("segmentation")
    class_id = category_index[ann["category_id"]]
    if isinstance(seg, dict):
        rle = seg
        if [int(v) for v in rle.get("size", [])] != [height, width]:
            raise ValueError(
                f"annotation {ann.get('id')}: RLE size {rle.get('size')} differs from its image's "
                f"(height, width) = {(height, width)}"
            )
        return Instance(class_id, rle=rle)
    if not isinstance(seg, list) or not seg:
        skipped["annotation without segmentation"] += 1
        return None
    polygons = []
    for poly in seg:
        pts = np.asarray(poly, dtype=np.float64).reshape(-1, 2) if len(poly) % 2 == 0 else None
        if pts is None or len(pts) < 3:
            skipped["polygon with < 3 points"] += 1
            continue
        polygons.append(pts)
    if not polygons:
        skipped["annotation without a valid polygon"] += 1
        return None
    return Instance(class_id, polygons=polygons)


def _load_yaml(path: Path, split: str, single_class: bool) -> DatasetIndex:
    try:
        import yaml  # type: ignore[import-untyped]
    except ImportError as err:  # pragma: no cover - pyyaml ships with most environments
        raise ImportError("reading a .yaml dataset needs PyYAML: pip install pyyaml") from err
    with open(path) as f:
        spec = yaml.safe_load(f) or {}
    if split not in spec:
        raise ValueError(
            f"{path}: no {split!r} entry; expected keys 'train' and 'val', got {sorted(spec)}"
        )
    root = Path(spec.get("path", path.parent))
    if not root.is_absolute():
        root = path.parent / root
    target = root / spec[split]
    if target.suffix.lower() == ".json":
        return load_coco(target, single_class=single_class)
    names = spec.get("names")
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names)]
    if not names:
        raise ValueError(
            f"{path}: a YOLO-seg dataset needs 'names' (a list or {{id: name}} mapping)"
        )
    return load_yolo_seg(target, tuple(str(n) for n in names), single_class=single_class)


def load_yolo_seg(
    images_dir: str | Path, class_names: tuple[str, ...], single_class: bool = False
) -> DatasetIndex:
    """Parse a YOLO-seg split: `.../images/x.jpg` with `.../labels/x.txt`, one object per line as
    `class x1 y1 x2 y2 ...` (coordinates normalised to [0, 1]). Images without a label file are
    background images."""
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise FileNotFoundError(f"YOLO-seg image folder {images_dir} does not exist")
    labels_dir = _labels_dir(images_dir)
    skipped: Counter[str] = Counter()
    records = []
    for position, image_path in enumerate(
        sorted(p for p in images_dir.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    ):
        height, width = image_hw(image_path)  # upright (EXIF-oriented) size
        label_path = labels_dir / image_path.relative_to(images_dir).with_suffix(".txt")
        instances = []
        if label_path.is_file():
            for line_no, line in enumerate(label_path.read_text().splitlines(), 1):
                inst = _yolo_instance(
                    line, label_path, line_no, class_names, height, width, skipped
                )
                if inst is not None:
                    instances.append(inst)
        if not instances:
            skipped["image without instances (kept as background)"] += 1
        records.append(ImageRecord(image_path, position, height, width, instances))
    ids = tuple(range(len(class_names)))
    return _finish(records, class_names, ids, skipped, images_dir, single_class)


def _labels_dir(images_dir: Path) -> Path:
    """YOLO convention: replace the last `images` path component by `labels`."""
    parts = list(images_dir.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts)
    return images_dir.parent / "labels"


def _yolo_instance(
    line: str,
    label_path: Path,
    line_no: int,
    class_names: tuple[str, ...],
    height: int,
    width: int,
    skipped: Counter[str],
) -> Instance | None:
    values = line.split()
    if not values:
        return None
    try:
        class_id = int(values[0])
        coords = np.asarray([float(v) for v in values[1:]], dtype=np.float64)
    except ValueError as err:
        raise ValueError(
            f"{label_path}:{line_no}: expected 'class x1 y1 x2 y2 ...', got {line!r}"
        ) from err
    if not 0 <= class_id < len(class_names):
        raise ValueError(
            f"{label_path}:{line_no}: class id {class_id} is not in names "
            f"(0..{len(class_names) - 1}); "
            "fix the label or extend 'names' in the yaml"
        )
    if len(coords) % 2 or len(coords) < 6:
        skipped["polygon with < 3 points"] += 1
        return None
    pts = coords.reshape(-1, 2) * np.array([width, height])
    if (
        pts[:, 0].max() <= 0
        or pts[:, 1].max() <= 0
        or pts[:, 0].min() >= width
        or pts[:, 1].min() >= height
    ):
        skipped["box outside the image or empty"] += 1
        return None
    return Instance(class_id, polygons=[pts])


def _finish(
    records: list[ImageRecord],
    names: tuple[str, ...],
    ids: tuple[int, ...],
    skipped: Counter[str],
    source: Path,
    single_class: bool,
) -> DatasetIndex:
    if not records:
        raise ValueError(
            f"{source}: the dataset has no images; check the file and the image folder"
        )
    if sum(len(r.instances) for r in records) == 0:
        raise ValueError(
            f"{source}: the dataset has {len(records)} images but no usable instances "
            f"({dict(skipped)})"
        )
    if single_class:
        for r in records:
            for inst in r.instances:
                inst.class_id = 0
        names, ids = ("object",), (1,)
    if skipped:
        logger.warning("%s: skipped %s", source, dict(skipped))
    return DatasetIndex(records, names, ids, dict(skipped), source)


def rasterize_instances(record: ImageRecord) -> np.ndarray:
    """Masks of every instance at the image's resolution.

    Returns:
        (N, H0, W0) bool; polygons are filled with PIL (pixel centres inside or on the outline),
        RLEs decoded with `fastsam_core.export.rle`.
    """
    from fastsam_core.export.rle import decode

    H, W = record.height, record.width
    masks = np.zeros((len(record.instances), H, W), dtype=bool)
    for i, inst in enumerate(record.instances):
        if inst.rle is not None:
            masks[i] = decode(inst.rle)
            continue
        canvas = Image.new("L", (W, H), 0)
        draw = ImageDraw.Draw(canvas)
        for pts in inst.polygons:
            draw.polygon([(float(x), float(y)) for x, y in pts], fill=1, outline=1)
        masks[i] = np.asarray(canvas, dtype=bool)
    return masks


def load_rgb(record: ImageRecord) -> np.ndarray:
    """(H0, W0, 3) uint8 RGB, decoded as inference decodes (EXIF orientation applied).

    Raises if the upright size disagrees with the annotation's (height, width).
    """
    rgb = load_image(record.path).image.numpy()  # (H0, W0, 3), writable
    if rgb.shape[:2] != (record.height, record.width):
        raise ValueError(
            f"{record.path}: image is {rgb.shape[:2]} (H, W) after EXIF orientation but the "
            f"annotation says {(record.height, record.width)}; fix 'height'/'width' in the "
            "annotation file"
        )
    return rgb
