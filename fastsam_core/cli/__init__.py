"""The `fastsam` command line: argparse dispatch only; each subcommand lives in its own module.

A subcommand module in this package defines `register(subparsers) -> None`, which adds its parser
and sets `func=run` (a callable taking the parsed namespace and returning an exit code).

Start-up rule: `build_parser` imports every subcommand module, so `fastsam --help`, `fastsam SUB
--help` and argument errors cost only what those modules import at top level. A subcommand
module imports at top level only the standard library and fastsam_core modules that are
themselves stdlib-only (`cli._prompt_args`, `ops.references`); torch, numpy, PIL and the rest of
fastsam_core are imported inside its `run` (or the functions `run` calls).
tests/e2e/test_startup.py checks this with `import torch` made to fail.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastsam", description="FastSAM: segment anything, fast.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s"
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, OSError, ImportError, RuntimeError) as err:
        # User-facing errors: one clear line, no traceback.
        print(f"fastsam {args.command}: error: {err}", file=sys.stderr)
        return 1
    except MemoryError:
        print(f"fastsam {args.command}: error: out of memory", file=sys.stderr)
        return 1
    except Exception as err:  # library errors (safetensors' SafetensorError, PIL, ...)
        if type(err).__module__.split(".")[0] in (
            "builtins",
            "fastsam_core",
            "fastsam_weights_convert",
        ):
            raise  # KeyError, AttributeError, ...: bugs keep their traceback
        print(f"fastsam {args.command}: error: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"fastsam {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
