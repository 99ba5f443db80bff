"""weights_convert/checkpoint.py: reading tensors and metadata from the unpickled object graph."""

from __future__ import annotations

import pytest
import torch
from fastsam_weights_convert.checkpoint import (
    checkpoint_metadata,
    checkpoint_model,
    checkpoint_source,
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


# --- layouts: where the model sits in the file --------------------------------------------------


def _sd() -> dict[str, torch.Tensor]:
    return {"model.0.conv.weight": torch.zeros(1), "model.0.bn.weight": torch.zeros(1)}


@pytest.mark.parametrize(
    ("ckpt", "slot"),
    [
        ({"model": None, "ema": Holder()}, "ema"),  # a trainer's last.pt
        ({"model": Holder(), "ema": None}, "model"),  # the released layout
        (Holder(), "<root>"),  # torch.save(model)
        (_sd(), "<root>"),  # torch.save(model.state_dict())
        ({"model": _sd(), "train_args": {}}, "model"),
        ({"ema": _sd()}, "ema"),
        ({"state_dict": _sd(), "epoch": 3}, "state_dict"),
        ({"model_state_dict": _sd()}, "model_state_dict"),
    ],
)
def test_checkpoint_source_finds_every_layout(ckpt, slot):
    found, where = checkpoint_source(ckpt)
    assert where == slot
    assert isinstance(found, nn.Module) or list(found) == list(_sd())


@pytest.mark.parametrize(
    "keys",
    [
        ["module.model.0.conv.weight", "module.model.0.bn.weight"],  # saved from DDP
        ["0.conv.weight", "0.bn.weight"],  # saved from the inner nn.Sequential
    ],
)
def test_state_dict_key_prefixes_are_normalised(keys):
    found, _ = checkpoint_source({k: torch.zeros(1) for k in keys})
    assert list(found) == list(_sd())


@pytest.mark.parametrize(
    ("ckpt", "match"),
    [
        ({"conv.weight": torch.zeros(1)}, r"plain state dict \(1 tensors.*not an official"),
        (
            {"backbone.stem.conv.weight": torch.zeros(1)},
            r"fastsam_core YoloV8Seg tensors without a config.*save_converted",
        ),
        ({"state_dict": {"w": torch.zeros(1)}}, r"under 'state_dict' a plain state dict"),
        ([1, 2], "holds a list, expected the dict"),
        ({"model": None, "ema": None, "epoch": 1}, r"neither 'ema' nor 'model' holds"),
    ],
)
def test_checkpoint_source_says_what_the_file_holds(ckpt, match):
    with pytest.raises(ValueError, match=match):
        checkpoint_source(ckpt)


def test_state_dict_layout_metadata_comes_from_the_dict():
    meta = checkpoint_metadata({"train_args": {"imgsz": 640, "task": "segment"}}, None, "model")
    assert meta == {"slot": "model", "imgsz": 640, "task": "segment"}


# --- forged module graphs -----------------------------------------------------------------------


def test_module_cycle_is_refused():
    model = Holder()
    model.model._modules["loop"] = model  # what BUILD state could forge
    with pytest.raises(ValueError, match=r"model\.loop contains itself"):
        flat_state_dict(model)


def test_shared_module_is_fine():
    act = nn.SiLU()  # 8.0.x shares one activation object between all Conv layers
    model = nn.Sequential(nn.Sequential(nn.Conv2d(1, 1, 1), act), nn.Sequential(act))
    assert list(flat_state_dict(model)) == ["0.0.weight", "0.0.bias"]


def test_excessive_nesting_is_refused():
    model: nn.Module = nn.Conv2d(1, 1, 1)
    for _ in range(40):
        model = nn.Sequential(model)
    with pytest.raises(ValueError, match="nests deeper than 32"):
        flat_state_dict(model)


@pytest.mark.parametrize("attr", ["_modules", "_parameters", "_buffers"])
def test_non_dict_module_tables_are_refused(attr):
    model = Holder()
    model.model[0].__dict__[attr] = ["not", "a", "dict"]
    with pytest.raises(ValueError, match=rf"model\.0\.{attr} is a list, expected a dict"):
        flat_state_dict(model)


def test_layer_and_head_classes_are_recorded():
    model = Holder()
    meta = checkpoint_metadata({"model": model}, model, "model")
    assert meta["model_type"].endswith("Holder")
    assert meta["layer_types"] == ["Conv2d", "BatchNorm2d"]
    assert meta["head_type"] == "torch.nn.modules.batchnorm.BatchNorm2d"


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["a", "b"], {0: "a", 1: "b"}),
        ({0: "a", 1: 2}, {0: "a", 1: "2"}),
        ({"0": "a"}, None),  # not ultralytics' int keys: ignored, not crashed on
        ({0: "a", "x": "b"}, None),
        ("abc", None),
    ],
)
def test_class_names_metadata(names, expected):
    model = Holder()
    model.names = names
    meta = checkpoint_metadata({"model": model}, model, "model")
    assert meta.get("names") == expected
