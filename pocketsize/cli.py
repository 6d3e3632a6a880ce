"""`pocketsize <verb>`: parses arguments, calls the public API, prints. Nothing else.

Each stage package owns its verbs in `<stage>/cli.py` as `add_commands(subparsers)`; those
modules import nothing heavy at module level so that `pocketsize --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from pocketsize import processes
from pocketsize.errors import PocketsizeError

# The modules that register sub-commands, in the order `--help` lists them.
COMMAND_MODULES = [
    "pocketsize.assets_cli",
    "pocketsize.distill.cli",
    "pocketsize.prune.cli",
    "pocketsize.export.cli",
    "pocketsize.quantize.cli",
    "pocketsize.eval.cli",
    "pocketsize.compress.cli",
    "pocketsize.recipe_cli",
]


def build_parser() -> argparse.ArgumentParser:
    from pocketsize import __version__

    parser = argparse.ArgumentParser(
        prog="pocketsize",
        description="Distil, prune, quantize and export models, and report what was lost.",
    )
    parser.add_argument("--version", action="version", version=f"pocketsize {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if not processes.is_main():
        # one copy of what a verb prints, from the main process of a launched job (torchrun)
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
    try:
        return int(args.func(args) or 0)
    except PocketsizeError as e:
        print(f"pocketsize: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "pocketsize: interrupted; finished outputs are kept, nothing half-written is left",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
