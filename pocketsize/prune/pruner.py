"""`prune(model, data, heads=..., ffn=..., vocab=..., sparsity=...)`: one call, one directory.

Order of operations (each optional):
  score and drop whole layers (depth) -> score heads + FFN neurons -> remove heads -> remove
  FFN neurons -> hidden width -> recovery distillation from the unpruned model -> magnitude
  sparsity -> vocabulary trim.
Where an architecture keeps its layers, heads and neurons is its layout (prune/layouts/).
Sparsity comes after recovery (training would regrow the zeros) and the vocabulary trim last,
because it renumbers the tokenizer and the teacher used in recovery needs the original ids.
"""

from __future__ import annotations

import copy
import os
import tempfile
import time
from pathlib import Path

from pocketsize import processes
from pocketsize.errors import PocketsizeError
from pocketsize.fsutil import atomic_dir, check_output_dir, dir_size_bytes, write_json
from pocketsize.prune import ffn as ffn_mod
from pocketsize.prune import heads as heads_mod
from pocketsize.prune import importance, magnitude
from pocketsize.prune import vocab as vocab_mod
from pocketsize.prune import width as width_mod
from pocketsize.prune.layouts import layout_for

WEIGHT_FILES = ("*.safetensors", "*.bin")


def _load_data(data):
    """A dataset reference (catalogue name, files, save_to_disk directory) -> DatasetDict."""
    if data is None or not isinstance(data, (str, os.PathLike)):
        return data
    from pocketsize.data import load_dataset

    return load_dataset(str(data))


def _resolve(ref) -> str:
    from pocketsize.assets import resolve_model

    return str(resolve_model(str(ref)))


def _task_for(task, data, model_dir=None):
    from pocketsize.tasks import get_task, task_for_dataset, task_of_model

    if task is not None:
        return get_task(task)
    if data is not None:
        return task_for_dataset(data)
    return (model_dir and task_of_model(model_dir)) or get_task("text-classification")


def _load_model(path, task, data):
    """The model for `task` (with its [UNK] clamp, if vocabulary-trimmed); a base encoder gets a
    fresh head named after the data's labels."""
    split = data["train"] if data is not None and hasattr(data, "keys") else data
    labels = task.labels(split) if split is not None else None
    return task.load_model(path, labels=labels)


def load_pruned(path, task=None):
    """Load a pocketsize-pruned directory with the standard Auto class plus the [UNK] clamp."""
    path = _resolve(path)
    return _task_for(task, None, path).load_model(path)


def _weights_size(model, source_dir) -> int:
    if source_dir is not None and dir_size_bytes(source_dir, WEIGHT_FILES):
        return dir_size_bytes(source_dir, WEIGHT_FILES)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        return dir_size_bytes(tmp, WEIGHT_FILES)


