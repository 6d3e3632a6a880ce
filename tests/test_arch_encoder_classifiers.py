"""XLNet, ERNIE, DistilBERT, ModernBERT and DeBERTa-v3 classification on tiny random configs
through every stage (optimum has no exporter for XLNet or ERNIE: their export takes the
torch.onnx fallback)."""

from __future__ import annotations

import pytest
import torch
from _arch_encoders import classifier_through_every_stage
from _arch_helpers import one_thread
from conftest import make_cls_dataset


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = one_thread()
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("POCKETSIZE_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("arch", ["xlnet", "ernie", "distilbert", "modernbert", "deberta-v2"])
def test_classifier_finetune_distill_export_quantize_eval(arch, tmp_path):
    classifier_through_every_stage(arch, tmp_path, make_cls_dataset(n_train=96))
