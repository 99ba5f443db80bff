"""Oracle-made ultralytics checkpoints for tests, cached on disk.

`oracle_checkpoints(recipes)` returns one `.pt` path per `CheckpointRecipe`, building any missing
ones in ONE subprocess that imports ultralytics (so the pytest process never does: ultralytics
changes torch's thread count on import). The files are written the way the trainer writes them:
`slot="ema"` is `BaseTrainer.save_model`'s layout (model None, EMA copy in `ema`), `slot="model"`
is that file after `ultralytics.utils.torch_utils.strip_optimizer` (the released layout).
`ultralytics="8.0.120"` builds with the FastSAM-era ultralytics in the cached venv of
tests/support/ul120.py instead (class branch `max(P3, nc)`, 8.0.x pickle layout; segment/detect,
reg_max 16 only).

Beside each checkpoint, `<name>.outputs.pt` holds the oracle's raw head tensors on a seeded
320x320 input (plain tensors; load with `weights_only=True`), in YoloV8Seg's layout.

Cache: `$FASTSAM_TEST_CACHE` or `~/.cache/fastsam-core-tests`, keyed by ultralytics version,
`BUILDER_VERSION` and the recipe.

CLI (used by the subprocess): `python -m tests.support.checkpoints OUT_DIR RECIPE_JSON...`
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Literal

import torch

from tests.support.cache import test_cache_root

BUILDER_VERSION = 2  # bump when the files this module writes change
REPO_ROOT = Path(__file__).resolve().parents[2]
PARITY_INPUT_SIZE = 320


@dataclass(frozen=True)
class CheckpointRecipe:
    """What to build. `legacy_pickle` mimics 8.0.x files: `Segment.detect = Detect.forward`
    (pickled as getattr) and args as `ultralytics.yolo.utils.IterableSimpleNamespace`."""

    scale: str = "n"
    num_classes: int = 1
    reg_max: int = 16
    dtype: Literal["fp16", "fp32"] = "fp16"
    slot: Literal["model", "ema"] = "model"
    task: Literal["segment", "detect", "pose", "classify"] = "segment"
    legacy_pickle: bool = False
    imgsz: int = 1024
    seed: int = 0
    ultralytics: Literal["current", "8.0.120"] = "current"  # which oracle builds the file
    family: Literal["yolov8", "yolo11"] = "yolov8"  # yaml family (yolo11: a non-YOLOv8 network)

    @property
    def name(self) -> str:
        legacy = "-legacy" if self.legacy_pickle else ""
        made_by = "" if self.ultralytics == "current" else f"-ul{self.ultralytics}"
        return (
            f"{self.family}{self.scale}-{self.task}-nc{self.num_classes}-r{self.reg_max}-{self.dtype}"
            f"-{self.slot}{legacy}-imgsz{self.imgsz}-seed{self.seed}{made_by}"
        )


def ultralytics_version() -> str | None:
    try:
        return metadata.version("ultralytics")
    except metadata.PackageNotFoundError:
        return None


def cache_dir() -> Path:
    return (
        test_cache_root()
        / "checkpoints"
        / f"ultralytics-{ultralytics_version()}-b{BUILDER_VERSION}"
    )


def oracle_checkpoints(recipes: list[CheckpointRecipe]) -> list[Path]:
    """Paths of the checkpoints for `recipes`, building the missing ones (needs ultralytics)."""
    if ultralytics_version() is None:
        raise RuntimeError("ultralytics is not installed: pip install -e '.[oracle]'")
    out_dir = cache_dir()
    paths = [out_dir / f"{r.name}.pt" for r in recipes]
    missing = list(dict.fromkeys(r for r, p in zip(recipes, paths) if not p.exists()))
    for made_by in ("current", "8.0.120"):
        todo = [r for r in missing if r.ultralytics == made_by]
        if not todo:
            continue
        out_dir.mkdir(parents=True, exist_ok=True)
        if made_by == "current":
            python, env = sys.executable, None
        else:
            from tests.support.ul120 import ul120_env, ul120_python

            python, env = str(ul120_python()), ul120_env()
        args = [json.dumps(dataclasses.asdict(r)) for r in todo]
        result = subprocess.run(
            [python, "-m", "tests.support.checkpoints", str(out_dir), *args],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            check=False,
            text=True,
            timeout=900,
        )
        if result.returncode != 0:
            raise RuntimeError(f"building oracle checkpoints failed:\n{result.stderr[-4000:]}")
    return paths


def oracle_outputs(checkpoint: Path) -> dict[str, torch.Tensor]:
    """The oracle's raw tensors saved beside `checkpoint` (images, box_dist, class_logits, ...)."""
    return torch.load(checkpoint.with_suffix(".outputs.pt"), weights_only=True)


