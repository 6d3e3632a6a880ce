"""Shared fixtures: tiny random-initialised models with a real (tiny) WordPiece tokenizer.

Everything here is built from configs in a few milliseconds; no hub, no download.
"""

from __future__ import annotations

import os
import random

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

from pocketsize.data.toy_sentiment import NEGATIVE, NEUTRAL, POSITIVE, SPECIALS, WORDS  # noqa: E402

SUBWORDS = ["##s", "##ly", "##ing", "##ed", "##er"]


def make_tokenizer(path):
    """A real BertTokenizerFast over a tiny vocabulary, saved to `path`."""
    from transformers import BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    # one entry per piece: a duplicate would leave a hole in the ids
    vocab = (
        SPECIALS + WORDS + SUBWORDS + [c for c in "abcdefghijklmnopqrstuvwxyz" if c not in WORDS]
    )
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True)
    tok.save_pretrained(path)
    return tok


def tiny_bert_config(vocab_size: int, **overrides):
    from transformers import BertConfig

    kw = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
        type_vocab_size=2,
    )
    kw.update(overrides)
    return BertConfig(**kw)


def make_tiny_bert(path, task: str = "text-classification", seed: int = 0, **overrides):
    """Save a tiny random BERT (classification: 2 labels; QA: span head) with its tokenizer."""
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoModelForSequenceClassification

    tok = make_tokenizer(path)
    config = tiny_bert_config(len(tok), **overrides)
    torch.manual_seed(seed)
    if task == "extractive-qa":
        model = AutoModelForQuestionAnswering.from_config(config)
    else:
        num_labels = overrides.get("num_labels", 2)
        names = (
            ["negative", "positive"]
            if num_labels == 2
            else [f"class{i}" for i in range(num_labels)]
        )
        config.id2label = dict(enumerate(names))
        config.label2id = {n: i for i, n in config.id2label.items()}
        model = AutoModelForSequenceClassification.from_config(config)
    model.eval()
    model.save_pretrained(path)
    return path


def make_sentences(n: int, seed: int = 0):
    """Short sentences whose label (1 positive, 0 negative) follows the sentiment words."""
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n):
        label = rng.random() < 0.5
        words = rng.sample(NEUTRAL, rng.randint(2, 8))
        words += rng.sample(POSITIVE if label else NEGATIVE, rng.randint(1, 2))
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(int(label))
    return texts, labels


def make_cls_dataset(n_train=64, n_val=24, n_test=32, seed=0):
    """A DatasetDict with train/validation/test, columns text and label (ClassLabel)."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    features = Features(
        {"text": Value("string"), "label": ClassLabel(names=["negative", "positive"])}
    )
    splits = {}
    for i, (name, n) in enumerate([("train", n_train), ("validation", n_val), ("test", n_test)]):
        texts, labels = make_sentences(n, seed=seed * 10 + i)
        splits[name] = Dataset.from_dict({"text": texts, "label": labels}, features=features)
    return DatasetDict(splits)


def write_cls_files(directory, **sizes):
    """make_cls_dataset as train/validation/test .jsonl files (labels by name) in `directory`,
    the layout a user's local data directory has; returns the directory."""
    import json

    directory.mkdir(parents=True, exist_ok=True)
    for split, ds in make_cls_dataset(**sizes).items():
        rows = [
            json.dumps({"text": t, "label": ["negative", "positive"][y]})
            for t, y in zip(ds["text"], ds["label"])
        ]
        (directory / f"{split}.jsonl").write_text("\n".join(rows) + "\n")
    return directory


@pytest.fixture(scope="session", autouse=True)
def _few_threads():
    import torch

    # Tiny models gain nothing from threads, and spinning threads on a busy 2-core machine made
    # a tiny Trainer run 18x slower; tests that time things set their own thread count.
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def single_thread():
    """One torch thread for a module's tests, whatever an earlier module left set (the
    per-architecture modules use it: `pytestmark = pytest.mark.usefixtures(...)`). Two
    threads per op made a tiny Trainer step ~20x slower on a shared 2-core machine (27 s
    against 1.5 s)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def cache_in_tmp(tmp_path, monkeypatch):
    """pocketsize's teacher-output cache in the test's own directory."""
    monkeypatch.setenv("POCKETSIZE_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="session")
def tiny_cls_dir(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-cls"), "text-classification")


@pytest.fixture(scope="session")
def tiny_qa_dir(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-qa"), "extractive-qa")


@pytest.fixture(scope="session")
def tiny_cls_data():
    return make_cls_dataset()
