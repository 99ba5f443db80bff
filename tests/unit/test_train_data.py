"""Training samples: seeded augmentations, letterboxing, mosaic and epoch batches."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fastsam_core.data.datasets import load_dataset
from fastsam_core.data.synthetic import make_synthetic_dataset
from fastsam_core.train.augment import (
    NO_AUGMENT,
    AugmentConfig,
    downsample_masks,
    warp,
)
from fastsam_core.train.loader import SegmentationDataset, collate, epoch_batches


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return make_synthetic_dataset(
        tmp_path_factory.mktemp("shapes"), num_images=6, image_size=(64, 80), seed=1
    )


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
