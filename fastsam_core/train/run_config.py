"""Training-run settings and the model a run starts from (scratch, converted weights, new head)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from torch import nn

from fastsam_core.config import DEFAULT_BACKBONE, yolov8_seg_config
from fastsam_core.model.timm_backbone import TimmBackbone, load_backbone_weights
from fastsam_core.model.yolov8_seg import YoloV8Seg, build_model
from fastsam_core.train.augment import AugmentConfig


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved as `args.json`).

    Attributes:
        data: dataset file (COCO .json or .yaml, see `dataset.load_dataset`).
        out: run folder.
        weights: starting weights: a name ('fastsam-s', 'fastsam-x'), a .safetensors/.pt path, or
            None to train from scratch at `scale`.
        scale: YOLOv8 scale for training from scratch (also the neck and head widths with a
            timm backbone).
        backbone: from scratch: "cspdarknet" (default) or "timm:<name>", e.g. "timm:resnet18"
            (see `YoloSegConfig.backbone`); with `weights`, the backbone is the file's.
        backbone_weights: a local timm checkpoint (.safetensors / .pt) of that timm model, loaded
            into the backbone before training (the hub is never contacted).
        num_classes: classes of the head; default the dataset's (1 with `single_class`).
        single_class: collapse all categories into one "object" class (FastSAM style).
        epochs, imgsz, batch: batch is the global batch (split across DDP ranks).
        workers: DataLoader worker processes (0: load in the training process).
        optimizer, lr, momentum, weight_decay: lr None picks 0.01 for SGD and 0.002 * 5 / (4 + nc)
            for AdamW (spec §6); momentum is AdamW's beta1.
        warmup_epochs, warmup_bias_lr, schedule, final_lr_fraction: see `LRSchedule`;
            warmup_bias_lr None picks 0.1 for SGD and 0.0 for AdamW.
        ema, ema_decay, ema_tau: weight EMA (see `ModelEMA`).
        amp: mixed precision; None enables it on CUDA only.
        grad_clip: max gradient norm (0 disables).
        freeze: parameter-name prefixes to freeze, e.g. ("backbone",) or ("backbone", "neck").
        close_mosaic: turn mosaic off for the last N epochs.
        augment: augmentation settings.
        seed: seed of the initialisation, data order and augmentations.
        device: 'auto', 'cpu', 'cuda' or 'cuda:N'.
        save_every: also checkpoint every N steps (0: at epoch ends only).
        max_steps: stop (after checkpointing) once this many steps are done; for time budgets.
        val_data, val_every: validate the EMA weights on this COCO file every N epochs.
        seg_normalization, min_box_side: loss variant (see `YoloSegLoss`); defaults are 8.0.120.
        sync_bn: SyncBatchNorm under DDP (CUDA only).
        freeze_bn: keep BatchNorm statistics fixed (eval mode) while training; its affine
            parameters still learn. Useful for small per-device batches; makes DDP match one
            process on the global batch up to float rounding.
        progress: show a tqdm progress bar (main process only).
    """

    data: str
    out: str
    weights: str | None = None
    scale: str = "n"
    backbone: str | None = None
    backbone_weights: str | None = None
    num_classes: int | None = None
    single_class: bool = False
    epochs: int = 10
    imgsz: int = 640
    batch: int = 16
    workers: int = 0
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float | None = None
    momentum: float = 0.937
    weight_decay: float = 5e-4
    warmup_epochs: float = 3.0
    warmup_bias_lr: float | None = None
    schedule: Literal["cosine", "linear"] = "cosine"
    final_lr_fraction: float = 0.01
    ema: bool = True
    ema_decay: float = 0.9999
    ema_tau: float = 2000.0
    amp: bool | None = None
    grad_clip: float = 10.0
    freeze: tuple[str, ...] = ()
    close_mosaic: int = 10
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    seed: int = 0
    device: str = "auto"
    save_every: int = 0
    max_steps: int | None = None
    val_data: str | None = None
    val_every: int = 0
    seg_normalization: Literal["per_image", "per_anchor"] = "per_image"
    min_box_side: float = 0.0
    sync_bn: bool = False
    freeze_bn: bool = False
    progress: bool = True

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        data = dict(data)
        data["augment"] = AugmentConfig(**data.get("augment", {}))
        data["freeze"] = tuple(data.get("freeze", ()))
        return cls(**data)


def build_training_model(
    weights: str | None,
    scale: str,
    num_classes: int,
    class_names: tuple[str, ...],
    imgsz: int,
    backbone: str | None = None,
    backbone_weights: str | None = None,
) -> tuple[YoloV8Seg, list[str]]:
    """The model to fine-tune and the names of tensors that were (re)initialised.

    From weights, every tensor whose shape still fits is kept; with a different `num_classes` the
    class branch's last conv is new and gets the prior bias of spec §1.6 (backbone, neck, box and
    mask branches are kept). From scratch, `backbone` names the backbone part and
    `backbone_weights` (timm backbones only) fills it from a local file.
    """
    if weights is None or weights == "scratch":
        cfg = yolov8_seg_config(
            scale,
            num_classes=num_classes,
            class_names=class_names,
            imgsz=imgsz,
            backbone=backbone or DEFAULT_BACKBONE,
        )
        model = build_model(cfg)
        if backbone_weights is not None:
            if not isinstance(model.backbone, TimmBackbone):
                raise ValueError(
                    f"--backbone-weights needs a timm backbone (--backbone timm:<name>), got "
                    f"{cfg.backbone!r}"
                )
            load_backbone_weights(model.backbone, backbone_weights)
            return model, ["neck, head and backbone adapters (backbone from a file)"]
        return model, ["all (from scratch)"]
    if backbone_weights is not None:
        raise ValueError("--backbone-weights applies to training from scratch; drop --weights")
    from fastsam_core.weights import load_model

    path = Path(weights)
    if not path.exists():
        from fastsam_core.hub import resolve_weights

        path = resolve_weights(weights)
    source = load_model(path)
    if backbone is not None and backbone != source.cfg.backbone:
        raise ValueError(
            f"--backbone {backbone!r} differs from the backbone of {path} "
            f"({source.cfg.backbone!r}); drop --backbone or --weights"
        )
    cfg = dataclasses.replace(source.cfg, num_classes=num_classes, class_names=class_names)
    model = build_model(cfg)
    src_state = source.state_dict()
    own_state = model.state_dict()
    fitting = {
        k: v for k, v in src_state.items() if k in own_state and own_state[k].shape == v.shape
    }
    model.load_state_dict(fitting, strict=False)
    reinitialised = sorted(k for k in own_state if k not in fitting)
    return model, reinitialised


def freeze_parameters(model: nn.Module, prefixes: tuple[str, ...]) -> None:
    """Stop gradients of every parameter named `prefix` or `prefix.*` (e.g. "backbone")."""
    names = [n for n, _ in model.named_parameters()]
    for prefix in prefixes:
        matched = [n for n in names if n == prefix or n.startswith(prefix + ".")]
        if not matched:
            tops = sorted({n.split(".")[0] for n in names})
            raise ValueError(
                f"freeze prefix {prefix!r} matches no parameter; try one of {tops} or a sub-path"
            )
        for n, p in model.named_parameters():
            if n in matched:
                p.requires_grad_(False)
