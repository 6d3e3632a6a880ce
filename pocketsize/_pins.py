"""The transformers pin, checked when pocketsize is imported.

Why at import: optimum's ONNX exporter (optimum-onnx 0.1.0, the newest) supports transformers
4.x only, up to 4.57. With 4.58 or 5.x installed, the first verb that reaches optimum dies
deep inside it with an ImportError that names neither the version nor the fix; stopping at
`import pocketsize` with one line saves the user that hunt. The installed version is read from
the package metadata (no import of transformers or torch: `pocketsize --help` stays fast).
"""

from __future__ import annotations

import os
import sys
from importlib import metadata

from pocketsize.errors import PocketsizeError

NEWEST_SUPPORTED = (4, 57)


class UnsupportedEnvironment(PocketsizeError, ImportError):
    """An installed package pocketsize cannot work with (raised by `import pocketsize`)."""


def transformers_problem(version: str | None) -> str | None:
    """The one-line message for an installed transformers `version`, or None when it is fine
    (or not installed: then the first verb that needs it names the missing package)."""
    if version is None:
        return None
    parts = version.split(".")
    try:
        major, minor = int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0)
    except (ValueError, IndexError):
        return None  # a version string we cannot read: let the packages speak for themselves
    if (major, minor) <= NEWEST_SUPPORTED:
        return None
    return (
        f"transformers {version} is installed, but pocketsize needs 4.57 or older: optimum's "
        "ONNX exporter (optimum-onnx 0.1) supports transformers 4.x only; install pocketsize "
        "in its own virtual environment (bash scripts/install.sh, or pip install "
        "'transformers<4.58')"
    )


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def check_transformers() -> None:
    """Stop on an unsupported transformers: one line and exit 2 from the `pocketsize` command,
    UnsupportedEnvironment (an ImportError) from `import pocketsize` in Python."""
    problem = transformers_problem(installed_version("transformers"))
    if problem is None:
        return
    if _run_as_the_command():
        print(f"pocketsize: error: {problem}", file=sys.stderr)
        raise SystemExit(2)
    raise UnsupportedEnvironment(problem)


def _run_as_the_command() -> bool:
    """`pocketsize ...` (the console script) or `python -m pocketsize ...`."""
    if sys.argv and os.path.basename(sys.argv[0]) == "pocketsize":
        return True
    orig = getattr(sys, "orig_argv", [])
    return any(a == "-m" and b == "pocketsize" for a, b in zip(orig, orig[1:]))
