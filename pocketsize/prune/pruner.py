"""`prune(model, data, heads=..., ffn=..., vocab=..., sparsity=...)`: one call, one directory.

A short driver: the options as one PruneConfig (prune/config.py), the model and data resolved
and checked, every enabled pass checked before any slow work, then applied in order
(prune/passes.py: depth -> heads -> FFN neurons -> hidden width -> recovery -> sparsity ->
vocabulary), and one stage.json written with the model in one rename. Where an architecture
keeps its layers, heads and neurons is its layout (prune/layouts/).
"""

from __future__ import annotations

import copy
import os
import tempfile
import time
from pathlib import Path

from pocketsize import processes
from pocketsize.errors import PocketsizeError
from pocketsize.formats.records import stage_output, update_record
from pocketsize.fsutil import check_output_dir, dir_size_bytes
from pocketsize.options import keywords_from
from pocketsize.prune import importance
from pocketsize.prune.config import PruneConfig
from pocketsize.prune.layouts import layout_for
from pocketsize.prune.passes import Pruning, Recovery, passes_for

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


def _task_for(task, data, model=None):
    from pocketsize.tasks import resolve_task

    return resolve_task(task, model=model, data=data)


def _load_model(path, task, data, **trust):
    """The model for `task` (with its [UNK] clamp, if vocabulary-trimmed); a base encoder gets a
    fresh head named after the data's labels. `trust`: trust_remote_code, trust_module_code."""
    split = data["train"] if data is not None and hasattr(data, "keys") else data
    labels = task.labels(split) if split is not None else None
    return task.load_model(path, labels=labels, **trust)


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


@keywords_from(PruneConfig)
def prune(
    model,
    data=None,
    *,
    config: PruneConfig | None = None,
    task=None,
    tokenizer=None,
    out=None,
    overwrite: bool = False,
    verbose: bool = True,
    trust_remote_code: bool = False,
    trust_module_code: bool = False,
    **options,
) -> Path:
    """Prune `model` (directory, catalogue name or in-memory model) and write it to `out`.

    config: a PruneConfig (pocketsize.prune.config); keywords build or override one. Fractions
      are the share REMOVED, strictly between 0 and 1; each pass runs when its option is set
      (prune/passes.py, in this order):
    depth: layers (decoders: pre-norm blocks) that change the hidden states least (block
      influence); first, so heads and neurons are then scored on the shallower model.
    heads / ffn: attention heads / FFN neurons. On grouped-query decoders heads= removes that
      fraction of each group's query heads, or with kv_groups=True of whole key/value groups
      (prune/layouts/decoders.py). scope: heads per layer or ranked over the whole model;
      ffn_score: "activation" (activation x gradient on task data) or "magnitude" (weights).
    width: hidden channels (prune/width.py), rounded to whole heads; every layer must keep at
      most width / head_size heads, so it usually comes with heads=.
    recover: distil from the unpruned model (or recover_teacher, e.g. the original teacher,
      which aims the pruned model back at the model it must agree with) after the above;
      recover_options are pocketsize.distill's options (1 epoch unless given).
    sparsity: unstructured magnitude sparsity of the encoder's Linear weights (no speed-up).
    vocab: keep only the pieces the `vocab_splits` text (+ vocab_extra_text, a file or list of
      texts, + the text of every dataset in vocab_corpora, + vocab_keep, a file or list of
      tokens) uses. Open-class words (the names a tagger must find) are often absent from a
      small training set: a broad corpus keeps their pieces out of [UNK].
    trust_remote_code / trust_module_code: let a model directory's own code run (an auto_map
      in its config or tokenizer config; a module directory's class from outside pocketsize),
      for the model and a recover_teacher; off, such a model is refused in one line.
    Returns the output directory (a save_pretrained directory plus stage.json).
    """
    cfg = PruneConfig.build(config, **options)
    started = time.time()
    passes = passes_for(cfg)
    source_dir = None if hasattr(model, "state_dict") else _resolve(model)
    out = check_output_dir(_default_out(model, source_dir, out), overwrite)
    trust = {"trust_remote_code": trust_remote_code, "trust_module_code": trust_module_code}
    run = _prepare(model, source_dir, data, task, tokenizer, cfg, trust)
    for each in passes:
        each.check(run)  # every check that can fail comes before the slow work
    before = _start(run, passes, source_dir, trust)
    with processes.shared_temp_dir("pocketsize-prune-") as work:
        run.work = work
        # every process prunes alike (the same scores from the same data) and trains its share
        # of the recovery; the rest is the main process's
        for each in passes:
            if each.every_process:
                each.apply(run)
        if not processes.is_main():
            return Path(out)
        for each in passes:
            if not each.every_process:
                each.apply(run)
        with stage_output(out, "prune", overwrite) as tmp:
            _save(run, tmp)
            # after the passes' own parts, as the record has always listed them
            run.record["params_before"] = before["params"]
            run.record["params_after"] = count_parameters(run.model)
            run.record["file_bytes_before"] = before["bytes"]
            run.record["file_bytes_after"] = dir_size_bytes(tmp, WEIGHT_FILES)
            run.record["wall_time_s"] = round(time.time() - started, 2)
            update_record(tmp, **run.record)
    if verbose:
        print(summary(run.record))
    return Path(out)


