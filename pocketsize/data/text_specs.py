"""Text drawn from a dataset named in one string: `NAME`, `NAME:SPLIT` or `NAME:SPLIT:N`.

Why: a transfer set or a vocabulary corpus taken from another dataset should come from its
training split (its test split may be scored later in the same report) and often from a
sample of it (a teacher pass over all of 20 Newsgroups costs an hour on two cores). `N` is a
sample of N texts drawn with a fixed seed, kept in the split's order, so the same spec gives
the same texts on every run and the teacher-output cache hits.
"""

from __future__ import annotations

import os

import numpy as np

from pocketsize.errors import PocketsizeError

SAMPLE_SEED = 0  # fixed: the sample is part of the spec, not of the run's seed


def parse_text_spec(spec: str) -> tuple[str, str | None, int | None]:
    """(dataset, split or None, sample size or None) of a spec; a path is taken whole."""
    spec = str(spec).strip()
    if os.path.exists(spec) or ":" not in spec or "://" in spec:
        return spec, None, None
    name, _, rest = spec.partition(":")
    split, _, count = rest.partition(":")
    if not name or not split:
        raise PocketsizeError(f"text spec {spec!r}: expected NAME, NAME:SPLIT or NAME:SPLIT:N")
    if not count:
        return name, split, None
    if not count.isdigit() or int(count) < 1:
        raise PocketsizeError(
            f"text spec {spec!r}: the sample size {count!r} must be a whole number of at "
            "least 1, e.g. 20newsgroups:train:2000"
        )
    return name, split, int(count)


def spec_texts(spec: str) -> list[str]:
    """The non-empty texts a spec names (see the module docstring)."""
    from pocketsize.data import load_texts

    name, split, count = parse_text_spec(spec)
    texts = [t for t in load_texts(name, split) if isinstance(t, str) and t.strip()]
    if count is None or count >= len(texts):
        return texts
    chosen = np.random.default_rng(SAMPLE_SEED).choice(len(texts), size=count, replace=False)
    return [texts[i] for i in sorted(chosen)]


def specs_texts(specs: str) -> list[str]:
    """The texts of comma-separated specs, in order ('vader-tweets:train,reuters-r8:train:500')."""
    if os.path.exists(str(specs)):
        return spec_texts(specs)
    return [t for part in str(specs).split(",") if part.strip() for t in spec_texts(part)]
