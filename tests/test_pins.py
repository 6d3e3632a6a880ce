"""The transformers pin: an installed transformers 4.58 or 5.x stops `import pocketsize` and
every command with one line (version, why, fix), before anything reaches optimum."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pocketsize._pins import transformers_problem

BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    ("version", "refused"),
    [("4.45.2", False), ("4.57.3", False), ("4.58.0", True), ("4.60.0.dev0", True),
     ("5.0.0rc1", True), ("5.17.0", True)],
)  # fmt: skip
def test_which_transformers_versions_are_refused(version, refused):
    problem = transformers_problem(version)
    assert (problem is not None) == refused
    if refused:
        assert f"transformers {version} is installed" in problem
        assert "optimum" in problem and "virtual environment" in problem


def _with_transformers(tmp_path, version) -> dict:
    """An environment whose first transformers distribution on the path says `version`."""
    info = tmp_path / f"transformers-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: transformers\nVersion: {version}\n"
    )
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path}


def test_import_stops_with_the_version_and_the_fix(tmp_path):
    env = _with_transformers(tmp_path, "4.58.0")
    code = (
        "try:\n    import pocketsize\nexcept ImportError as e:\n    print('REFUSED', e)\n"
        "else:\n    print('IMPORTED')"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.startswith("REFUSED transformers 4.58.0 is installed"), out.stderr


@pytest.mark.parametrize(
    "command", [[str(BIN / "pocketsize")], [sys.executable, "-m", "pocketsize"]]
)
def test_the_command_stops_with_one_line(tmp_path, command):
    env = _with_transformers(tmp_path, "5.0.0")
    out = subprocess.run([*command, "eval", "--help"], env=env, capture_output=True, text=True)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pocketsize: error: transformers 5.0.0"), lines


def test_the_installed_transformers_is_accepted():
    out = subprocess.run(
        [str(BIN / "pocketsize"), "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("pocketsize ")