def prune(
    model,
    data=None,
    *,
    heads: float | None = None,
    ffn: float | None = None,
    width: float | None = None,
    depth: float | None = None,
    kv_groups: bool = False,
    vocab: bool = False,
    sparsity: float | None = None,
    scope: str = "layer",
    ffn_score: str = "activation",
    sparsity_scope: str = "global",
    vocab_extra_text=None,
    vocab_corpora=(),
    vocab_keep=None,
    vocab_splits=("train", "validation"),
    recover: bool = False,
    recover_options: dict | None = None,
    recover_teacher=None,
    task=None,
    tokenizer=None,
    out=None,
    overwrite: bool = False,
    max_examples: int = 1024,
    min_examples: int = importance.MIN_SCORING_EXAMPLES,
    batch_size: int = 16,
    max_length: int | None = None,
    seed: int = 0,
    verbose: bool = True,
) -> Path:
    """Prune `model` (directory, catalogue name or in-memory model) and write it to `out`.

    heads / ffn: fraction of attention heads / FFN neurons to REMOVE, in (0, 1). On
      grouped-query decoders heads= removes that fraction of each group's query heads, or with
      kv_groups=True that fraction of whole key/value groups (prune/layouts/decoders.py).
    depth: fraction of layers to remove (decoders: pre-norm blocks), the ones that change the
      hidden states least (block influence); done first, so heads and neurons are then scored
      on the shallower model.
    width: fraction of hidden channels to remove (prune/width.py), rounded to whole heads;
      every layer must keep at most width / head_size heads, so it usually comes with heads=.
    scope: heads removed per layer ("layer") or ranked over the whole model ("global").
    ffn_score: "activation" (activation x gradient on task data) or "magnitude" (weights).
    vocab: keep only the pieces the `vocab_splits` text (+ vocab_extra_text, a file or list of
    texts, + the text of every dataset in vocab_corpora, + vocab_keep, a file or list of tokens)
    uses. Open-class words (the names a tagger must find) are often absent from a small
    training set: a broad corpus keeps their pieces out of [UNK].
    sparsity: unstructured magnitude sparsity of the encoder's Linear weights (no speed-up).
    recover_teacher: what recovery distils from (a model directory, catalogue name or model;
    default the unpruned model). The original teacher aims the pruned model back at the model
    it must agree with, rather than at an intermediate student.
    recover: distil from the unpruned model after removing heads/neurons (pocketsize.distill;
    recover_options are passed to it).
    Returns the output directory (a save_pretrained directory plus pruning.json).
    """
    started = time.time()
    heads = heads_mod.check_fraction("heads", heads)
    ffn = heads_mod.check_fraction("ffn", ffn)
    sparsity = heads_mod.check_fraction("sparsity", sparsity)
    width = heads_mod.check_fraction("width", width)
    depth = heads_mod.check_fraction("depth", depth)
    if not (heads or ffn or width or depth or vocab or sparsity):
        raise PocketsizeError(
            "nothing to prune; give heads=, ffn=, width=, depth=, vocab=True and/or sparsity="
        )
    if kv_groups and not heads:
        raise PocketsizeError("kv_groups=True says how heads= removes heads; give heads= too")
    if ffn_score not in ("activation", "magnitude"):
        raise PocketsizeError(
            f"ffn_score={ffn_score!r} is unknown; use 'activation' or 'magnitude'"
        )
    if scope not in ("layer", "global") or sparsity_scope not in ("layer", "global"):
        raise PocketsizeError("scope and sparsity_scope must be 'layer' or 'global'")
    if recover_teacher is not None and not recover:
        raise PocketsizeError(
            "recover_teacher= needs recover=True (it is what recovery distils from)"
        )
    structured = bool(heads or ffn or width or depth)
    if recover and not structured:
        raise PocketsizeError(
            "recover=True only applies after removing layers, heads, FFN neurons or hidden channels"
        )

    source_dir = None if hasattr(model, "state_dict") else _resolve(model)
    if out is None:  # next to a local model; in the working directory for a catalogue name
        if source_dir is None:
            made = tempfile.mkdtemp(prefix="pocketsize-pruned-") if processes.is_main() else None
            out = processes.broadcast(made)  # one output for all processes
        elif Path(model).is_dir():
            out = f"{str(model).rstrip('/')}-pruned"
        else:
            out = Path.cwd() / f"{Path(str(model)).name}-pruned"
    out = check_output_dir(out, overwrite)

    needs_data = bool(
        heads or width or depth or vocab or recover or (ffn and ffn_score == "activation")
    )
    data = _load_data(data)
    if needs_data and data is None:
        raise PocketsizeError(
            "this pruning needs task data (head/neuron importance, vocabulary, recovery); "
            "give data= (--data NAME)"
        )
    extra_texts = vocab_mod.read_lines(vocab_extra_text) if vocab else []
    corpora = [vocab_corpora] if isinstance(vocab_corpora, (str, Path)) else vocab_corpora
    corpora = [str(c) for c in corpora or ()]
    extra_texts += vocab_mod.corpus_texts(corpora) if vocab else []
    keep_tokens = vocab_mod.read_lines(vocab_keep) if vocab else []

    from pocketsize.assets import load_tokenizer
    from pocketsize.formats.checkpoint import check_tokenizer_fits

    if source_dir is not None:
        task = _task_for(task, data, source_dir)
        model = _load_model(source_dir, task, data)
        tokenizer = tokenizer or load_tokenizer(source_dir)
    else:
        task = _task_for(task, data, model.config.to_dict())
        model = copy.deepcopy(model)  # the caller's model stays unpruned
        if tokenizer is None:
            raise PocketsizeError("an in-memory model needs its tokenizer: pass tokenizer=")
    model.eval()
    check_tokenizer_fits(model, tokenizer, source_dir or "the model")

    # every check that can fail comes before the slow work
    layout = layout_for(model) if structured else None
    if depth:
        layout.check_depth(depth)
    if heads:
        layout.check_heads(heads, scope, kv_groups)
    if structured:
        layout.check_heads_and_width(heads, width)
    if width:
        width_mod.plan_width(model, width, _heads_kept_at_most(layout, heads, scope))
    if vocab and task.distribution_outputs:
        raise PocketsizeError(
            f"vocabulary trimming would take tokens away from what a {task.name} model "
            "predicts (its output is a distribution over the vocabulary); drop vocab=True"
        )
    if vocab:
        vocab_mod.require_fast_tokenizer(tokenizer)
        if getattr(model.config, vocab_mod.CONFIG_KEY, None):
            raise PocketsizeError("this model's vocabulary is already trimmed; drop vocab=True")
    recovery = None
    if recover:
        from pocketsize.prune.recovery import recovery_arguments

        recovery = recovery_arguments(recover_options)  # checked before the scoring work
    # scoring and slicing on this process's GPU where there is one (the slicing keeps each
    # weight's device and dtype); the result is saved from there
    device = processes.device()
    model.to(device)
    split = None
    if heads or width or depth or (ffn and ffn_score == "activation"):
        split = importance.scoring_split(data, min_examples)
        split = split.shuffle(seed=seed).select(range(min(len(split), max_examples)))

    # the unpruned model in memory: a base encoder's fresh head exists only here
    teacher = None
    if recover and recover_teacher is not None:
        teacher = (
            recover_teacher
            if hasattr(recover_teacher, "state_dict")
            else _load_model(_resolve(recover_teacher), task, data)
        )
    elif recover:
        teacher = copy.deepcopy(model)
    record: dict = {"stage": "prune", "source": str(source_dir or "<in-memory model>")}
    record["task"] = task.name
    record["device"] = str(device)
    params_before = count_parameters(model)
    bytes_before = _weights_size(model, source_dir)

    if depth:
        record["depth"] = _remove_depth(
            layout, depth, split, tokenizer, task, batch_size, max_length
        )
    scores = None
    if heads or (ffn and ffn_score == "activation"):
        scores = importance.gradient_scores(
            layout,
            split,
            tokenizer,
            task,
            heads=bool(heads),
            ffn=bool(ffn and ffn_score == "activation"),
            batch_size=batch_size,
            max_length=max_length,
        )
    if heads:
        present_before = [layout.current_heads(i) for i in range(len(layout.layers()))]
        plan = layout.plan_heads(scores.heads, heads, scope, kv_groups)
        layout.remove_heads(plan)
        record["heads"] = {
            "fraction_removed": heads,
            "scope": scope,
            "kv_groups": kv_groups,
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
    if ffn:
        ffn_scores = (
            scores.ffn if ffn_score == "activation" else importance.magnitude_ffn_scores(layout)
        )
        size_before = layout.ffn_size()
        plan = ffn_mod.plan_ffn_removal(layout, ffn_scores, ffn)
        layout.remove_neurons(plan)
        record["ffn"] = {
            "fraction_removed": ffn,
            "score": ffn_score,
            "scoring_loss": scores.loss if ffn_score == "activation" else None,
            "intermediate_size_before": size_before,
            "intermediate_size_after": layout.ffn_size(),
            "removed": {str(k): v for k, v in plan.items()},
        }

    if width:
        record["width"] = _remove_width(
            model, width, split, tokenizer, task, batch_size, max_length
        )

    # Under torchrun every process prunes alike (the same scores from the same data), trains
    # its share of the recovery, and leaves the rest to the main process.
    with processes.shared_temp_dir("pocketsize-prune-") as work:
        if recover:
            from pocketsize.prune.recovery import recover as run_recovery

            student_dir = work / "pruned"
            if processes.is_main():
                model.save_pretrained(student_dir)
                tokenizer.save_pretrained(student_dir)
            processes.wait()
            result = run_recovery(teacher, student_dir, data, work, recovery, tokenizer, task.name)
        if not processes.is_main():
            return Path(out)
        if recover:
            model = (
                task.auto_model_class().from_pretrained(result, use_safetensors=True)
                if isinstance(result, Path)
                else result
            )
            model.eval()
            record["recovery"] = {
                "method": "pocketsize.distill",
                "options": recover_options or {},
                "teacher": "the unpruned model"
                if recover_teacher is None
                else str(getattr(recover_teacher, "name_or_path", recover_teacher)),
            }

        if sparsity:
            record["sparsity"] = magnitude.magnitude_prune(model, sparsity, sparsity_scope)

        new_tokenizer_dir = None
        if vocab:
            texts = vocab_mod.texts_of(data, vocab_splits) + extra_texts
            if not texts:
                raise PocketsizeError(
                    f"no text found in splits {list(vocab_splits)} for vocabulary trimming"
                )
            keep = vocab_mod.used_ids(tokenizer, texts, keep_tokens)
            original_size = model.config.vocab_size
            old2new, kept = vocab_mod.plan_vocab(tokenizer, keep, original_size)
            new_tokenizer_dir = work / "tokenizer"
            vocab_mod.rewrite_tokenizer(tokenizer, old2new, new_tokenizer_dir)
            new_tokenizer = load_tokenizer(new_tokenizer_dir)
            vocab_mod.check_same_pieces(tokenizer, new_tokenizer, old2new, texts[:2000])
            vocab_mod.shrink_embeddings(model, old2new, kept, tokenizer.unk_token_id)
            record["vocab"] = {
                "fit_on": list(vocab_splits),
                "extra_texts": len(extra_texts),
                "corpora": corpora,
                "keep_tokens": len(keep_tokens),
                "original_vocab_size": original_size,
                "kept_vocab_size": kept,
                "embedding_shrink": round(original_size / kept, 3),
                "unk_token_id": getattr(model.config, vocab_mod.CONFIG_KEY)["unk_token_id"],
                "how": "tokenizer ids renumbered (kept pieces first); ids >= kept_vocab_size "
                "read the [UNK] row (pocketsize_vocab_trim in config.json)",
            }

        record["params_before"] = params_before
        record["params_after"] = count_parameters(model)
        with atomic_dir(out, overwrite) as tmp:
            model.save_pretrained(tmp)
            if new_tokenizer_dir is not None:
                for f in new_tokenizer_dir.iterdir():
                    (tmp / f.name).write_bytes(f.read_bytes())
            else:
                tokenizer.save_pretrained(tmp)
            record["file_bytes_before"] = bytes_before
            record["file_bytes_after"] = dir_size_bytes(tmp, WEIGHT_FILES)
            record["wall_time_s"] = round(time.time() - started, 2)
            write_json(tmp / "pruning.json", record)
    if verbose:
        print(summary(record))
    return Path(out)


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _remove_depth(layout, fraction, split, tokenizer, task, batch_size, max_length) -> dict:
    model = layout.model
    batches = importance.scoring_batches(model, split, tokenizer, task, batch_size, max_length)
    influence = importance.block_influence(layout, batches)
    n_remove = layout.check_depth(fraction)
    gone = layout.plan_depth(influence, n_remove)
    keep = [i for i in range(len(influence)) if i not in gone]
    layout.remove_layers(keep)
    return {
        "fraction_removed": fraction,
        "score": "block influence: 1 - cos(input, output) of each layer's hidden states "
        "(Men et al. 2024)",
        "removed_layers": gone,
        "kept_layers": keep,
        "importance": [round(float(x), 6) for x in influence],
    }


def _heads_kept_at_most(layout, heads, scope) -> int:
    """The most heads any layer will keep once heads= is applied (global scope: all of them)."""
    present = [len(layout.current_heads(i)) for i in range(len(layout.layers()))]
    if heads and scope == "layer":
        return max(n - int(round(heads * n)) for n in present)
    return max(present)


def _remove_width(model, fraction, split, tokenizer, task, batch_size, max_length) -> dict:
    import torch

    before = model.config.hidden_size
    new_width = width_mod.plan_width(model, fraction)
    batches = importance.scoring_batches(model, split, tokenizer, task, batch_size, max_length)
    plan = width_mod.head_layers(model, batches[0])
    channels, head_scores = importance.width_scores(model, batches, plan)

    def best(scores):
        return sorted(torch.argsort(scores, descending=True)[:new_width].tolist())

    keep = best(channels)
    head_keeps = {n: best(s) for n, s in head_scores.items()}
    width_mod.remove_channels(model, keep, plan, head_keeps)
    return {
        "fraction_removed": fraction,
        "score": "LayerNorm output RMS summed over LayerNorms (Minitron)",
        "hidden_size_before": before,
        "hidden_size_after": model.config.hidden_size,
        "num_attention_heads": model.config.num_attention_heads,
        "kept_channels": keep,
        "head_layers": [
            {"name": h.name, "reads": h.reads, "kept_outputs": head_keeps.get(h.name)} for h in plan
        ],
    }


def summary(record: dict) -> str:
    def mb(n):
        return f"{n / 1e6:.2f} MB"

    lines = [
        f"parameters {record['params_before']:,} -> {record['params_after']:,} "
        f"({record['params_after'] / record['params_before']:.1%})",
        f"weights file {mb(record['file_bytes_before'])} -> {mb(record['file_bytes_after'])} "
        f"({record['file_bytes_after'] / record['file_bytes_before']:.1%})",
    ]
    if "depth" in record:
        d = record["depth"]
        lines.append(f"layers kept: {d['kept_layers']} (removed {d['removed_layers']})")
    if "heads" in record:
        lines.append(f"heads kept per layer: {record['heads']['kept_per_layer']}")
    if "ffn" in record:
        f = record["ffn"]
        lines.append(
            f"FFN neurons per layer: {f['intermediate_size_before']} -> {f['intermediate_size_after']}"
        )
    if "width" in record:
        w = record["width"]
        lines.append(f"hidden width: {w['hidden_size_before']} -> {w['hidden_size_after']}")
    if "vocab" in record:
        v = record["vocab"]
        lines.append(
            f"vocabulary rows: {v['original_vocab_size']:,} -> {v['kept_vocab_size']:,} "
            f"({v['embedding_shrink']}x smaller embedding)"
        )
    if "sparsity" in record:
        s = record["sparsity"]
        lines.append(f"sparsity {s['achieved']:.1%} ({s['note']})")
    if "recovery" in record:
        lines.append("recovered by distillation from the unpruned model")
    return "\n".join(lines)
