"""Causal language modelling (GPT-2 family): next-token prediction over a `text` column.

Prediction per example: the model's next-token distribution at every position of the text.
Metrics: perplexity (exp of the mean token negative log-likelihood over the split) and
next-token accuracy; the primary metric is next-token accuracy because the harness bootstraps
a per-example mean where higher is better (perplexity is reported beside it). Agreement of two
models: the share of positions where their most likely next token is the same.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from pocketsize.errors import PocketsizeError
from pocketsize.tasks.base import Task, register_task, right_padding
from pocketsize.tasks.fidelity import token_runs

DEFAULT_MAX_LENGTH = 128  # tokens per training text when none is given

# architectures (config model_type) with a causal-LM head that this toolkit has tested
KNOWN_MODEL_TYPES = ("gpt2", "gpt_neo", "gptj", "llama", "mistral", "qwen2", "opt", "bloom")


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    shifted = x - x.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


class CausalLM(Task):
    name = "causal-lm"
    output_names = ("logits",)
    primary_metric = "next_token_accuracy"
    pipeline_task = "text-generation"
    architecture_suffixes = ("LMHeadModel", "ForCausalLM")
    optimum_task = "text-generation-with-past"
    generates = True
    per_token_outputs = True
    default_losses = {"token_kl": 0.5, "token_ce": 0.5}
    hard_loss = "token_ce"
    # a full-vocabulary distribution per token, too big to cache whole: with cache=True the
    # cache keeps the top k logits per position (distill/cache.py); the default is the live teacher
    cacheable = True
    distribution_outputs = True
    agreement_meaning = "the share of positions where the variant's most likely next token is the reference's (mean over texts)"
    input_names = ("input_ids", "attention_mask")
    data_columns = ("text",)

    def auto_model_class(self):
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM

    def ort_model_class(self):
        return _ort_causal_lm_class()

    def encode(self, dataset, tokenizer, max_length: int | None = None):
        if "text" not in dataset.column_names:
            raise PocketsizeError(
                f"causal-lm needs a text column (the data has {', '.join(dataset.column_names)})"
            )
        keep = list(getattr(tokenizer, "model_input_names", ["input_ids", "attention_mask"]))

        def tok(batch):
            enc = tokenizer(batch["text"], truncation=True, max_length=max_length)
            return {k: v for k, v in enc.items() if k in keep}

        encoded = dataset.map(
            tok, batched=True, remove_columns=dataset.column_names, desc="tokenizing"
        )
        short = sum(len(ids) < 2 for ids in encoded["input_ids"])
        if short:
            raise PocketsizeError(
                f"{short} text(s) have fewer than 2 tokens, so there is no next token to "
                "predict; drop empty texts from the data"
            )
        return encoded

    def collator(self, tokenizer):
        from transformers import DataCollatorWithPadding

        if tokenizer.pad_token is None:
            # GPT-2 ships without a pad token; padded positions are masked out anyway
            tokenizer.pad_token = tokenizer.eos_token
        return DataCollatorWithPadding(right_padding(tokenizer))

    def training_collator(self, tokenizer):
        """Labels are the input ids (padding -100); the model or loss_view shifts them."""
        from transformers import DataCollatorForLanguageModeling

        self.collator(tokenizer)  # sets the pad token GPT-2 lacks
        return DataCollatorForLanguageModeling(right_padding(tokenizer), mlm=False)

    def training_max_length(self, dataset, tokenizer, model, requested: int | None):
        return requested or DEFAULT_MAX_LENGTH

    def loss_view(self, student: dict, teacher: dict, batch: dict) -> tuple[dict, dict, dict]:
        """Position i predicts token i + 1: logits drop the last position, labels the first."""
        shifted = dict(batch, labels=batch["labels"][:, 1:])
        student = dict(student, logits=student["logits"][:, :-1])
        # the logits, or their cached top k (logits.topk_values, .topk_ids, .lse)
        teacher = {
            k: v[:, :-1] if k.startswith("logits") and v is not None else v
            for k, v in teacher.items()
        }
        return student, teacher, shifted

    def predict(self, outputs: dict[str, Any], features, examples) -> list[dict]:
        """Per example: token count, summed NLL, correct next tokens, argmax next tokens."""
        logits_all = outputs["logits"]
        predictions = []
        for i, ids in enumerate(features["input_ids"]):
            n = len(ids)
            logp = _log_softmax(logits_all[i, : n - 1])
            target = np.asarray(ids[1:])
            argmax = logp.argmax(-1)
            predictions.append(
                {
                    "tokens": n - 1,
                    "nll": float(-logp[np.arange(n - 1), target].sum()),
                    "correct": int((argmax == target).sum()),
                    "next_tokens": argmax.tolist(),
                }
            )
        return predictions

    def score(self, predictions: list, examples) -> dict[str, Any]:
        tokens = sum(p["tokens"] for p in predictions)
        nll = sum(p["nll"] for p in predictions)
        return {
            "next_token_accuracy": float(np.mean(self.example_scores(predictions, examples))),
            "token_accuracy": sum(p["correct"] for p in predictions) / max(tokens, 1),
            "perplexity": float(np.exp(nll / max(tokens, 1))),
            "loss": nll / max(tokens, 1),
        }

    def example_scores(self, predictions: list, examples):
        return np.asarray([p["correct"] / max(p["tokens"], 1) for p in predictions])

    def compare_runs(self, reference: dict, variant: dict) -> dict:
        return token_runs(reference, variant)

    def agreement(self, predictions: list, reference_predictions: list):
        """Per example: the share of positions where both predict the same next token."""
        out = []
        for p, r in zip(predictions, reference_predictions):
            a, b = np.asarray(p["next_tokens"]), np.asarray(r["next_tokens"])
            out.append(float((a == b).mean()) if a.shape == b.shape and a.size else 0.0)
        return np.asarray(out)

    def show_example(self, example: dict) -> dict[str, Any]:
        return {"text": example["text"][:200]}

    def show_prediction(self, prediction: dict, label_names=None, example=None) -> list[int]:
        return prediction["next_tokens"][:32]


register_task(CausalLM.name, CausalLM)


@functools.cache
def _ort_causal_lm_class():
    from optimum.onnxruntime import ORTModelForCausalLM

    class ORTModelForCausalLMSizedPast(ORTModelForCausalLM):
        """Sizes the first, empty past key values from the graph's own past inputs.

        optimum 2.1 sizes them from the config: one head count for every layer and a head size
        of hidden_size / num_attention_heads on all but a few model types. Both are wrong for a
        Llama-layout config whose `head_dim` differs (Qwen3 checkpoints, every head-pruned
        decoder) and for layers that lost different heads (GPT-2's `config.pruned_heads`): the
        first generation step fails with "invalid dimensions for input past_key_values.0.key".
        The exported graph states each layer's head count and size."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            shapes = [self.input_shapes[name] for name in self.key_value_input_names]
            static = all(len(s) == 4 and isinstance(s[1], int) and isinstance(s[3], int)
                         for s in shapes)  # fmt: skip
            self._empty_past = [(s[1], s[3]) for s in shapes] if shapes and static else None

        def forward(self, input_ids, attention_mask=None, past_key_values=None, **kwargs):
            import torch

            if past_key_values is None and self._empty_past:
                batch = input_ids.shape[0]
                empty = [
                    torch.zeros((batch, heads, 0, size), dtype=self.dtype, device=self.device)
                    for heads, size in self._empty_past
                ]
                past_key_values = tuple(zip(empty[0::2], empty[1::2]))
            return super().forward(input_ids, attention_mask, past_key_values, **kwargs)

    return ORTModelForCausalLMSizedPast
