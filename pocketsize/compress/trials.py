"""The trial log: one JSON line per finished trial, appended as it finishes.

Why a log, not a result file written at the end: a search runs for an hour, and a kill -9
(or a power cut) must cost at most the trial in flight. A rerun reads the log and skips every
(candidate, phase) already in it with the same settings (a trial trained with other options
runs again); a last line cut off mid-write is dropped, with a note.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

LOG = "trials.jsonl"


class TrialLog:
    def __init__(self, directory: Path):
        self.path = Path(directory) / LOG
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.entries = self._read()

    def _read(self) -> list[dict]:
        if not self.path.exists():
            return []
        entries, lines = [], self.path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, start=1):
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                print(
                    f"note: {self.path} line {number} is cut off (a run stopped while writing "
                    "it); that trial runs again",
                    file=sys.stderr,
                )
        return entries

    def find(self, candidate: str, phase: str, **settings) -> dict | None:
        """The logged trial of `candidate` in `phase` measured with these `settings` (a trial
        measured otherwise, e.g. at another batch size, is not reused)."""
        for entry in self.entries:
            same = all(entry.get(k) == v for k, v in settings.items())
            if entry["candidate"] == candidate and entry["phase"] == phase and same:
                return entry
        return None

    def add(self, entry: dict) -> dict:
        """Append one finished trial, on disk before this returns."""
        if self.path.exists() and self.path.stat().st_size and not self._ends_with_newline():
            entry_text = "\n" + json.dumps(entry)  # after a cut-off line: start a fresh one
        else:
            entry_text = json.dumps(entry)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(entry_text + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.entries.append(entry)
        return entry

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"
