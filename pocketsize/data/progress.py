"""datasets' progress bars off for work that is bookkeeping, not something to watch (label
encoding, caching, a short tokenization), and back as they were afterwards."""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def quiet_progress(quiet: bool = True):
    import datasets

    was = datasets.is_progress_bar_enabled()
    if quiet:
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was:
            datasets.enable_progress_bars()
