"""The size/latency frontier: every candidate built without training, exported, timed.

Why untrained: a model's size and speed follow from its structure alone, and building the
structure costs seconds (truncate the teacher, prune it on a few scored examples, export,
int8) where training it costs minutes. So the whole frontier is measured on this CPU before
any training is spent, and training goes only to the candidates that meet the size and
latency limits. Latency is ONNX Runtime's, on real validation inputs at `latency_batch`.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from pocketsize.compress.config import CompressConfig
from pocketsize.compress.reference import scoring_split
from pocketsize.compress.space import Candidate
from pocketsize.compress.trials import TrialLog
from pocketsize.errors import PocketsizeError

PHASE = "frontier"
# which heads and neurons pruning removes changes neither a structure's size nor its speed:
# the untrained builds score on a few examples, so that each takes seconds
FRONTIER_SCORING = 64
UNBUILDABLE = "unbuildable"  # a frontier entry's key: why the candidate could not be built
BESIDE = "max_latency_of_ms"  # a frontier entry's key: max_latency_of's latency beside it
ROUNDS = 3  # blocks of each model in a paired timing, alternating


def measure_frontier(
    teacher: Path, data, candidates: list[Candidate], cfg: CompressConfig, log: TrialLog, task
) -> list[dict]:
    """One logged trial per candidate (read back from the log when a rerun finds it there):
    its shipped size, parameter count and latency (the limits are applied by within_limits,
    so a rerun with other limits reuses the measurements), or why it cannot be built."""
    entries, loaded = [], []  # the teacher, loaded once, when a candidate is not in the log
    beside = None  # max_latency_of's session and inputs, made once
    for candidate in candidates:
        entry = log.find(candidate.name, PHASE, **_settings(cfg))
        if entry is None:
            loaded = loaded or _load_teacher(teacher, task)
            if cfg.max_latency_of is not None and beside is None:
                beside = timed_inputs(Path(cfg.max_latency_of), data, cfg, task)
            measured = _measure_or_refusal(teacher, loaded, data, candidate, cfg, task, beside)
            entry = log.add(measured)
        entries.append(entry)
    return entries


def _measure_or_refusal(teacher, loaded, data, candidate: Candidate, cfg, task, beside) -> dict:
    """A combination the teacher's structure cannot take (a width that leaves room for fewer
    heads than a layer keeps, say) is logged with the stage's one-line reason, not fatal: the
    rest of the space is still searched, and the report says what was left out."""
    try:
        return _measure(teacher, loaded, data, candidate, cfg, task, beside)
    except PocketsizeError as refusal:
        return {"candidate": candidate.name, "phase": PHASE, **candidate.to_dict(),
                UNBUILDABLE: str(refusal), **_settings(cfg)}  # fmt: skip


def buildable(entry: dict) -> bool:
    return UNBUILDABLE not in entry


def within_limits(entry: dict, cfg: CompressConfig) -> bool:
    if not buildable(entry):
        return False
    size_ok = cfg.max_size_mb is None or entry["size_mb"] <= cfg.max_size_mb
    speed_ok = cfg.max_latency_ms is None or entry["latency_ms"] <= cfg.max_latency_ms
    if cfg.max_latency_of is not None:
        speed_ok = speed_ok and entry["latency_ms"] <= entry[BESIDE]
    return size_ok and speed_ok


def _measure(teacher: Path, loaded, data, candidate: Candidate, cfg, task, beside) -> dict:
    from pocketsize.quantize.scoring import latency_ms

    started = time.time()
    with tempfile.TemporaryDirectory(prefix="pocketsize-frontier-") as work:
        student = _truncated(loaded, candidate, task, Path(work) / "student")
        int8 = build_chain(student, teacher, data, candidate, cfg, task, Path(work))
        size, params = shipped(int8)
        ours = timed_inputs(int8, data, cfg, task)
        latency, of = paired_latency_ms(ours, beside) if beside else (latency_ms(*ours), None)
    entry = {
        "candidate": candidate.name, "phase": PHASE, **candidate.to_dict(),
        "size_mb": round(size / 1e6, 4), "params": params, "latency_ms": round(latency, 4),
        **_settings(cfg), "seconds": round(time.time() - started, 1),
    }  # fmt: skip
    if beside is not None:
        entry[BESIDE] = round(of, 4)
    return entry


def _settings(cfg: CompressConfig) -> dict:
    """What a frontier measurement depends on besides the candidate."""
    return {
        "latency_batch": cfg.latency_batch, "latency_examples": cfg.latency_examples,
        "vocab": cfg.vocab, "seed": cfg.seed, "block_size": cfg.block_size,
        "max_latency_of": cfg.max_latency_of,
    }  # fmt: skip


def build_chain(
    student: Path,
    teacher: Path,
    data,
    candidate: Candidate,
    cfg: CompressConfig,
    task,
    work: Path,
    recover: dict | None = None,
    scoring_examples: int = FRONTIER_SCORING,
) -> Path:
    """student -> pruned on `scoring_examples` scored examples (and recovered from the
    teacher when `recover` holds distill options) -> ONNX -> int8: the candidate's int8
    directory, in `work`."""
    from pocketsize.export import export
    from pocketsize.prune import prune
    from pocketsize.quantize import quantize

    structure = candidate.prune_options()
    options = {**structure, "vocab": cfg.vocab}
    if recover is not None and structure:
        options.update(recover=True, recover_teacher=str(teacher), recover_options=recover)
    pruned = student
    if structure or cfg.vocab:
        pruned = prune(
            student, data, task=task.name, out=work / "pruned", verbose=False,
            max_examples=scoring_examples, min_examples=1, seed=cfg.seed, **options,
        )  # fmt: skip
    onnx_dir = export(pruned, work / "onnx", task=task.name)
    return quantize(
        onnx_dir, out=work / "int8", method="dynamic", embedding_bits=candidate.embedding_bits,
        block_size=cfg.block_size,
    )  # fmt: skip


def _load_teacher(teacher: Path, task) -> list:
    """[model, tokenizer] of the teacher (truncation copies it, so one load serves all)."""
    from pocketsize.assets import load_tokenizer

    return [
        task.prepare_model(task.load_model(str(teacher)), teacher),
        load_tokenizer(str(teacher)),
    ]


def _truncated(loaded: list, candidate: Candidate, task, out: Path) -> Path:
    """The teacher cut to the candidate's layers, untrained, as a model directory."""
    from pocketsize.distill.saving import save_model
    from pocketsize.distill.students import build_student

    model, tokenizer = loaded
    layers = candidate.kept_layers(depth_of(model.config))
    spec = "truncate:" + ",".join(str(i) for i in layers)
    student, _ = build_student(model, spec, tokenizer=tokenizer, task=task)
    save_model(student, tokenizer, out, task)
    return out


