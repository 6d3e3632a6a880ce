"""The passes of `prune`, in the order they run: each a small class that says when it is
enabled, checks what it needs before any slow work, and applies itself to the shared state,
writing its part of stage.json.

    depth -> heads -> FFN neurons -> hidden width -> recovery -> sparsity -> vocabulary

Heads and FFN neurons are scored together, once, before either is removed. Sparsity comes after
recovery (training would regrow the zeros) and the vocabulary trim last, because it renumbers
the tokenizer and the teacher used in recovery needs the original ids. A new pass is one class
here, added to PASSES, and its options in PruneConfig.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pocketsize import processes
from pocketsize.errors import PocketsizeError
from pocketsize.formats.hf_load import load_model
from pocketsize.prune import ffn as ffn_mod
from pocketsize.prune import importance, magnitude
from pocketsize.prune import vocab as vocab_mod
from pocketsize.prune import width as width_mod
from pocketsize.prune.config import PruneConfig


@dataclass
class Pruning:
    """One prune() call's shared state: the model being cut and what the passes record."""

    cfg: PruneConfig
    model: Any
    tokenizer: Any
    task: Any
    data: Any
    layout: Any = None  # where the model keeps its layers, heads, neurons (prune/layouts/)
    split: Any = None  # the scoring examples
    work: Path | None = None  # a temporary directory every process sees
    record: dict = field(default_factory=dict)
    new_tokenizer_dir: Path | None = None  # the vocabulary pass's renumbered tokenizer
    _scores: Any = None

    def scoring_batches(self):
        return importance.scoring_batches(
            self.model, self.split, self.tokenizer, self.task, self.cfg.batch_size,
            self.cfg.max_length,
        )  # fmt: skip

    def gradient_scores(self):
        """Head and activation-FFN scores, computed once on the model before either pass cuts."""
        if self._scores is None:
            cfg = self.cfg
            self._scores = importance.gradient_scores(
                self.layout, self.split, self.tokenizer, self.task,
                heads=bool(cfg.heads), ffn=bool(cfg.ffn and cfg.ffn_score == "activation"),
                batch_size=cfg.batch_size, max_length=cfg.max_length,
            )  # fmt: skip
        return self._scores


class Pass:
    """enabled(cfg) -> check(run) before the slow work -> apply(run)."""

    name: ClassVar[str]
    every_process: ClassVar[bool] = True  # False: the main process alone (after training)

    def enabled(self, cfg: PruneConfig) -> bool:
        return bool(getattr(cfg, self.name, None))

    def check(self, run: Pruning) -> None:
        """Refuse what cannot work, before any scoring."""

    def apply(self, run: Pruning) -> None:
        raise NotImplementedError


class Depth(Pass):
    name = "depth"

    def check(self, run: Pruning) -> None:
        run.layout.check_depth(run.cfg.depth)

    def apply(self, run: Pruning) -> None:
        layout, fraction = run.layout, run.cfg.depth
        influence = importance.block_influence(layout, run.scoring_batches())
        gone = layout.plan_depth(influence, layout.check_depth(fraction))
        keep = [i for i in range(len(influence)) if i not in gone]
        layout.remove_layers(keep)
        run.record["depth"] = {
            "fraction_removed": fraction,
            "score": "block influence: 1 - cos(input, output) of each layer's hidden states "
            "(Men et al. 2024)",
            "removed_layers": gone,
            "kept_layers": keep,
            "importance": [round(float(x), 6) for x in influence],
        }


class Heads(Pass):
    name = "heads"

    def check(self, run: Pruning) -> None:
        run.layout.check_heads(run.cfg.heads, run.cfg.scope, run.cfg.kv_groups)
        run.layout.check_heads_and_width(run.cfg.heads, run.cfg.width)

    def apply(self, run: Pruning) -> None:
        cfg, layout, scores = run.cfg, run.layout, run.gradient_scores()
        present_before = [layout.current_heads(i) for i in range(len(layout.layers()))]
        plan = layout.plan_heads(scores.heads, cfg.heads, cfg.scope, cfg.kv_groups)
        layout.remove_heads(plan)
        run.record["heads"] = {
            "fraction_removed": cfg.heads,
            "scope": cfg.scope,
            "kv_groups": cfg.kv_groups,
            "score": "mask gradient (Michel et al. 2019)",
            "scored_on_examples": scores.examples,
            "scoring_loss": scores.loss,
            "removed": {str(k): v for k, v in plan.items()},
            "kept_per_layer": [len(layout.current_heads(i)) for i in range(len(present_before))],
            "importance": {
                str(i): dict(zip(map(str, present_before[i]), map(float, s)))
                for i, s in enumerate(scores.heads)
            },
        }


