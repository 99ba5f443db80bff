"""Training samples and batches: records -> augmented square images, boxes and 1/4-size masks.

A sample is a pure function of (seed, epoch, index) (see `augment.py`), and the batch order of an
epoch a pure function of (seed, epoch): `epoch_batches` gives the same global batches to one process
or to every DDP rank, each rank taking its slice. That is what makes resume and DDP reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from fastsam_core.data.datasets import DatasetIndex, load_rgb, rasterize_instances
from fastsam_core.train.augment import (
    NO_AUGMENT,
    AugmentConfig,
    downsample_masks,
    hsv_jitter,
    masks_to_boxes,
    mosaic4,
    random_zoom_shift,
)
from fastsam_core.train.loss import SegTargets

MASK_RATIO = 4  # GT masks at the prototype resolution, input / 4 (spec §6)
MIN_MASK_PIXELS = 4  # instances smaller than this after augmentation are dropped


@dataclass
class Sample:
    """One training image.

    Attributes:
        image: (3, S, S) uint8 RGB.
        classes: (N,) int64.
        boxes: (N, 4) float xyxy in input pixels.
        masks: (N, S/4, S/4) uint8 {0, 1}.
        index: position of the record in the dataset.
    """

    image: torch.Tensor
    classes: torch.Tensor
    boxes: torch.Tensor
    masks: torch.Tensor
    index: int


class SegmentationDataset(Dataset):
    """Augmented square samples of a `DatasetIndex`.

    Args:
        index: the parsed dataset.
        imgsz: output side S (multiple of 32).
        augment: augmentation settings; `NO_AUGMENT` letterboxes only.
        seed: base seed of every random choice.
    """

    def __init__(
        self, index: DatasetIndex, imgsz: int, augment: AugmentConfig = NO_AUGMENT, seed: int = 0
    ) -> None:
        if imgsz % 32:
            raise ValueError(f"imgsz must be a multiple of 32, got {imgsz}")
        self.index = index
        self.imgsz = imgsz
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.mosaic_enabled = True

    def set_epoch(self, epoch: int, mosaic: bool = True) -> None:
        """Select the epoch (part of every sample's seed) and whether mosaic is on."""
        self.epoch = epoch
        self.mosaic_enabled = mosaic

    def __len__(self) -> int:
        return len(self.index.records)

    def _load(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        record = self.index.records[i]
        image = torch.from_numpy(load_rgb(record).copy()).permute(
            2, 0, 1
        )  # (H0, W0, 3) -> (3, H0, W0)
        masks = torch.from_numpy(rasterize_instances(record))  # (N, H0, W0)
        classes = torch.tensor([inst.class_id for inst in record.instances], dtype=torch.long)
        return image, masks, classes

    def __getitem__(self, i: int) -> Sample:
        # Per-sample tensors are tiny: intra-op threads only add overhead (10x measured on 2 cores).
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self._sample(i)
        finally:
            torch.set_num_threads(threads)

    def _sample(self, i: int) -> Sample:
        S, cfg = self.imgsz, self.augment
        rng = np.random.default_rng([self.seed, self.epoch, i])
        if self.mosaic_enabled and cfg.mosaic > 0 and rng.random() < cfg.mosaic:
            picks = [i, *rng.integers(0, len(self), 3).tolist()]
            loaded = [self._load(j) for j in picks]
            canvas, masks = mosaic4([(im, m) for im, m, _ in loaded], S, rng)
            classes = torch.cat([c for _, _, c in loaded])
            image, masks = random_zoom_shift(canvas, masks, S, 1.0, cfg, rng)  # 2S canvas -> S crop
        else:
            image, masks, classes = self._load(i)
            base = S / max(image.shape[1:])
            image, masks = random_zoom_shift(image, masks, S, base, cfg, rng)
        if rng.random() < cfg.fliplr:
            image, masks = image.flip(-1), masks.flip(-1)
        image = hsv_jitter(image, cfg, rng)
        keep = masks.flatten(1).sum(1) >= MIN_MASK_PIXELS
        masks, classes = masks[keep], classes[keep]
        return Sample(image, classes, masks_to_boxes(masks), downsample_masks(masks, MASK_RATIO), i)


def collate(samples: list[Sample]) -> tuple[torch.Tensor, SegTargets, list[int]]:
    """Samples -> (B, 3, S, S) float images in [0, 1], stacked `SegTargets`, record indices."""
    images = torch.stack([s.image for s in samples]).float() / 255  # (B, 3, S, S)
    batch_idx = torch.cat(
        [torch.full((len(s.classes),), b, dtype=torch.long) for b, s in enumerate(samples)]
    )
    targets = SegTargets(
        batch_idx=batch_idx,
        classes=torch.cat([s.classes for s in samples]),
        boxes=torch.cat([s.boxes for s in samples]),
        masks=torch.cat([s.masks for s in samples]),
    )
    return images, targets, [s.index for s in samples]


def epoch_batches(
    num_samples: int, batch_size: int, seed: int, epoch: int, shuffle: bool = True
) -> list[list[int]]:
    """The global batches of one epoch (last partial batch dropped), a pure function of the args."""
    if num_samples < batch_size:
        raise ValueError(
            f"the dataset has {num_samples} images but the (global) batch size is {batch_size}; "
            "lower --batch or add images"
        )
    if shuffle:
        g = torch.Generator().manual_seed(seed * 100_003 + epoch)
        order = torch.randperm(num_samples, generator=g).tolist()
    else:
        order = list(range(num_samples))
    n = num_samples // batch_size
    return [order[k * batch_size : (k + 1) * batch_size] for k in range(n)]
