"""weights_convert/checkpoint.py: reading tensors and metadata from the unpickled object graph."""

from __future__ import annotations

import pytest
import torch
from fastsam_weights_convert.checkpoint import (
    checkpoint_metadata,
    checkpoint_model,
    flat_state_dict,
)
from torch import nn


class Holder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, eps=1e-5))
        self.register_buffer("scratch", torch.zeros(2), persistent=False)


def test_flat_state_dict_equals_torch_state_dict():
    model = Holder()
    flat = flat_state_dict(model)
    expected = model.state_dict()
    assert list(flat) == list(expected) and "scratch" not in flat
    assert all(torch.equal(flat[k], expected[k]) for k in flat)


def test_non_tensor_entry_is_reported():
    model = Holder()
    model.model[0]._parameters["weight"] = "oops"  # what a hostile BUILD state could hold
    with pytest.raises(ValueError, match=r"model\.0\.weight is a str, expected a tensor"):
        flat_state_dict(model)


def test_ema_slot_wins_and_metadata_is_read():
    model = Holder()
    model.yaml = {"scale": "n", "nc": 1}
    model.names = {0: "object"}
    ckpt = {"model": nn.Identity(), "ema": model, "train_args": {"imgsz": 1024}, "version": "v"}
    found, slot = checkpoint_model(ckpt)
    assert found is model and slot == "ema"
    meta = checkpoint_metadata(ckpt, found, slot)
    assert meta["bn_eps"] == 1e-5  # read from the pickled BatchNorm, not assumed
    assert (meta["scale"], meta["nc"], meta["names"], meta["imgsz"]) == (
        "n",
        1,
        {0: "object"},
        1024,
    )


def test_mixed_bn_eps_is_an_error():
    model = nn.Sequential(nn.BatchNorm2d(2, eps=1e-3), nn.BatchNorm2d(2, eps=1e-5))
    with pytest.raises(ValueError, match=r"different eps values \[1e-05, 0\.001\]"):
        checkpoint_metadata({"model": model}, model, "model")