class Ffn(Pass):
    name = "ffn"

    def apply(self, run: Pruning) -> None:
        cfg, layout = run.cfg, run.layout
        by_activation = cfg.ffn_score == "activation"
        scores = run.gradient_scores() if by_activation else None
        ffn_scores = scores.ffn if by_activation else importance.magnitude_ffn_scores(layout)
        size_before = layout.ffn_size()
        plan = ffn_mod.plan_ffn_removal(layout, ffn_scores, cfg.ffn)
        layout.remove_neurons(plan)
        run.record["ffn"] = {
            "fraction_removed": cfg.ffn,
            "score": cfg.ffn_score,
            "scoring_loss": scores.loss if by_activation else None,
            "intermediate_size_before": size_before,
            "intermediate_size_after": layout.ffn_size(),
            "removed": {str(k): v for k, v in plan.items()},
        }


class Width(Pass):
    name = "width"

    def check(self, run: Pruning) -> None:
        run.layout.check_heads_and_width(run.cfg.heads, run.cfg.width)
        width_mod.plan_width(run.model, run.cfg.width, _heads_kept_at_most(run))

    def apply(self, run: Pruning) -> None:
        import torch

        model, fraction = run.model, run.cfg.width
        before = model.config.hidden_size
        new_width = width_mod.plan_width(model, fraction)
        batches = run.scoring_batches()
        plan = width_mod.head_layers(model, batches[0])
        channels, head_scores = importance.width_scores(model, batches, plan)

        def best(scores):
            return sorted(torch.argsort(scores, descending=True)[:new_width].tolist())

        keep = best(channels)
        head_keeps = {n: best(s) for n, s in head_scores.items()}
        width_mod.remove_channels(model, keep, plan, head_keeps)
        run.record["width"] = {
            "fraction_removed": fraction,
            "score": "LayerNorm output RMS summed over LayerNorms (Minitron)",
            "hidden_size_before": before,
            "hidden_size_after": model.config.hidden_size,
            "num_attention_heads": model.config.num_attention_heads,
            "kept_channels": keep,
            "head_layers": [
                {"name": h.name, "reads": h.reads, "kept_outputs": head_keeps.get(h.name)}
                for h in plan
            ],
        }


def _heads_kept_at_most(run: Pruning) -> int:
    """The most heads any layer will keep once heads= is applied (global scope: all of them)."""
    layout, heads = run.layout, run.cfg.heads
    present = [len(layout.current_heads(i)) for i in range(len(layout.layers()))]
    if heads and run.cfg.scope == "layer":
        return max(n - int(round(heads * n)) for n in present)
    return max(present)


class Recovery(Pass):
    """A short distillation from the unpruned model (or recover_teacher) into the cut one;
    every process of a launched job trains its share."""

    name = "recover"

    def __init__(self):
        self.arguments = None  # distill's config and run controls, checked up front
        self.teacher = None

    def check(self, run: Pruning) -> None:
        from pocketsize.prune.recovery import recovery_arguments

        self.arguments = recovery_arguments(run.cfg.recover_options, run.cfg.seed)

    def keep_teacher(self, run: Pruning, load_teacher) -> None:
        """The model recovery distils from, taken before any pass cuts."""
        import copy

        given = run.cfg.recover_teacher
        if given is None:
            self.teacher = copy.deepcopy(run.model)  # a base encoder's fresh head is only here
        else:
            self.teacher = given if hasattr(given, "state_dict") else load_teacher(given)

    def apply(self, run: Pruning) -> None:
        from pocketsize.prune.recovery import recover

        student_dir = run.work / "pruned"
        if processes.is_main():
            run.model.save_pretrained(student_dir)
            run.tokenizer.save_pretrained(student_dir)
        processes.wait()
        # a teacher given by reference (e.g. MPNet for a MiniLM student) reads its own token
        # ids: distill loads its tokenizer from its directory (None); the unpruned model, or a
        # module passed in, reads with the pruned model's
        given = run.cfg.recover_teacher
        by_reference = given is not None and not hasattr(given, "state_dict")
        teacher_tokenizer = None if by_reference else run.tokenizer
        result = recover(
            self.teacher, student_dir, run.data, run.work, self.arguments, teacher_tokenizer,
            run.task.name,
        )  # fmt: skip
        if not processes.is_main():
            return
        # the student pocketsize just wrote: no code of its own to trust
        model = load_model(run.task.auto_model_class(), result, use_safetensors=True)
        run.model = run.task.prepare_model(model, result)
        run.model.eval()
        given = run.cfg.recover_teacher
        run.record["recovery"] = {
            "method": "pocketsize.distill",
            "options": run.cfg.recover_options or {},
            "teacher": "the unpruned model"
            if given is None
            else str(getattr(given, "name_or_path", given)),
            "seed": self.arguments["config"].seed,
            **_training_record(result),
        }


