"""Shared fixtures over tests/zoo.py's tiny random-initialised models and data."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

# The builders live in tests/zoo.py; they are imported here for the fixtures below, and for the
# test modules that still import them from conftest.
from zoo import (  # noqa: E402, F401
    make_cls_dataset,
    make_sentences,
    make_tiny_bert,
    make_tokenizer,
    tiny_bert_config,
    write_cls_files,
)

from pocketsize.data.toy_sentiment import NEGATIVE, NEUTRAL, POSITIVE  # noqa: E402, F401


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
