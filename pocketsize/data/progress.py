"""datasets' progress bars off for work that is bookkeeping, not something to watch (label
encoding, caching, a short tokenization), and back as they were afterwards."""

from __future__ import annotations

import contextlib
import functools
import inspect


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


def bars_follow_progress(fn):
    """`fn`'s own `progress=False` also silences datasets' bars (tokenizing, length columns)
    while it runs, as a caller who turned progress off expects."""
    default = inspect.signature(fn).parameters["progress"].default

    @functools.wraps(fn)
    def run(*args, **kwargs):
        with quiet_progress(not kwargs.get("progress", default)):
            return fn(*args, **kwargs)

    return run
