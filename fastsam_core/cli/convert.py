"""`fastsam convert IN.pt OUT.safetensors [--force]`: official checkpoint -> safetensors (§2.5)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert an ultralytics/FastSAM .pt checkpoint to .safetensors (safely)",
        description="Convert an official ultralytics YOLOv8-seg / FastSAM .pt checkpoint to a "
        ".safetensors file with its config in the header. The .pt is read with an allow-list "
        "unpickler: ultralytics is not needed and no pickled code runs.",
    )
    parser.add_argument("input", help="ultralytics .pt checkpoint (e.g. FastSAM-x.pt)")
    parser.add_argument("output", help="destination .safetensors file")
    parser.add_argument(
        "--force",
        "--overwrite",
        dest="force",
        action="store_true",
        help="overwrite OUTPUT if it exists (by default an existing file is never replaced)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fastsam_weights_convert import convert_file

    cfg, info = convert_file(args.input, args.output, force=args.force)
    names = ", ".join(cfg.class_names[:8]) if cfg.class_names else "unnamed"
    names += ", ..." if len(cfg.class_names) > 8 else ""  # LVIS has 1203
    print(f"wrote {info['output']}")
    print(
        f"  scale:       {cfg.scale or 'custom'} (channels {list(cfg.channels)}, "
        f"depths {list(cfg.depths)})"
    )
    print(f"  reg_max:     {cfg.reg_max}")
    print(f"  classes:     {cfg.num_classes} ({names})")
    rule = info.get("class_hidden_rule", "current")
    if rule != "current":  # only checkpoints with nc > P3 and nc > 100 (spec §1.4)
        print(f"  class width: {cfg.class_hidden} (ultralytics {rule} rule)")
    print(f"  params:      {info['num_params']:,}")
    print(f"  imgsz:       {cfg.imgsz}")
    print(
        f"  source:      {info['slot']} slot, {'/'.join(info['source_dtypes'])}, "
        f"ultralytics {info.get('version', 'unknown')}"
    )
    print(f"  seconds:     {info['seconds']:.2f}")
    print(f"  sha256:      {info['sha256']}")
    return 0