def _training_record(result: Path) -> dict:
    """What the recovery's own distillation record says of its training: steps, time, the
    logged losses, the cache and the validation, so the pruned model's record shows how it was
    recovered (the distillation's directory is a temporary one)."""
    import json

    record = json.loads((Path(result) / "stage.json").read_text(encoding="utf-8"))
    keys = ("steps", "train_loss", "train_runtime_s", "wall_time_s", "cache", "validation",
            "validation_per_epoch", "losses")  # fmt: skip
    return {k: record[k] for k in keys if k in record}


class Sparsity(Pass):
    name = "sparsity"
    every_process = False

    def apply(self, run: Pruning) -> None:
        run.record["sparsity"] = magnitude.magnitude_prune(
            run.model, run.cfg.sparsity, run.cfg.sparsity_scope
        )


class Vocab(Pass):
    """Keep the pieces the data's text (and extra text, corpora, kept tokens) uses."""

    name = "vocab"
    every_process = False

    def check(self, run: Pruning) -> None:
        cfg = run.cfg
        if run.task.distribution_outputs:
            raise PocketsizeError(
                f"vocabulary trimming would take tokens away from what a {run.task.name} model "
                "predicts (its output is a distribution over the vocabulary); drop vocab=True"
            )
        vocab_mod.require_fast_tokenizer(run.tokenizer)
        if getattr(run.model.config, vocab_mod.CONFIG_KEY, None):
            raise PocketsizeError("this model's vocabulary is already trimmed; drop vocab=True")
        self.extra_texts = vocab_mod.read_lines(cfg.vocab_extra_text)
        self.extra_texts += vocab_mod.corpus_texts([str(c) for c in cfg.vocab_corpora])
        self.keep_tokens = vocab_mod.read_lines(cfg.vocab_keep)

    def apply(self, run: Pruning) -> None:
        from pocketsize.assets import load_tokenizer

        cfg, tokenizer, model = run.cfg, run.tokenizer, run.model
        texts = vocab_mod.texts_of(run.data, cfg.vocab_splits) + self.extra_texts
        if not texts:
            raise PocketsizeError(
                f"no text found in splits {list(cfg.vocab_splits)} for vocabulary trimming"
            )
        keep = vocab_mod.used_ids(tokenizer, texts, self.keep_tokens, cfg.vocab_min_count)
        original_size = model.config.vocab_size
        old2new, kept = vocab_mod.plan_vocab(tokenizer, keep, original_size)
        run.new_tokenizer_dir = run.work / "tokenizer"
        vocab_mod.rewrite_tokenizer(tokenizer, old2new, run.new_tokenizer_dir)
        new_tokenizer = load_tokenizer(run.new_tokenizer_dir)
        vocab_mod.check_same_pieces(tokenizer, new_tokenizer, old2new, texts[:2000])
        vocab_mod.shrink_embeddings(model, old2new, kept, tokenizer.unk_token_id)
        run.record["vocab"] = {
            "fit_on": list(cfg.vocab_splits),
            "extra_texts": len(self.extra_texts),
            "corpora": [str(c) for c in cfg.vocab_corpora],
            "keep_tokens": len(self.keep_tokens),
            "min_count": cfg.vocab_min_count,
            "original_vocab_size": original_size,
            "kept_vocab_size": kept,
            "embedding_shrink": round(original_size / kept, 3),
            "unk_token_id": getattr(model.config, vocab_mod.CONFIG_KEY)["unk_token_id"],
            "how": "tokenizer ids renumbered (kept pieces first); ids >= kept_vocab_size "
            "read the [UNK] row (pocketsize_vocab_trim in config.json)",
        }


# The passes in the order they run. A new pass: a Pass subclass whose `name` is a field of
# PruneConfig (or of a subclass of it), added here or with register_pass.
PASSES: list[type[Pass]] = [Depth, Heads, Ffn, Width, Recovery, Sparsity, Vocab]


def register_pass(cls: type[Pass], before: str | None = None) -> None:
    """Run `cls` before the pass named `before` (default: last)."""
    names = [p.name for p in PASSES]
    PASSES.insert(names.index(before) if before in names else len(PASSES), cls)


def passes_for(cfg: PruneConfig) -> list[Pass]:
    """The enabled passes, in the order they run (fresh objects: a pass keeps per-call state)."""
    return [p for p in (cls() for cls in PASSES) if p.enabled(cfg)]
