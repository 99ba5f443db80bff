"""`fastsam train --data D --out runs/NAME [--weights fastsam-s] ...`: train YOLOv8-seg / FastSAM.

Multi-GPU / multi-process: `torchrun --nproc_per_node N -m fastsam_core train ...` (PyTorch DDP).
"""

from __future__ import annotations

import argparse


def _prefixes(text: str) -> tuple[str, ...]:
    return tuple(p for p in text.split(",") if p)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="fine-tune FastSAM / train YOLOv8-seg on a COCO or YOLO-seg dataset",
        description="Train on a COCO .json (polygons/RLE) or a YOLO-seg .yaml. Writes "
        "RUN/args.json, RUN/metrics.jsonl, RUN/last/ (resumable checkpoint) and "
        "RUN/weights.safetensors (EMA weights for `fastsam segment --model`). For several "
        "processes/GPUs run it under "
        "`torchrun --nproc_per_node N -m fastsam_core train ...`.",
    )
    p.add_argument("--data", required=True, help="COCO annotations .json or dataset .yaml")
    p.add_argument("--out", required=True, help="run folder, e.g. runs/shapes")
    p.add_argument(
        "--weights",
        default=None,
        help="start from fastsam-s, fastsam-x, a .safetensors/.pt path, or 'scratch' (default)",
    )
    p.add_argument(
        "--scale", default="n", choices=["n", "s", "m", "l", "x"], help="scale when from scratch"
    )
    p.add_argument(
        "--backbone",
        default=None,
        help="from scratch: cspdarknet (default) or timm:<name>, e.g. timm:resnet18 (needs timm)",
    )
    p.add_argument(
        "--backbone-weights",
        default=None,
        help="local timm checkpoint (.safetensors/.pt) for a timm --backbone (no hub download)",
    )
    p.add_argument(
        "--num-classes", type=int, default=None, help="head classes (default: the dataset's)"
    )
    p.add_argument(
        "--single-class", action="store_true", help="merge all categories into 'object' (FastSAM)"
    )
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--imgsz", type=int, default=640, help="square training size, a multiple of 32")
    p.add_argument(
        "--batch", type=int, default=16, help="global batch size (split across processes)"
    )
    p.add_argument("--workers", type=int, default=0, help="data loading processes")
    p.add_argument("--optimizer", default="adamw", choices=["adamw", "sgd"])
    p.add_argument(
        "--lr", type=float, default=None, help="peak learning rate (default: by optimizer)"
    )
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--warmup-epochs", type=float, default=3.0)
    p.add_argument("--schedule", default="cosine", choices=["cosine", "linear"])
    p.add_argument("--no-ema", action="store_true", help="disable the weight EMA")
    p.add_argument(
        "--amp", choices=["auto", "on", "off"], default="auto", help="mixed precision (auto: CUDA)"
    )
    p.add_argument("--grad-clip", type=float, default=10.0)
    p.add_argument(
        "--freeze",
        type=_prefixes,
        default=(),
        help="comma-separated parameter prefixes to freeze, e.g. backbone or backbone,neck",
    )
    p.add_argument("--close-mosaic", type=int, default=10, help="no mosaic in the last N epochs")
    p.add_argument("--mosaic", type=float, default=1.0, help="mosaic probability")
    p.add_argument("--no-augment", action="store_true", help="letterbox only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--save-every", type=int, default=0, help="also checkpoint every N steps")
    p.add_argument("--max-steps", type=int, default=None, help="stop after N steps (checkpointed)")
    p.add_argument("--val-data", default=None, help="COCO/YOLO-seg file to validate on")
    p.add_argument("--val-every", type=int, default=0, help="validate every N epochs")
    p.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm across DDP processes")
    p.add_argument("--freeze-bn", action="store_true", help="keep BatchNorm statistics fixed")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue the run in --out")
    group.add_argument("--force", action="store_true", help="overwrite an existing --out")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fastsam_core.eval.coco import evaluate_model
    from fastsam_core.train.augment import NO_AUGMENT, AugmentConfig
    from fastsam_core.train.trainer import TrainConfig, Trainer

    augment = NO_AUGMENT if args.no_augment else AugmentConfig(mosaic=args.mosaic)
    cfg = TrainConfig(
        data=args.data,
        out=args.out,
        weights=args.weights,
        scale=args.scale,
        backbone=args.backbone,
        backbone_weights=args.backbone_weights,
        num_classes=args.num_classes,
        single_class=args.single_class,
        epochs=args.epochs,
        imgsz=args.imgsz,
        batch=args.batch,
        workers=args.workers,
        optimizer=args.optimizer,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_epochs=args.warmup_epochs,
        schedule=args.schedule,
        ema=not args.no_ema,
        amp={"auto": None, "on": True, "off": False}[args.amp],
        grad_clip=args.grad_clip,
        freeze=args.freeze,
        close_mosaic=args.close_mosaic,
        augment=augment,
        seed=args.seed,
        device=args.device,
        save_every=args.save_every,
        max_steps=args.max_steps,
        val_data=args.val_data,
        val_every=args.val_every,
        sync_bn=args.sync_bn,
        freeze_bn=args.freeze_bn,
        progress=not args.no_progress,
    )
    trainer = Trainer(cfg, resume=args.resume, force=args.force, evaluate=evaluate_model)
    try:
        summary = trainer.fit()
    finally:
        trainer.close()
    if trainer.dist.is_main:
        print(f"done: step {summary.get('step')} of {trainer.total_steps}; run folder {cfg.out}")
        if (trainer.out / "weights.safetensors").exists():
            print(f"weights: {trainer.out / 'weights.safetensors'}")
    return 0
