"""Sentence embeddings: text in, one pooled (by default normalized) vector per text out.

The model stays the plain transformers encoder (AutoModel), so truncation, the pruning
layouts, save_pretrained and the exporters treat it as any encoder; the pooling is a forward
hook the adapter attaches (`prepare_model`), which adds `sentence_embedding` to the encoder's
outputs and so travels into the ONNX graph. The pooling is kept in config.json
(`sentence_pooling`) and written as sentence-transformers' own files (modules.json,
1_Pooling, 2_Normalize), so every directory loads with `SentenceTransformer(dir)` too.

Scored on labelled text (tasks/embedding_metrics.py): cross-validated logistic-regression
accuracy is the primary metric, k-means V-measure beside it; agreement with the reference is
the share of each text's nearest neighbours the two models share.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from pocketsize.errors import PocketsizeError
from pocketsize.tasks import embedding_metrics as M
from pocketsize.tasks.base import Task, register_task
from pocketsize.tasks.classification import fit_max_length

log = logging.getLogger(__name__)

CONFIG_KEY = "sentence_pooling"  # config.json's record of the pooling
MAX_SEQ_LENGTH = 512


def pool(hidden, mask, mode: str, normalize: bool):
    """One vector per sequence from the token embeddings (padding excluded)."""
    import torch.nn.functional as F

    mask = mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "cls":
        pooled = hidden[:, 0]
    elif mode == "max":
        pooled = hidden.masked_fill(mask == 0, float("-inf")).amax(1)
    else:
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return F.normalize(pooled, p=2, dim=-1) if normalize else pooled


def _pool_outputs(module, args, kwargs, output):
    """Forward hook: the encoder's outputs plus `sentence_embedding`."""
    import torch

    hidden = output[0]
    mask = kwargs.get("attention_mask")
    if mask is None:
        mask = torch.ones(hidden.shape[:2], dtype=hidden.dtype, device=hidden.device)
    settings = getattr(module.config, CONFIG_KEY)
    pooled = pool(hidden, mask, settings["mode"], settings["normalize"])
    if isinstance(output, tuple):  # return_dict=False
        return (*output, pooled)
    output["sentence_embedding"] = pooled
    return output


def pooling_of(model):
    from pocketsize.formats.sentence_dir import Pooling

    return Pooling(**getattr(model.config, CONFIG_KEY))