# ---------------------------------------------------------------------------------------------
# Synthetic upstream state dicts (no ultralytics): our model's tensors under spec §1.9 names.

# Our module path -> upstream layer index, written from spec §1.2 independently of the converter.
_UPSTREAM_LAYER = {
    "backbone.stem": 0,
    "backbone.stages.0.downsample": 1,
    "backbone.stages.0.c2f": 2,
    "backbone.stages.1.downsample": 3,
    "backbone.stages.1.c2f": 4,
    "backbone.stages.2.downsample": 5,
    "backbone.stages.2.c2f": 6,
    "backbone.stages.3.downsample": 7,
    "backbone.stages.3.c2f": 8,
    "backbone.sppf": 9,
    "neck.top_down_p4": 12,
    "neck.top_down_p3": 15,
    "neck.downsample_p3": 16,
    "neck.bottom_up_p4": 18,
    "neck.downsample_p4": 19,
    "neck.bottom_up_p5": 21,
    "head": 22,
}
_UPSTREAM_INNER = [  # (our inner name regex, upstream inner name)
    (r"expand\.", "cv1."),
    (r"project\.", "cv2."),
    (r"reduce\.", "cv1."),
    (r"blocks\.(\d+)\.conv1\.", r"m.\1.cv1."),
    (r"blocks\.(\d+)\.conv2\.", r"m.\1.cv2."),
    (r"box_branch\.", "cv2."),
    (r"class_branch\.", "cv3."),
    (r"coeff_branch\.", "cv4."),
    (r"proto\.conv(\d)\.", r"proto.cv\1."),
]


def upstream_key(ours: str) -> str:
    """The spec §1.9 name of one of our state-dict keys ('neck.top_down_p4.expand.conv.weight'
    -> 'model.12.cv1.conv.weight')."""
    import re

    prefix = max((p for p in _UPSTREAM_LAYER if ours.startswith(p + ".")), key=len)
    inner = ours[len(prefix) + 1 :]
    for pattern, replacement in _UPSTREAM_INNER:
        inner = re.sub("^" + pattern, replacement, inner)
    return f"model.{_UPSTREAM_LAYER[prefix]}.{inner}"


