"""A toy sentiment task that needs no download: sentences of filler words with one or two
sentiment words, labelled by which kind they hold. The tests' tiny models and the GPU check
(benchmarks/gpu_check.py) train on it; a model that learns it has learnt the words."""

from __future__ import annotations

POSITIVE = "good great fine lovely superb moving funny brilliant charming wonderful".split()
NEGATIVE = "bad awful dull boring tedious weak messy bland clumsy terrible".split()
NEUTRAL = (
    "the a film movie story plot actor cast scene is was and but with this that it of "
    "director script ending music long short very quite rather too its in on at"
).split()
WORDS = POSITIVE + NEGATIVE + NEUTRAL
# BERT's special tokens, first in a WordPiece vocabulary built of WORDS
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
