"""The files beside a model's weights that make a directory usable: config, tokenizer."""

from __future__ import annotations

import shutil
from pathlib import Path

# a sentence-transformers directory's module list and pooling
from pocketsize.formats.sentence_dir import SIDE_DIRS as SENTENCE_DIRS
from pocketsize.formats.sentence_dir import SIDE_FILES as SENTENCE_FILES

# The files a saved tokenizer may consist of (any tokenizer family); the vocabulary files are
# the ones after the three JSON configs.
TOKENIZER_CONFIG_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
VOCAB_FILES = (
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
)
TOKENIZER_FILES = TOKENIZER_CONFIG_FILES + VOCAB_FILES
SIDE_FILES = ("config.json", "generation_config.json", "preprocessor_config.json")


def has_tokenizer(model_dir) -> bool:
    """Whether a directory holds a complete saved tokenizer (AutoTokenizer can load it)."""
    model_dir = Path(model_dir)
    return (model_dir / "tokenizer.json").is_file() or (
        (model_dir / "tokenizer_config.json").is_file()
        and any((model_dir / f).is_file() for f in VOCAB_FILES)
    )


def copy_model_side_files(src: str | Path, dst: str | Path) -> None:
    """Copy config.json, generation config and tokenizer files (what ORTModel / pipeline need),
    and a sentence embedder's pooling (what SentenceTransformer needs)."""
    src, dst = Path(src), Path(dst)
    for name in SIDE_FILES + TOKENIZER_FILES + SENTENCE_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)
    for name in SENTENCE_DIRS:
        if (src / name).is_dir():
            shutil.copytree(src / name, dst / name, dirs_exist_ok=True)