def measure_cost(int8: Path, data, cfg: CompressConfig, task) -> tuple[int, int | None, float]:
    """(shipped bytes, parameters, median ms per call at latency_batch) of an int8 directory."""
    from pocketsize.quantize.scoring import latency_ms

    return *shipped(int8), latency_ms(*timed_inputs(int8, data, cfg, task))


def shipped(model: Path) -> tuple[int, int | None]:
    """(the bytes a user ships, parameters) of an ONNX directory."""
    from pocketsize.runtime.cost import param_count, size_bytes
    from pocketsize.runtime.runners import resolve_variant

    variant = resolve_variant("candidate", model)
    return size_bytes(variant)[0], param_count(variant)


def timed_inputs(model: Path, data, cfg: CompressConfig, task) -> tuple:
    """(ONNX Runtime session, the validation inputs it is timed on at latency_batch)."""
    from pocketsize.assets import load_tokenizer
    from pocketsize.quantize.scoring import TaskData, ort_session
    from pocketsize.runtime.runners import resolve_variant

    session = ort_session(resolve_variant("candidate", model).path)
    examples = TaskData(
        task, load_tokenizer(str(model)), scoring_split(data), limit=cfg.latency_examples
    )
    names = [i.name for i in session.get_inputs()]
    return session, list(examples.batches(names, cfg.latency_batch))


def paired_latency_ms(ours: tuple, theirs: tuple) -> tuple[float, float]:
    """Two models' median ms per call, timed in alternating blocks (ours, theirs, ours, ...):
    a slow minute of a shared machine slows both alike, so the pair compares fairly where two
    timings minutes apart would not."""
    from pocketsize.quantize.scoring import latency_ms

    blocks: tuple[list, list] = ([], [])
    for _ in range(ROUNDS):
        for times, (session, feeds) in zip(blocks, (ours, theirs)):
            times.append(latency_ms(session, feeds, repeats=1))
    return statistics.median(blocks[0]), statistics.median(blocks[1])


def depth_of(config) -> int:
    """The teacher's layer count, as its config names it."""
    return getattr(config, "num_hidden_layers", None) or config.num_layers
