"""Transfer data: unlabelled text the teacher labels with its soft outputs.

Two sources: (a) extra text (a list, a text file with one example per line, a Dataset, or
dataset specs: `NAME`, `NAME:SPLIT`, `NAME:SPLIT:N`, comma-separated, see data/text_specs.py); (b) Tang et al. 2019's augmentation of the training text: token
masking, word replacement and n-gram sampling. Augmentation is deterministic per seed, so
the augmented set -- and hence the teacher's outputs on it -- hits the cache on a rerun.
"""

from __future__ import annotations

import atexit
import itertools
import os
import random
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from pocketsize.errors import PocketsizeError

NO_LABEL = -100  # ignored by the hard-label loss: transfer rows learn from the teacher only


def transfer_texts(source) -> list[str]:
    """Text of the extra transfer data."""
    return list(iter_transfer_texts(source))


def iter_transfer_texts(source) -> Iterator[str]:
    """Text of the extra transfer data, one text at a time (a text file is read line by line,
    so a transfer set of millions of lines is never held in memory)."""
    if source is None:
        return
    if isinstance(source, (list, tuple)):
        yield from (str(t) for t in source if str(t).strip())
        return
    if hasattr(source, "column_names"):  # a datasets.Dataset or DatasetDict
        splits = [source[k] for k in source] if hasattr(source, "keys") else [source]
        for split in splits:
            if "text" not in split.column_names:
                raise PocketsizeError(
                    f"transfer dataset has no 'text' column (columns {split.column_names})"
                )
            for start in range(0, len(split), 10_000):
                yield from (t for t in split[start : start + 10_000]["text"] if t and t.strip())
        return
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_file() and path.suffix.lower() in ("", ".txt"):
            with open(path, encoding="utf-8") as f:
                yield from (line.strip() for line in f if line.strip())
            return
        from pocketsize.data.text_specs import specs_texts

        yield from specs_texts(str(source))
        return
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


def scratch_dir(prefix: str) -> Path:
    """A private temporary directory, removed when the process exits (the Arrow files of a
    large transfer set live there while a distillation runs)."""
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return directory


def unlabelled_dataset(texts: Iterable[str], directory: Path, chunk: int = 10_000):
    """A Dataset of text and label = NO_LABEL (the hard-label loss skips these rows), written
    to an Arrow file in `directory` a chunk at a time and memory-mapped from there: the
    datasets maps after it (tokenization) write their results beside it, not into memory."""
    import pyarrow as pa
    from datasets import Dataset, Features, Value

    features = Features({"text": Value("string"), "label": Value("int64")})
    schema = features.arrow_schema
    path = Path(directory) / "transfer.arrow"
    texts = iter(texts)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        while batch := list(itertools.islice(texts, chunk)):
            labels = pa.array([NO_LABEL] * len(batch), pa.int64())
            writer.write_batch(pa.record_batch([pa.array(batch, pa.string()), labels], schema))
    return Dataset.from_file(str(path))
