"""Trainer: schedule, EMA, checkpoints, a run that learns, exact resume, head changes, freezing."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from safetensors.torch import load_file

from fastsam_core.data.synthetic import make_synthetic_dataset
from fastsam_core.train.augment import NO_AUGMENT, AugmentConfig
from fastsam_core.train.ema import ModelEMA
from fastsam_core.train.schedule import LRSchedule, build_optimizer
from fastsam_core.train.trainer import TrainConfig, Trainer, build_training_model

IMGSZ = 64


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    return str(
        make_synthetic_dataset(root, num_images=4, image_size=(64, 64), max_objects=2, seed=3)
    )


def _cfg(data, out, **kw) -> TrainConfig:
    base: dict = {
        "data": data,
        "out": str(out),
        "imgsz": IMGSZ,
        "batch": 2,
        "epochs": 2,
        "warmup_epochs": 0.5,
        "close_mosaic": 1,
        "progress": False,
        "seed": 1,
    }
    return TrainConfig(**{**base, **kw})


def test_schedule_warmup_then_cosine():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))
    opt = build_optimizer(model, "sgd", 0.01, 0.937, 5e-4)
    assert [len(g["params"]) for g in opt.param_groups] == [
        1,
        1,
        2,
    ]  # conv weight | bn weight | biases
    sched = LRSchedule(
        lr=0.01, total_steps=100, warmup_steps=10, final_fraction=0.1, warmup_bias_lr=0.1
    )
    sched.apply(opt, 0)
    assert opt.param_groups[0]["lr"] == 0 and opt.param_groups[2]["lr"] == pytest.approx(0.1)
    assert opt.param_groups[0]["momentum"] == pytest.approx(0.8)
    sched.apply(opt, 10)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01 * sched.factor(10))
    assert (
        sched.factor(0) == 1
        and sched.factor(100) == pytest.approx(0.1)
        and sched.factor(50) == pytest.approx(0.55)
    )
    linear = dataclasses.replace(sched, shape="linear")
    assert linear.factor(50) == pytest.approx(0.55) and linear.factor(25) == pytest.approx(0.775)
    with pytest.raises(ValueError, match="optimizer must be"):
        build_optimizer(model, "lamb", 0.1, 0.9, 0.0)  # type: ignore[arg-type]


def test_ema_follows_decay_formula():
    model = torch.nn.Linear(2, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    ema = ModelEMA(model, decay=0.9, tau=1.0)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)
    d = 0.9 * (1 - math.exp(-1))
    assert torch.allclose(ema.module.weight, torch.full((1, 2), 1 - d))


@pytest.fixture(scope="module")
def two_shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("two_shapes")
    return str(
        make_synthetic_dataset(root, num_images=2, image_size=(64, 64), max_objects=3, seed=5)
    )


def test_short_run_learns_and_checkpoint_reloads_and_predicts(two_shapes, tmp_path):
    from fastsam_core.predictor import Predictor
    from fastsam_core.weights import load_model

    # Two images in one batch, seen 10 times: the loss must drop well below its start.
    cfg = _cfg(
        two_shapes,
        tmp_path / "run",
        epochs=10,
        batch=2,
        augment=NO_AUGMENT,
        warmup_epochs=0,
        lr=0.01,
        ema_tau=3.0,
    )
    summary = Trainer(cfg).fit()
    assert summary["step"] == 10
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [x for x in lines if "lr" in x]
    # The mask loss is per positive anchor and falls steadily. Box/cls/dfl are divided by the
    # target-score sum, which starts near 0 (prior class bias) and grows as the head starts to fire,
    # so from scratch they first rise; they are only checked to stay finite here.
    seg = [x["seg_loss"] for x in steps]
    first, last = sum(seg[:2]) / 2, sum(seg[-2:]) / 2
    assert last < 0.7 * first, f"mask loss did not fall: {first:.3f} -> {last:.3f}"
    assert all(math.isfinite(x[k]) for x in steps for k in ("box_loss", "cls_loss", "dfl_loss"))

    weights = tmp_path / "run" / "weights.safetensors"
    model = load_model(weights)
    assert model.cfg.num_classes == 3 and model.cfg.class_names == (
        "circle",
        "rectangle",
        "triangle",
    )
    ema = load_file(str(tmp_path / "run" / "last" / "ema.safetensors"))
    assert all(torch.equal(v, ema[k]) for k, v in model.state_dict().items())
    image = (torch.rand(64, 80, 3) * 255).to(torch.uint8).numpy()
    results = Predictor(weights, imgsz=IMGSZ, conf=0.001)(image)
    assert len(results) == 1 and results[0].orig_hw == (64, 80)
    assert len(results[0]) > 0 and results[0].class_ids.max() < 3


def test_resume_equals_uninterrupted(shapes, tmp_path):
    aug = AugmentConfig(
        mosaic=1.0
    )  # mosaic on for epoch 0, off for the last epoch (close_mosaic=1)
    full = _cfg(shapes, tmp_path / "full", augment=aug)
    Trainer(full).fit()
    part = _cfg(shapes, tmp_path / "part", augment=aug, max_steps=3)  # stops mid-epoch 2
    assert Trainer(part).fit()["step"] == 3
    assert json.loads((tmp_path / "part" / "last" / "state.json").read_text())["step"] == 3
    Trainer(_cfg(shapes, tmp_path / "part", augment=aug), resume=True).fit()

    for name in ("model.safetensors", "ema.safetensors"):
        a = load_file(str(tmp_path / "full" / "last" / name))
        b = load_file(str(tmp_path / "part" / "last" / name))
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), f"{name} differs after resume"
    opt_a = torch.load(tmp_path / "full" / "last" / "optimizer.pt", weights_only=True)["optimizer"]
    opt_b = torch.load(tmp_path / "part" / "last" / "optimizer.pt", weights_only=True)["optimizer"]
    for k, state in opt_a["state"].items():
        assert torch.equal(state["exp_avg_sq"], opt_b["state"][k]["exp_avg_sq"])
    log_a = (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
    log_b = (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()
    steps = lambda log: [json.loads(x) for x in log if "lr" in json.loads(x)]
    assert [s["box_loss"] for s in steps(log_a)] == [s["box_loss"] for s in steps(log_b)]


def test_run_folder_is_never_overwritten(shapes, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="--resume .* --force"):
        Trainer(_cfg(shapes, out))
    with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
        Trainer(_cfg(shapes, out), resume=True)
    Trainer(_cfg(shapes, out, max_steps=0), force=True)
    assert not (out / "keep.txt").exists() and (out / "args.json").exists()


def test_new_num_classes_keeps_backbone_and_gets_prior_bias(tmp_path):
    from fastsam_core.config import yolov8_seg_config
    from fastsam_core.model.yolov8_seg import build_model
    from fastsam_core.train.checkpoint import save_weights

    torch.manual_seed(0)
    source = build_model(yolov8_seg_config("n", num_classes=1))
    path = tmp_path / "src.safetensors"
    save_weights(source, source.cfg, path)
    model, reinit = build_training_model(str(path), "n", 5, tuple("abcde"), 64)
    assert model.cfg.num_classes == 5 and model.head.class_branch[0][-1].out_channels == 5
    assert reinit == sorted(
        f"head.class_branch.{i}.2.{p}" for i in range(3) for p in ("bias", "weight")
    )
    src, new = source.state_dict(), model.state_dict()
    assert all(torch.equal(src[k], new[k]) for k in new if k not in reinit)
    expected = math.log(5 / 5 / (640 / 8) ** 2)  # spec §1.6 prior for nc=5 at stride 8
    assert torch.allclose(model.head.class_branch[0][-1].bias, torch.full((5,), expected))


def test_freeze_by_prefix(shapes, tmp_path):
    trainer = Trainer(
        _cfg(
            shapes,
            tmp_path / "run",
            freeze=("backbone", "neck.top_down_p4"),
            max_steps=1,
            augment=NO_AUGMENT,
            warmup_epochs=0,
        )
    )
    frozen = {n for n, p in trainer.model.named_parameters() if not p.requires_grad}
    assert all(n.startswith(("backbone.", "neck.top_down_p4.", "head.dfl.")) for n in frozen)
    assert any(n.startswith("backbone.") for n in frozen) and any(
        n.startswith("neck.top_down_p4") for n in frozen
    )
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.fit()
    after = dict(trainer.model.named_parameters())
    assert all(torch.equal(before[n], after[n]) for n in frozen)
    assert not torch.equal(
        before["head.box_branch.0.2.weight"], after["head.box_branch.0.2.weight"]
    )
    with pytest.raises(ValueError, match="matches no parameter"):
        Trainer(_cfg(shapes, tmp_path / "run2", freeze=("backbon",)))


def test_interrupt_saves_a_resumable_checkpoint(shapes, tmp_path, monkeypatch):
    trainer = Trainer(_cfg(shapes, tmp_path / "run", augment=NO_AUGMENT))
    real_step = trainer.train_step

    def step_then_interrupt(images, targets):
        if trainer.step == 1:
            raise KeyboardInterrupt
        return real_step(images, targets)

    monkeypatch.setattr(trainer, "train_step", step_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert json.loads((tmp_path / "run" / "last" / "state.json").read_text())["step"] == 1
    with pytest.raises(ValueError, match=r"different settings \['batch'\]"):
        Trainer(_cfg(shapes, tmp_path / "run", augment=NO_AUGMENT, batch=4), resume=True)
    resumed = Trainer(_cfg(shapes, tmp_path / "run", augment=NO_AUGMENT), resume=True)
    assert resumed.step == 1


def test_incomplete_checkpoint_names_missing_files(tmp_path):
    from fastsam_core.train.checkpoint import load_checkpoint

    (tmp_path / "last").mkdir()
    (tmp_path / "last" / "state.json").write_text("{}")
    model = torch.nn.Linear(1, 1)
    with pytest.raises(FileNotFoundError, match=r"missing \['model.safetensors', 'optimizer.pt'\]"):
        load_checkpoint(tmp_path / "last", model, torch.optim.SGD(model.parameters(), lr=0.1))


def test_validation_uses_the_evaluate_function_passed_in(shapes, tmp_path):
    """train/ does not import eval/: the caller (the CLI) hands the COCO evaluator in."""
    with pytest.raises(ValueError, match=r"val_data=.* needs an evaluate function"):
        Trainer(_cfg(shapes, tmp_path / "none", val_data=shapes, val_every=1))
    calls = []

    def evaluate(model, data, imgsz, device, class_agnostic):
        calls.append((type(model).__name__, data, imgsz, device.type, class_agnostic))
        return {"mask_map50": 0.25}

    cfg = _cfg(shapes, tmp_path / "run", val_data=shapes, val_every=1, epochs=1)
    cfg = dataclasses.replace(cfg, augment=NO_AUGMENT, device="cpu")
    Trainer(cfg, evaluate=evaluate).fit()
    assert calls == [("YoloV8Seg", shapes, IMGSZ, "cpu", False)]
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["val"] == {"mask_map50": 0.25}