def _default_out(model, source_dir, out):
    """Next to a local model; in the working directory for a catalogue name; a temporary
    directory for an in-memory model (one for all processes)."""
    if out is not None:
        return out
    if source_dir is None:
        made = tempfile.mkdtemp(prefix="pocketsize-pruned-") if processes.is_main() else None
        return processes.broadcast(made)
    if Path(model).is_dir():
        return f"{str(model).rstrip('/')}-pruned"
    return Path.cwd() / f"{Path(str(model)).name}-pruned"


def _prepare(model, source_dir, data, task, tokenizer, cfg: PruneConfig, trust: dict) -> Pruning:
    """The data, the task, the model (a copy: the caller's stays unpruned) and its tokenizer,
    checked against each other, and the model's layout."""
    from pocketsize.assets import load_tokenizer
    from pocketsize.formats.checkpoint import check_tokenizer_fits

    data = _load_data(data)
    if cfg.needs_data and data is None:
        raise PocketsizeError(
            "this pruning needs task data (head/neuron importance, vocabulary, recovery); "
            "give data= (--data NAME)"
        )
    if source_dir is not None:
        task = _task_for(task, data, source_dir)
        model = _load_model(source_dir, task, data, **trust)
        tokenizer = tokenizer or load_tokenizer(source_dir, trust["trust_remote_code"])
    else:
        task = _task_for(task, data, model.config.to_dict())
        model = copy.deepcopy(model)  # the caller's model stays unpruned
        if tokenizer is None:
            raise PocketsizeError("an in-memory model needs its tokenizer: pass tokenizer=")
    model.eval()
    check_tokenizer_fits(model, tokenizer, source_dir or "the model")
    run = Pruning(cfg, model, tokenizer, task, data)
    run.layout = layout_for(model) if cfg.structured else None
    return run


def _start(run: Pruning, passes, source_dir, trust: dict) -> dict:
    """Onto this process's GPU where there is one (the slicing keeps each weight's device and
    dtype), the scoring sample drawn, recovery's teacher kept; the sizes before any cut."""
    cfg = run.cfg
    device = processes.device()
    run.model.to(device)
    if cfg.scores_on_data:
        split = importance.scoring_split(run.data, cfg.min_examples)
        run.split = split.shuffle(seed=cfg.seed).select(range(min(len(split), cfg.max_examples)))
    for each in passes:
        if isinstance(each, Recovery):
            each.keep_teacher(
                run, lambda ref: _load_model(_resolve(ref), run.task, run.data, **trust)
            )
    run.record.update(stage="prune", source=str(source_dir or "<in-memory model>"))
    run.record.update(task=run.task.name, device=str(device))
    return {"params": count_parameters(run.model), "bytes": _weights_size(run.model, source_dir)}


def _save(run: Pruning, tmp: Path) -> None:
    run.model.save_pretrained(tmp)
    run.task.write_model_files(run.model, tmp)
    if run.new_tokenizer_dir is not None:  # the vocabulary pass renumbered the tokenizer
        for f in run.new_tokenizer_dir.iterdir():
            (tmp / f.name).write_bytes(f.read_bytes())
    else:
        run.tokenizer.save_pretrained(tmp)


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


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