def synthetic_upstream_state_dict(
    cfg, dtype: torch.dtype = torch.float16, seed: int = 0
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(upstream-named tensors like an ultralytics checkpoint, our fp32 tensors they came from).

    Every float tensor gets distinct random values so a swapped mapping is detectable.
    """
    from fastsam_core.model.yolov8_seg import YoloV8Seg

    torch.manual_seed(seed)
    ours = YoloV8Seg(cfg).state_dict()
    gen = torch.Generator().manual_seed(seed)
    for key, tensor in ours.items():
        if tensor.is_floating_point() and not key.endswith("dfl.conv.weight"):
            tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
    ours = {k: (v.to(dtype).float() if v.is_floating_point() else v) for k, v in ours.items()}
    upstream = {
        upstream_key(k): (v.to(dtype) if v.is_floating_point() else v.clone())
        for k, v in ours.items()
    }
    return upstream, ours


# ---------------------------------------------------------------------------------------------
# Builder (runs in the subprocess, imports ultralytics).


def _randomize_batchnorm(model: torch.nn.Module, seed: int) -> None:
    """Distinct BN statistics per layer so a mis-mapped BN tensor changes the outputs."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            n = bn.num_features
            bn.weight.copy_(torch.rand(n, generator=gen) + 0.5)
            bn.bias.copy_((torch.rand(n, generator=gen) - 0.5) * 0.4)
            bn.running_mean.copy_((torch.rand(n, generator=gen) - 0.5) * 0.4)
            bn.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
            bn.num_batches_tracked.fill_(int(torch.randint(1, 1000, (1,), generator=gen)))


def _raw_outputs(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Raw per-level head tensors via hooks, concatenated like YoloV8Seg's SegOutput."""
    head = model.model[-1]
    captured: dict[str, list[torch.Tensor]] = {"box": [], "cls": [], "coeff": [], "proto": []}
    hooks = []
    for name, branches in (("box", head.cv2), ("cls", head.cv3), ("coeff", head.cv4)):
        for branch in branches:
            hooks.append(
                branch.register_forward_hook(
                    lambda m, i, o, name=name: captured[name].append(o.detach().flatten(2))
                )
            )
    hooks.append(
        head.proto.register_forward_hook(lambda m, i, o: captured["proto"].append(o.detach()))
    )
    gen = torch.Generator().manual_seed(seed + 1)
    images = torch.rand(1, 3, PARITY_INPUT_SIZE, PARITY_INPUT_SIZE, generator=gen)
    with torch.no_grad():
        model.eval()(images)
    for hook in hooks:
        hook.remove()
    return {
        "images": images,
        "box_dist": torch.cat(captured["box"], dim=2),  # (1, 4R, A)
        "class_logits": torch.cat(captured["cls"], dim=2),  # (1, nc, A)
        "mask_coeffs": torch.cat(captured["coeff"], dim=2),  # (1, K, A)
        "protos": captured["proto"][0],  # (1, K, H/4, W/4)
    }


def _install_legacy_namespace_module():  # pragma: no cover - subprocess only
    """Make `ultralytics.yolo.utils.IterableSimpleNamespace` picklable under its 8.0.x path."""
    import types

    from ultralytics.utils import IterableSimpleNamespace

    legacy_cls = type(
        "IterableSimpleNamespace",
        (IterableSimpleNamespace,),
        {"__module__": "ultralytics.yolo.utils"},
    )
    for name in ("ultralytics.yolo", "ultralytics.yolo.utils"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["ultralytics.yolo.utils"].IterableSimpleNamespace = legacy_cls
    return legacy_cls


_YAML_SUFFIX = {"segment": "-seg", "detect": "", "pose": "-pose", "classify": "-cls"}


def _finish(recipe: CheckpointRecipe, tmp: Path, out_dir: Path) -> None:  # pragma: no cover
    """Oracle tensors from exactly the stored weights (fp16 -> fp32 like every loader), then
    move the checkpoint into the cache."""
    final = out_dir / f"{recipe.name}.pt"
    stored = torch.load(tmp / "last.pt", map_location="cpu", weights_only=False)
    reference = (stored["ema"] or stored["model"]).float()
    if recipe.task == "segment":
        torch.save(_raw_outputs(reference, recipe.seed), tmp / "outputs.pt")
        os.replace(tmp / "outputs.pt", final.with_suffix(".outputs.pt"))
    os.replace(tmp / "last.pt", final)
    tmp.rmdir()


def _build_one_v80(recipe: CheckpointRecipe, out_dir: Path) -> None:  # pragma: no cover
    """The same recipe under ultralytics 8.0.120 (runs in the venv of tests/support/ul120.py)."""
    import copy
    from datetime import datetime

    from ultralytics import __version__
    from ultralytics.nn.tasks import DetectionModel, SegmentationModel, yaml_model_load
    from ultralytics.yolo.cfg import get_cfg
    from ultralytics.yolo.utils import DEFAULT_CFG
    from ultralytics.yolo.utils.torch_utils import strip_optimizer

    assert __version__ == "8.0.120", __version__
    supported = recipe.task in ("segment", "detect") and recipe.family == "yolov8"
    if recipe.reg_max != 16 or not supported or recipe.legacy_pickle:
        raise ValueError(f"8.0.120 builds segment/detect with reg_max 16 only: {recipe}")
    torch.manual_seed(recipe.seed)
    cfg = yaml_model_load(f"yolov8{recipe.scale}{_YAML_SUFFIX[recipe.task]}.yaml")
    model_cls = SegmentationModel if recipe.task == "segment" else DetectionModel
    model = model_cls(cfg, nc=recipe.num_classes, verbose=False)
    _randomize_batchnorm(model, recipe.seed)
    args = get_cfg(DEFAULT_CFG, {"imgsz": recipe.imgsz, "task": recipe.task})
    model.args = args  # IterableSimpleNamespace of ultralytics.yolo.utils (spec §2.3)
    dtype = torch.float16 if recipe.dtype == "fp16" else torch.float32
    ema = copy.deepcopy(model).eval().to(dtype)
    for p in ema.parameters():
        p.requires_grad = False
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.937)
    ckpt = {  # 8.0.120 BaseTrainer.save_model
        "epoch": 3,
        "best_fitness": 0.5,
        "model": None if recipe.slot == "ema" else copy.deepcopy(model).to(dtype),
        "ema": ema,
        "updates": 100,
        "optimizer": optimizer.state_dict(),
        "train_args": vars(args),
        "date": datetime(2023, 6, 20, 12, 0, 0).isoformat(),
        "version": __version__,
    }
    tmp = Path(tempfile.mkdtemp(dir=out_dir))
    torch.save(ckpt, tmp / "last.pt")
    if recipe.slot == "model":
        strip_optimizer(tmp / "last.pt")  # model = ema.half(), the released layout
        if recipe.dtype == "fp32":
            stripped = torch.load(tmp / "last.pt", weights_only=False)
            stripped["model"] = stripped["model"].float()
            torch.save(stripped, tmp / "last.pt")
    _finish(recipe, tmp, out_dir)


def _build_one(recipe: CheckpointRecipe, out_dir: Path) -> None:  # pragma: no cover - subprocess
    import copy
    from datetime import datetime

    from ultralytics import __version__

    if recipe.ultralytics == "8.0.120":
        _build_one_v80(recipe, out_dir)
        return

    from ultralytics.cfg import get_cfg
    from ultralytics.nn.modules.head import Detect
    from ultralytics.nn.tasks import (
        ClassificationModel,
        DetectionModel,
        PoseModel,
        SegmentationModel,
        yaml_model_load,
    )
    from ultralytics.utils import DEFAULT_CFG_DICT
    from ultralytics.utils.torch_utils import strip_optimizer

    torch.manual_seed(recipe.seed)
    cfg = yaml_model_load(f"{recipe.family}{recipe.scale}{_YAML_SUFFIX[recipe.task]}.yaml")
    cfg["reg_max"] = recipe.reg_max
    model_cls = {
        "segment": SegmentationModel,
        "detect": DetectionModel,
        "pose": PoseModel,
        "classify": ClassificationModel,
    }[recipe.task]
    model = model_cls(cfg, nc=recipe.num_classes, verbose=False)
    _randomize_batchnorm(model, recipe.seed)
    model.args = get_cfg(overrides={"imgsz": recipe.imgsz})
    if recipe.legacy_pickle:
        model.args = _install_legacy_namespace_module()(**vars(model.args))
        model.model[-1].detect = Detect.forward  # 8.0.x Segment stores this bound name

    # BaseTrainer.save_model: the EMA copy (eval mode), fp16, with training state beside it.
    ema = copy.deepcopy(model).eval()
    ema = ema.half() if recipe.dtype == "fp16" else ema.float()
    for p in ema.parameters():
        p.requires_grad = False
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    train_args = {**DEFAULT_CFG_DICT, "imgsz": recipe.imgsz, "task": recipe.task}
    ckpt = {
        "epoch": 3,
        "best_fitness": 0.5,
        "stopper": {"best_fitness": 0.5, "best_epoch": 3},
        "model": None,
        "ema": ema,
        "updates": 100,
        "modelopt": None,
        "optimizer": optimizer.state_dict(),
        "scaler": {},
        "train_args": train_args,
        "train_metrics": {"fitness": 0.5},
        "train_results": {},
        "date": datetime.now().astimezone().isoformat(),
        "version": "8.0.120" if recipe.legacy_pickle else __version__,
        "license": "AGPL-3.0",
        "docs": "https://docs.ultralytics.com",
    }
    tmp = Path(tempfile.mkdtemp(dir=out_dir))
    torch.save(ckpt, tmp / "last.pt")
    if recipe.slot == "model":
        if recipe.legacy_pickle:  # 8.0.x strip_optimizer: model = ema, keep args as namespace
            ckpt.update(model=ema, ema=None, optimizer=None, updates=None, epoch=-1)
            torch.save(ckpt, tmp / "last.pt")
        else:
            strip_optimizer(tmp / "last.pt")  # the released layout: model = ema.half()
            if recipe.dtype == "fp32":
                stripped = torch.load(tmp / "last.pt", weights_only=False)
                stripped["model"] = stripped["model"].float()
                torch.save(stripped, tmp / "last.pt")
    _finish(recipe, tmp, out_dir)


def _main(argv: list[str]) -> int:  # pragma: no cover - subprocess only
    out_dir = Path(argv[0])
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ["YOLO_CONFIG_DIR"] = tempfile.mkdtemp(prefix="yolo-config-")
    for text in argv[1:]:
        _build_one(CheckpointRecipe(**json.loads(text)), out_dir)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_main(sys.argv[1:]))