class SentenceEmbedding(Task):
    name = "sentence-embedding"
    output_names = ("sentence_embedding",)
    primary_metric = "accuracy"
    pipeline_task = "feature-extraction"
    optimum_task = None  # optimum's graph stops at the token embeddings; ours pools inside
    data_columns = ("text",)
    reads_labels = True  # training reads text alone; scoring needs the labels beside it
    inferred_from_data = False  # a text column alone says causal-lm, unless asked for this
    loss_targets = ()
    default_losses = {"mse": 1.0, "similarity_mse": 1.0}
    hard_loss = None
    student_kinds = ("truncate", "config", "static")
    accepts_transfer_text = True  # more text for the teacher to embed: the more, the better
    agreement_meaning = (
        f"the share of each text's {M.NEIGHBOURS} nearest neighbours (cosine, among the test "
        "texts) that the variant finds too"
    )

    def auto_model_class(self):
        from transformers import AutoModel

        return AutoModel

    def ort_model_class(self):
        from optimum.onnxruntime import ORTModelForFeatureExtraction

        return ORTModelForFeatureExtraction

    def load_model(self, ref, labels=None, trust_module_code=False, **kw):
        """The encoder `ref` names, pooling as its sentence-transformers files (or its
        config.json) say; an encoder without either pools by mean and normalizes."""
        from pathlib import Path

        from pocketsize.assets import resolve_model

        if isinstance(ref, (str, Path)):
            ref = resolve_model(ref)
        model = super().load_model(ref, trust_module_code=trust_module_code, **kw)
        return self.prepare_model(model, ref)

    def prepare_model(self, model, source=None):
        """Attach the pooling hook (once) to a transformers encoder. The pooling is the one
        `source`'s sentence-transformers files declare, else the one config.json records, else
        mean, normalized. Any other module (the static student) returns `sentence_embedding`
        itself and is taken as it is."""
        from pathlib import Path

        from transformers import PreTrainedModel

        from pocketsize.formats.sentence_dir import Pooling, read_pooling

        if not isinstance(model, PreTrainedModel):
            return model
        config = model.config
        declared = read_pooling(source) if isinstance(source, (str, Path)) else None
        if declared is not None:
            setattr(config, CONFIG_KEY, declared.as_dict())
        if getattr(config, CONFIG_KEY, None) is None:
            log.info("no pooling recorded for the model: mean pooling, normalized")
            setattr(config, CONFIG_KEY, Pooling().as_dict())
        if not getattr(model, "_pocketsize_pools", False):
            model.register_forward_hook(_pool_outputs, with_kwargs=True)
            model._pocketsize_pools = True
        return model

    def write_model_files(self, model, directory) -> None:
        from pocketsize.formats.sentence_dir import write_sentence_files

        config = model.config
        positions = getattr(config, "max_position_embeddings", MAX_SEQ_LENGTH)
        width = config.hidden_size
        write_sentence_files(directory, pooling_of(model), width, min(positions, MAX_SEQ_LENGTH))

    def self_supervised_loss(self, outputs):
        """Each text must stay nearest to itself among the batch's texts (an in-batch
        contrastive loss at temperature 0.05): the parts that keep texts apart rank high."""
        import torch
        import torch.nn.functional as F

        e = F.normalize(outputs["sentence_embedding"].float(), dim=-1)
        return F.cross_entropy(e @ e.T / 0.05, torch.arange(len(e), device=e.device))

    def complete_graph(self, onnx_dir, source_dir) -> None:
        """Append the source's pooling to each graph that stops at the token embeddings (what
        optimum and sentence-transformers export), as sentence-transformers runs it after."""
        from pathlib import Path

        from pocketsize.formats.pooling_graph import append_pooling, has_pooling
        from pocketsize.formats.sentence_dir import Pooling, read_pooling

        pooling = read_pooling(source_dir) or Pooling()
        for graph in sorted(Path(onnx_dir).glob("*.onnx")):
            if not has_pooling(graph):
                append_pooling(graph, pooling.mode, pooling.normalize)

    def export_output_axes(self) -> dict[str, dict]:
        """The pooled embedding, and the token embeddings under the name that optimum's
        ORTModelForFeatureExtraction (SentenceTransformer's ONNX backend) and transformers.js's
        feature-extraction pipeline read."""
        batch = {0: "batch_size"}
        return {"sentence_embedding": batch, "last_hidden_state": {**batch, 1: "sequence_length"}}

    def encode(self, dataset, tokenizer, max_length: int | None = None):
        def tok(batch):
            return tokenizer(batch["text"], truncation=True, max_length=max_length)

        return dataset.map(
            tok, batched=True, remove_columns=dataset.column_names, desc="tokenizing"
        )

    def training_max_length(self, dataset, tokenizer, model, requested: int | None):
        return requested or fit_max_length(dataset["text"], tokenizer, model)

    def predict(self, outputs: dict[str, Any], features, examples) -> list:
        return list(np.asarray(outputs["sentence_embedding"], dtype=np.float32))

    def unscorable(self, examples) -> str | None:
        if "label" not in examples.column_names:
            return f"{self.name} is scored on labelled text (a label column beside the text)"
        return None

    def _labels(self, examples):
        why = self.unscorable(examples)
        if why:
            raise PocketsizeError(
                f"{why}; evaluate on a labelled split, e.g. rt-polarity's test split"
            )
        return examples["label"]

    def _hits(self, predictions: list, examples):
        """The cross-validated regression's hits, fitted once per set of embeddings: the harness
        asks for them through score() and metric_parts(), the reference's for every variant."""
        labels = self._labels(examples)
        key = M.fingerprint(predictions, labels)
        cache = self.__dict__.setdefault("_hits_cache", {})
        if key not in cache:
            if len(cache) >= 16:
                cache.clear()
            cache[key] = M.classification_hits(predictions, labels)
        return cache[key]

    def score(self, predictions: list, examples) -> dict[str, Any]:
        return {
            "accuracy": float(self._hits(predictions, examples).mean()),
            "v_measure": M.clustering_v_measure(predictions, self._labels(examples)),
        }

    def example_scores(self, predictions: list, examples):
        return self._hits(predictions, examples)

    def agreement(self, predictions: list, reference_predictions: list):
        return M.neighbour_overlap(predictions, reference_predictions)

    def compare_runs(self, reference: dict, variant: dict) -> dict:
        mine, theirs = variant["predictions"], reference["predictions"]
        cosine = M.cosine_to_reference(mine, theirs)
        return {
            "similarity_spearman": M.similarity_spearman(mine, theirs),
            "mean_cosine": None if cosine is None else float(cosine.mean()),
        }

    def show_prediction(self, prediction, label_names=None, example=None):
        head = ", ".join(f"{v:.3f}" for v in np.asarray(prediction)[:3])
        return f"[{head}, ...] ({len(prediction)} dims)"


register_task(SentenceEmbedding.name, SentenceEmbedding)
