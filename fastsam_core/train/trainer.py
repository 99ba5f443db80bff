"""The training loop: single process (CPU/GPU) or one rank of a `torchrun` DDP job.

A run folder holds `args.json`, `metrics.jsonl` (one line per step and per epoch), `last/` (the
resumable checkpoint, see `checkpoint.py`) and `weights.safetensors` (final EMA weights, loadable by
`fastsam_core.weights.load_model` and the `Predictor`). Resuming restores weights, EMA, optimizer and
the step counter; the data order and augmentation are pure functions of (seed, epoch, index), so a
resumed run follows the same trajectory as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from fastsam_core.config import YoloSegConfig, yolov8_seg_config
from fastsam_core.model.yolov8_seg import YoloV8Seg, build_model
from fastsam_core.train.augment import AugmentConfig
from fastsam_core.train.checkpoint import load_checkpoint, save_checkpoint, save_weights
from fastsam_core.train.dataset import DatasetIndex, load_dataset
from fastsam_core.train.ddp import DistInfo, all_sum, barrier, cleanup_distributed, init_distributed
from fastsam_core.train.ema import ModelEMA
from fastsam_core.train.loader import SegmentationDataset, collate, epoch_batches
from fastsam_core.train.loss import LOSS_NAMES, YoloSegLoss
from fastsam_core.train.schedule import LRSchedule, build_optimizer

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved as `args.json`).

    Attributes:
        data: dataset file (COCO .json or .yaml, see `dataset.load_dataset`).
        out: run folder.
        weights: starting weights: a name ('fastsam-s', 'fastsam-x'), a .safetensors/.pt path, or
            None to train from scratch at `scale`.
        scale: YOLOv8 scale for training from scratch.
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


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    return device


def build_training_model(
    weights: str | None, scale: str, num_classes: int, class_names: tuple[str, ...], imgsz: int
) -> tuple[YoloV8Seg, list[str]]:
    """The model to fine-tune and the names of tensors that were (re)initialised.

    From weights, every tensor whose shape still fits is kept; with a different `num_classes` the
    class branch's last conv is new and gets the prior bias of spec §1.6 (backbone, neck, box and
    mask branches are kept).
    """
    if weights is None or weights == "scratch":
        cfg = yolov8_seg_config(
            scale, num_classes=num_classes, class_names=class_names, imgsz=imgsz
        )
        return build_model(cfg), ["all (from scratch)"]
    from fastsam_core.weights import load_model

    path = Path(weights)
    if not path.exists():
        from fastsam_core.hub import resolve_weights

        path = resolve_weights(weights)
    source = load_model(path)
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


class Trainer:
    """Train a YoloV8Seg on a dataset; see `TrainConfig`.

    Args:
        cfg: the run's settings.
        resume: continue the run in `cfg.out` from its `last/` checkpoint.
        force: delete an existing `cfg.out` and start over.
    """

    def __init__(self, cfg: TrainConfig, resume: bool = False, force: bool = False) -> None:
        self.cfg = cfg
        device = resolve_device(cfg.device)
        self.dist: DistInfo = init_distributed(device)
        if device.type == "cuda" and self.dist.enabled:
            device = torch.device("cuda", self.dist.local_rank)
        self.device = device
        self.out = Path(cfg.out)
        self._prepare_run_folder(resume, force)
        if cfg.batch % self.dist.world_size:
            raise ValueError(
                f"batch {cfg.batch} must be divisible by the number of processes {self.dist.world_size}"
            )

        self.index: DatasetIndex = load_dataset(cfg.data, "train", single_class=cfg.single_class)
        names = self.index.class_names
        num_classes = cfg.num_classes or len(names)
        if cfg.num_classes and cfg.num_classes != len(names):
            if cfg.num_classes < len(names):
                raise ValueError(
                    f"num_classes={cfg.num_classes} but the dataset has {len(names)} classes {names}; "
                    "raise num_classes or use single_class"
                )
            names = names + tuple(f"class{i}" for i in range(len(names), cfg.num_classes))
        self.dataset = SegmentationDataset(self.index, cfg.imgsz, cfg.augment, seed=cfg.seed)
        self.steps_per_epoch = len(self.index.records) // cfg.batch
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"{cfg.data} has {len(self.index.records)} images, fewer than one batch of {cfg.batch}; lower --batch"
            )
        self.total_steps = self.steps_per_epoch * cfg.epochs

        torch.manual_seed(cfg.seed)
        model, self.reinitialised = build_training_model(
            cfg.weights, cfg.scale, num_classes, names, cfg.imgsz
        )
        self.model_cfg: YoloSegConfig = model.cfg
        self._freeze(model)
        self.model = model.to(self.device)
        self._train_mode()
        self.criterion = YoloSegLoss(
            num_classes,
            self.model_cfg.reg_max,
            seg_normalization=cfg.seg_normalization,
            min_box_side=cfg.min_box_side,
        )
        lr = (
            cfg.lr
            if cfg.lr is not None
            else (0.01 if cfg.optimizer == "sgd" else 0.002 * 5 / (4 + num_classes))
        )
        self.optimizer = build_optimizer(
            self.model, cfg.optimizer, lr, cfg.momentum, cfg.weight_decay
        )
        bias_lr = (
            cfg.warmup_bias_lr
            if cfg.warmup_bias_lr is not None
            else (0.1 if cfg.optimizer == "sgd" else 0.0)
        )
        self.schedule = LRSchedule(
            lr=lr,
            total_steps=self.total_steps,
            warmup_steps=round(cfg.warmup_epochs * self.steps_per_epoch),
            final_fraction=cfg.final_lr_fraction,
            shape=cfg.schedule,
            momentum=cfg.momentum,
            warmup_bias_lr=bias_lr,
        )
        self.ema = ModelEMA(self.model, cfg.ema_decay, cfg.ema_tau) if cfg.ema else None
        self.use_amp = cfg.amp if cfg.amp is not None else self.device.type == "cuda"
        if self.use_amp and self.device.type != "cuda":
            logger.warning(
                "AMP (float16) is only used on CUDA; training in float32 on %s", self.device
            )
            self.use_amp = False
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=self.use_amp and self.device.type == "cuda"
        )
        self.step = 0
        if resume:
            state = load_checkpoint(
                self.out / "last",
                self.model,
                self.optimizer,
                self.ema.module if self.ema else None,
                self.scaler,
            )
            self.step = int(state["step"])
            if self.ema:
                self.ema.updates = int(state["ema_updates"])
            self._truncate_metrics(self.step)
            logger.info("resumed %s at step %d", self.out, self.step)
        self.train_model: nn.Module = self.model
        if cfg.sync_bn and self.device.type != "cuda":
            raise ValueError(
                "sync_bn needs CUDA devices (PyTorch's SyncBatchNorm); drop it or use freeze_bn on CPU"
            )
        if self.dist.enabled:
            if cfg.sync_bn:
                self.train_model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = nn.parallel.DistributedDataParallel(self.train_model, device_ids=ids)

    # -- setup helpers -------------------------------------------------------------------------

    def _prepare_run_folder(self, resume: bool, force: bool) -> None:
        if resume and force:
            raise ValueError("use either resume or force, not both")
        exists = self.out.exists() and any(self.out.iterdir())
        barrier(self.dist)  # every rank looks before rank 0 changes anything, so all decide alike
        if resume:
            if not (self.out / "last" / "state.json").is_file():
                raise FileNotFoundError(f"cannot resume: {self.out / 'last'} holds no checkpoint")
            saved = TrainConfig.from_dict(json.loads((self.out / "args.json").read_text()))
            changed = {
                k
                for k in (
                    "data",
                    "weights",
                    "scale",
                    "epochs",
                    "imgsz",
                    "batch",
                    "seed",
                    "optimizer",
                    "lr",
                )
                if getattr(saved, k) != getattr(self.cfg, k)
            }
            if changed:
                raise ValueError(
                    f"cannot resume {self.out} with different settings {sorted(changed)}; "
                    f"saved: { {k: getattr(saved, k) for k in sorted(changed)} }"
                )
            return
        if exists and not force:
            raise FileExistsError(
                f"run folder {self.out} already exists; pass --resume to continue it or --force to overwrite"
            )
        if self.dist.is_main:
            if exists:
                shutil.rmtree(self.out)
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "args.json").write_text(json.dumps(self.cfg.to_dict(), indent=1))
        barrier(self.dist)

    def _freeze(self, model: nn.Module) -> None:
        if not self.cfg.freeze:
            return
        names = [n for n, _ in model.named_parameters()]
        for prefix in self.cfg.freeze:
            matched = [n for n in names if n == prefix or n.startswith(prefix + ".")]
            if not matched:
                tops = sorted({n.split(".")[0] for n in names})
                raise ValueError(
                    f"freeze prefix {prefix!r} matches no parameter; try one of {tops} or a sub-path"
                )
            for n, p in model.named_parameters():
                if n in matched:
                    p.requires_grad_(False)

    def _train_mode(self) -> None:
        self.model.train()
        if self.cfg.freeze_bn:
            for module in self.model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()

    def _truncate_metrics(self, step: int) -> None:
        """Drop metric lines logged after the checkpoint we resume from (they will be redone)."""
        path = self.out / "metrics.jsonl"
        if not self.dist.is_main or not path.exists():
            return
        kept = [
            line
            for line in path.read_text().splitlines()
            if line and json.loads(line).get("step", 0) <= step
        ]
        path.write_text("".join(line + "\n" for line in kept))

    # -- the loop --------------------------------------------------------------------------------

    def _log(self, record: dict[str, Any]) -> None:
        if self.dist.is_main:
            with open(self.out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")

    def _save(self, epoch: int) -> None:
        if self.dist.is_main:
            state = {
                "step": self.step,
                "epoch": epoch,
                "ema_updates": self.ema.updates if self.ema else 0,
                "steps_per_epoch": self.steps_per_epoch,
                "total_steps": self.total_steps,
                "reinitialised": self.reinitialised[:50],
            }
            save_checkpoint(
                self.out / "last",
                self.model,
                self.model_cfg,
                self.optimizer,
                state,
                self.ema.module if self.ema else None,
                self.scaler if self.scaler.is_enabled() else None,
            )
        barrier(self.dist)

    def train_step(self, images: torch.Tensor, targets: Any) -> torch.Tensor:
        """One optimizer step on this rank's part of a global batch; returns the loss items (4,)."""
        cfg = self.cfg
        images = images.to(self.device, non_blocking=True)
        targets = targets.to(self.device)
        self.schedule.apply(self.optimizer, self.step)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.use_amp):
            out = self.train_model(images)
        out = dataclasses.replace(
            out,
            box_dist=out.box_dist.float(),
            class_logits=out.class_logits.float(),
            mask_coeffs=out.mask_coeffs.float(),
            protos=out.protos.float(),
        )
        # Under DDP the loss normalisers are summed over ranks, so the ranks' loss shares add up to
        # the single-process loss of the global batch; DDP averages gradients, so scale back by the
        # world size (the reference multiplies by the world size the same way).
        world = self.dist.world_size
        loss = self.criterion(out, targets, world, all_sum if self.dist.enabled else None)
        self.scaler.scale(loss.total * world).backward()
        if cfg.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema:
            self.ema.update(self.model)
        self.step += 1
        return all_sum(loss.items) if self.dist.enabled else loss.items

    def fit(self) -> dict[str, Any]:
        """Train until `epochs` (or `max_steps`); returns the last epoch's summary."""
        from tqdm import tqdm  # type: ignore[import-untyped]

        cfg, rank, world = self.cfg, self.dist.rank, self.dist.world_size
        local_batch = cfg.batch // world
        summary: dict[str, Any] = {"step": self.step}
        start = time.perf_counter()
        try:
            for epoch in range(self.step // self.steps_per_epoch, cfg.epochs):
                self.dataset.set_epoch(epoch, mosaic=epoch < cfg.epochs - cfg.close_mosaic)
                batches = epoch_batches(len(self.dataset), cfg.batch, cfg.seed, epoch)
                local = [b[rank * local_batch : (rank + 1) * local_batch] for b in batches]
                done = self.step - epoch * self.steps_per_epoch
                loader = torch.utils.data.DataLoader(
                    self.dataset,
                    batch_sampler=local[done:],
                    collate_fn=collate,
                    num_workers=cfg.workers,
                    persistent_workers=False,
                )
                bar = tqdm(
                    total=self.steps_per_epoch,
                    initial=done,
                    desc=f"epoch {epoch + 1}/{cfg.epochs}",
                    disable=not (cfg.progress and self.dist.is_main),
                    leave=False,
                )
                sums, count = torch.zeros(4), 0
                for images, targets, _ in loader:
                    items = self.train_step(images, targets).cpu()
                    sums, count = sums + items, count + 1
                    record = {
                        "step": self.step,
                        "epoch": epoch,
                        "lr": self.optimizer.param_groups[0]["lr"],
                        **{n: round(float(v), 6) for n, v in zip(LOSS_NAMES, items)},
                    }
                    self._log(record)
                    bar.set_postfix(
                        {n.split("_")[0]: f"{float(v):.3f}" for n, v in zip(LOSS_NAMES, items)}
                    )
                    bar.update(1)
                    if cfg.save_every and self.step % cfg.save_every == 0:
                        self._save(epoch)
                    if cfg.max_steps is not None and self.step >= cfg.max_steps:
                        break
                bar.close()
                summary = {
                    "epoch": epoch,
                    "step": self.step,
                    "time_s": round(time.perf_counter() - start, 2),
                    **{
                        f"mean_{n}": round(float(v), 6)
                        for n, v in zip(LOSS_NAMES, sums / max(count, 1))
                    },
                }
                if cfg.max_steps is not None and self.step >= cfg.max_steps:
                    self._save(epoch)
                    self._log({**summary, "stopped": "max_steps"})
                    return summary
                self._save(epoch)
                if (
                    cfg.val_data
                    and cfg.val_every
                    and (epoch + 1) % cfg.val_every == 0
                    and self.dist.is_main
                ):
                    summary["val"] = self.validate(cfg.val_data)
                self._log(summary)
                if self.dist.is_main:
                    logger.info("epoch %d/%d %s", epoch + 1, cfg.epochs, summary)
        except KeyboardInterrupt:
            logger.warning("interrupted at step %d; saving %s", self.step, self.out / "last")
            self._save(self.step // self.steps_per_epoch)
            raise
        if self.dist.is_main:
            final = self.ema.module if self.ema else self.model
            save_weights(final, self.model_cfg, self.out / "weights.safetensors")
        barrier(self.dist)
        return summary

    def validate(self, data: str) -> dict[str, float]:
        """COCO box/mask metrics of the EMA (or raw) weights on a COCO file."""
        from fastsam_core.eval.coco import evaluate_model

        model = self.ema.module if self.ema else self.model
        metrics = evaluate_model(
            model,
            data,
            imgsz=self.cfg.imgsz,
            device=self.device,
            class_agnostic=self.model_cfg.num_classes == 1,
        )
        self._train_mode()
        return metrics

    def close(self) -> None:
        cleanup_distributed()
