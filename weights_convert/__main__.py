"""`python -m fastsam_weights_convert IN.pt OUT.safetensors [--force]`."""

from __future__ import annotations

import argparse
import sys

from fastsam_weights_convert import convert_file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fastsam_weights_convert",
        description="Convert an ultralytics YOLOv8-seg / FastSAM .pt checkpoint to safetensors "
        "without importing ultralytics or executing pickled code.",
    )
    parser.add_argument("input", help="ultralytics .pt checkpoint")
    parser.add_argument("output", help="destination .safetensors file")
    parser.add_argument(
        "--force",
        "--overwrite",
        dest="force",
        action="store_true",
        help="overwrite OUTPUT if it exists (by default an existing file is never replaced)",
    )
    args = parser.parse_args(argv)
    try:
        cfg, info = convert_file(args.input, args.output, force=args.force)
    except (ValueError, FileNotFoundError, FileExistsError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # the output is written to a temporary file and renamed: no debris
        print("interrupted; nothing was written", file=sys.stderr)
        return 130
    print(
        f"wrote {args.output}: scale {cfg.scale}, reg_max {cfg.reg_max}, "
        f"{cfg.num_classes} classes, {info['num_params']:,} params, sha256 {info['sha256']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
