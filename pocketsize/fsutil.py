"""Write-then-rename helpers, so an interrupted stage never leaves a half-written output."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from pocketsize.errors import PocketsizeError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_output_dir(out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Refuse to replace a finished output unless told to; call it before any long work."""
    out = Path(out)
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise PocketsizeError(
            f"output {out} already exists; choose another path or pass overwrite=True (--overwrite)"
        )
    # the nearest part of the path that exists must be a directory to write into
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise PocketsizeError(
            f"cannot write output {out}: {parent} is a file, not a directory; choose an output "
            "path inside a directory"
        )
    return out


@contextlib.contextmanager
def atomic_dir(out: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it replaces `out` in one rename.

    On an exception the temporary directory is removed and any existing `out` is untouched.
    """
    out = check_output_dir(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    # mkdtemp makes a private 0700 directory; outputs are meant to be shared like any other.
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, out)


def replace_dir(new: Path, out: Path) -> None:
    """Put the complete directory `new` in the place of `out` (if any) by renames: the old one
    is moved aside first, so that at every moment one complete copy exists."""
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
        os.replace(new, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, out)


@contextlib.contextmanager
def locked_dir(path: str | os.PathLike, busy: str) -> Iterator[Path]:
    """Hold an advisory lock on the directory `path` (made if missing) for the block; another
    process asking for it meanwhile gets `busy` as its one-line error at once. The lock is a
    POSIX flock on the directory itself, so nothing is left inside it, and it goes with the
    process that held it (a killed run leaves no stale lock); where there is no flock
    (Windows), no lock is taken."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise PocketsizeError(f"{path} is a file, not a directory; choose another path")
    path.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield path
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PocketsizeError(busy) from None
        yield path
    finally:
        os.close(fd)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def dir_size_bytes(path: str | os.PathLike, patterns: tuple[str, ...] = ("*",)) -> int:
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    seen = set()
    for pattern in patterns:
        seen.update(p for p in path.rglob(pattern) if p.is_file())
    return sum(p.stat().st_size for p in seen)
