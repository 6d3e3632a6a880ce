"""Transfer data: unlabelled text the teacher labels with its soft outputs.

Two sources: (a) extra text (a list, a text file with one example per line, a Dataset or a
catalogue dataset name); (b) Tang et al. 2019's augmentation of the training text: token
masking, word replacement and n-gram sampling. Augmentation is deterministic per seed, so
the augmented set -- and hence the teacher's outputs on it -- hits the cache on a rerun.
"""

from __future__ import annotations

import itertools
import os
import random
from collections import Counter
from pathlib import Path

from pocketsize.errors import PocketsizeError

NO_LABEL = -100  # ignored by the hard-label loss: transfer rows learn from the teacher only


def transfer_texts(source) -> list[str]:
    """Text of the extra transfer data."""
    if source is None:
        return []
    if isinstance(source, (list, tuple)):
        return [str(t) for t in source if str(t).strip()]
    if hasattr(source, "column_names"):  # a datasets.Dataset or DatasetDict
        splits = [source[k] for k in source] if hasattr(source, "keys") else [source]
        texts = []
        for split in splits:
            column = "text" if "text" in split.column_names else None
            if column is None:
                raise PocketsizeError(
                    f"transfer dataset has no 'text' column (columns {split.column_names})"
                )
            texts += [t for t in split[column] if t and t.strip()]
        return texts
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_file() and path.suffix.lower() in ("", ".txt"):
            lines = path.read_text(encoding="utf-8").splitlines()
            return [line.strip() for line in lines if line.strip()]
        try:
            from pocketsize.data import load_texts
        except ImportError as e:
            raise PocketsizeError(
                f"transfer source {source!r} is not a .txt file, and pocketsize.data is missing"
            ) from e
        return [t for t in load_texts(str(source)) if t and t.strip()]
    raise PocketsizeError(
        f"transfer data must be a list of strings, a text file, a Dataset or a dataset name, "
        f"not {type(source).__name__}"
    )


def augment_texts(
    texts: list[str],
    copies: int,
    seed: int = 0,
    p_mask: float = 0.1,
    p_replace: float = 0.1,
    p_ngram: float = 0.25,
    max_n: int = 5,
    mask_token: str = "[MASK]",
) -> list[str]:
    """Tang et al. 2019 augmentation: `copies` new variants of each text.

    Per word: with p_mask it becomes the mask token, else with p_replace a word drawn from
    the corpus (by frequency: the paper replaces with a word of the same part of speech; no
    tagger ships here, so frequency stands in). Then with p_ngram the variant is cut to a
    random n-gram (n in 1..max_n). Variants equal to their source or to each other are
    dropped. The same texts and seed always give the same list.
    """
    if copies <= 0:
        return []
    rng = random.Random(seed)
    counts = Counter(w for t in texts for w in t.split())
    vocab = list(counts)
    cum = list(itertools.accumulate(counts.values()))
    out, seen = [], set(texts)
    for text in texts:
        words = text.split()
        made = 0
        for _ in range(copies * 3 if words else 0):  # spare tries: duplicates are dropped
            new = []
            for w in words:
                r = rng.random()
                if r < p_mask:
                    new.append(mask_token)
                elif r < p_mask + p_replace:
                    new.append(rng.choices(vocab, cum_weights=cum)[0])
                else:
                    new.append(w)
            if rng.random() < p_ngram and len(new) > 1:
                n = rng.randint(1, min(max_n, len(new)))
                start = rng.randint(0, len(new) - n)
                new = new[start : start + n]
            variant = " ".join(new)
            if variant not in seen:
                seen.add(variant)
                out.append(variant)
                made += 1
                if made == copies:
                    break
    return out


def unlabelled_dataset(texts: list[str], label_feature=None):
    """A Dataset with text and label = NO_LABEL (the hard-label loss skips these rows)."""
    from datasets import Dataset, Features, Value

    features = Features({"text": Value("string"), "label": Value("int64")})
    return Dataset.from_dict({"text": texts, "label": [NO_LABEL] * len(texts)}, features=features)
