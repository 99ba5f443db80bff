"""`python -m fastsam_weights_convert IN.pt OUT.safetensors [--force]`: `fastsam convert`."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """The same command as `fastsam convert` (one implementation: fastsam_core/cli/convert.py)."""
    from fastsam_core.cli import main as fastsam_main

    return fastsam_main(["convert", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
