"""The training loop: single process (CPU/GPU) or one rank of a `torchrun` DDP job.

A run folder holds `args.json`, `metrics.jsonl` (one line per step and per epoch), `last/` (the
resumable checkpoint, see `checkpoint.py`) and `weights.safetensors` (final EMA weights, loadable by
`fastsam_core.weights.load_model` and the `Predictor`). Resuming restores weights, EMA, optimizer
and the step counter; the data order and augmentation are pure functions of (seed, epoch, index), so
a resumed run follows the same trajectory as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fastsam_core.config import YoloSegConfig
from fastsam_core.data.datasets import DatasetIndex, load_dataset
from fastsam_core.devices import resolve_device
from fastsam_core.train.checkpoint import load_checkpoint, save_checkpoint, save_weights
from fastsam_core.train.ddp import DistInfo, all_sum, barrier, cleanup_distributed, init_distributed
from fastsam_core.train.ema import ModelEMA
from fastsam_core.train.loader import SegmentationDataset, collate, epoch_batches
from fastsam_core.train.loss import LOSS_NAMES, YoloSegLoss
from fastsam_core.train.run_config import TrainConfig, build_training_model, freeze_parameters
from fastsam_core.train.schedule import LRSchedule, build_optimizer

logger = logging.getLogger(__name__)

__all__ = ["Evaluator", "TrainConfig", "Trainer", "build_training_model"]

# evaluate(model, data, imgsz=, device=, class_agnostic=) -> metrics: the signature of
# `fastsam_core.eval.coco.evaluate_model`, passed in so that train/ does not import eval/.
Evaluator = Callable[..., dict[str, float]]

# Settings a resumed run must share with the saved one (the trajectory depends on them).
_RESUME_KEYS = (
    "data",
    "weights",
    "scale",
    "backbone",
    "epochs",
    "imgsz",
    "batch",
    "seed",
    "optimizer",
    "lr",
)


class Trainer:
    """Train a YoloV8Seg on a dataset; see `TrainConfig`.

    Args:
        cfg: the run's settings.
        resume: continue the run in `cfg.out` from its `last/` checkpoint.
        force: delete an existing `cfg.out` and start over.
        evaluate: scores the weights on `cfg.val_data` (needed when it is set), e.g.
            `fastsam_core.eval.coco.evaluate_model`, as `fastsam train` passes.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        resume: bool = False,
        force: bool = False,
        evaluate: Evaluator | None = None,
    ) -> None:
        if cfg.val_data and evaluate is None:
            raise ValueError(
                f"val_data={cfg.val_data!r} needs an evaluate function: "
                "Trainer(cfg, evaluate=fastsam_core.eval.coco.evaluate_model)"
            )
        self.cfg = cfg
        self.evaluate = evaluate
        device = resolve_device(cfg.device)
        self.dist: DistInfo = init_distributed(device)
        if device.type == "cuda" and self.dist.enabled:
            device = torch.device("cuda", self.dist.local_rank)
        self.device = device
        self.out = Path(cfg.out)
        self._prepare_run_folder(resume, force)
        if cfg.batch % self.dist.world_size:
            raise ValueError(
                f"batch {cfg.batch} must be divisible by the number of processes "
                f"{self.dist.world_size}"
            )

        self.index: DatasetIndex = load_dataset(cfg.data, "train", single_class=cfg.single_class)
        names = self.index.class_names
        num_classes = cfg.num_classes or len(names)
        if cfg.num_classes and cfg.num_classes != len(names):
            if cfg.num_classes < len(names):
                raise ValueError(
                    f"num_classes={cfg.num_classes} but the dataset has {len(names)} classes "
                    f"{names}; "
                    "raise num_classes or use single_class"
                )
            names = names + tuple(f"class{i}" for i in range(len(names), cfg.num_classes))
        self.dataset = SegmentationDataset(self.index, cfg.imgsz, cfg.augment, seed=cfg.seed)
        self.steps_per_epoch = len(self.index.records) // cfg.batch
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"{cfg.data} has {len(self.index.records)} images, fewer than one batch of "
                f"{cfg.batch}; lower --batch"
            )
        self.total_steps = self.steps_per_epoch * cfg.epochs

        torch.manual_seed(cfg.seed)
        model, self.reinitialised = build_training_model(
            cfg.weights,
            cfg.scale,
            num_classes,
            names,
            cfg.imgsz,
            backbone=cfg.backbone,
            backbone_weights=cfg.backbone_weights,
        )
        self.model_cfg: YoloSegConfig = model.cfg
        freeze_parameters(model, cfg.freeze)
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
                "sync_bn needs CUDA devices (PyTorch's SyncBatchNorm); drop it or use freeze_bn "
                "on CPU"
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
            changed = {k for k in _RESUME_KEYS if getattr(saved, k) != getattr(self.cfg, k)}
            if changed:
                raise ValueError(
                    f"cannot resume {self.out} with different settings {sorted(changed)}; "
                    f"saved: { {k: getattr(saved, k) for k in sorted(changed)} }"
                )
            return
        if exists and not force:
            raise FileExistsError(
                f"run folder {self.out} already exists; pass --resume to continue it or --force "
                "to overwrite"
            )
        if self.dist.is_main:
            if exists:
                shutil.rmtree(self.out)
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "args.json").write_text(json.dumps(self.cfg.to_dict(), indent=1))
        barrier(self.dist)

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
        if self.evaluate is None:
            raise ValueError("validate needs Trainer(..., evaluate=...); see the class docstring")
        model = self.ema.module if self.ema else self.model
        metrics = self.evaluate(
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
