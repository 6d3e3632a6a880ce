"""`compress(teacher, data, out)`: the frontier, then successive halving, then the choice.

`out` is the search's directory: `trials.jsonl` (every trial, appended as it finishes),
`trials/<candidate>-e<epochs>/` (each trained trial's int8 model), `model/` (the chosen one),
`search.json` (the limits, the frontier, the trials, the choice and whether it keeps the
budget). A rerun on the same directory continues the search; one directory, one writer.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from pocketsize.compress import frontier as F
from pocketsize.compress import search as S
from pocketsize.compress.config import CompressConfig
from pocketsize.compress.reference import Reference
from pocketsize.compress.space import Candidate, candidates
from pocketsize.compress.trials import TrialLog
from pocketsize.errors import PocketsizeError
from pocketsize.fsutil import locked_dir, replace_dir, write_json

IDENTITY = "search-of.json"


@dataclass
class _Run:
    cfg: CompressConfig
    teacher: Path
    data: object
    task: object
    out: Path
    log: TrialLog
    depth: int
    started: float = field(default_factory=time.time)


def compress(teacher, data, out, *, config: CompressConfig | None = None, task=None, **options):
    """The smallest, fastest model within the limits that agrees most with `teacher` (see the
    module docstring and CompressConfig); returns the chosen model's directory, `out/model`."""
    cfg = CompressConfig.build(config, **options)
    out = Path(out)
    busy = f"search directory {out} is in use by another compress; wait for it or pass another out"
    with locked_dir(out, busy):
        run = _prepare(teacher, data, task, cfg, out)
        space = candidates(cfg, run.depth)
        measured = F.measure_frontier(run.teacher, run.data, space, cfg, run.log, run.task)
        alive = _within_limits(measured, cfg, space)
        reference = Reference.of(run.teacher, run.data, run.task, out / ".teacher")
        costs = {e["candidate"]: e for e in measured}
        deadline = run.started + cfg.budget_minutes * 60
        train = lambda c, e: _train(run, c, e, reference, costs[c.name])  # noqa: E731
        done = S.successive_halving(alive, cfg, train, run.log, deadline)
        if not done:
            raise PocketsizeError(
                f"compress trained no candidate within budget_minutes={cfg.budget_minutes:g} "
                "(the frontier took it all); give a larger budget_minutes"
            )
        best, budget = S.choose(done, cfg, reference.metric)
        budget["noise_floor"] = _noise_floor(run, reference)
        replace_dir(_copy_of(out / best["model"], out), out / "model")
        _summary(run, measured, done, best, budget, reference)
    return out / "model"


def _prepare(teacher, data, task, cfg: CompressConfig, out: Path) -> _Run:
    from pocketsize.assets import resolve_model
    from pocketsize.distill.loading import load_data
    from pocketsize.formats.hf_load import load_config
    from pocketsize.tasks import resolve_task

    teacher = Path(resolve_model(teacher if isinstance(teacher, str) else str(teacher)))
    dataset = load_data(data)
    task_obj = resolve_task(task, model=teacher)
    named = isinstance(data, (str, os.PathLike))  # in-memory data cannot be told apart
    identity = {"teacher": str(teacher), "data": str(data) if named else "in memory",
                "task": task_obj.name}  # fmt: skip
    known = out / IDENTITY
    before = json.loads(known.read_text()) if known.exists() else identity
    if before != identity:
        raise PocketsizeError(
            f"{out} holds the search of another teacher, data or task ({before}); pass another "
            "out, or delete it to start over"
        )
    _check_latency_model(cfg.max_latency_of)
    out.mkdir(parents=True, exist_ok=True)
    write_json(known, identity)
    depth = F.depth_of(load_config(teacher))  # the config says it: no model load
    return _Run(cfg, teacher, dataset, task_obj, out, TrialLog(out), depth)


def _check_latency_model(path: str | None) -> None:
    """max_latency_of is timed as the candidates are, in ONNX Runtime: an ONNX directory."""
    from pocketsize.compress.references import is_onnx

    if path is not None and not (Path(path).exists() and is_onnx(Path(path))):
        raise PocketsizeError(
            f"max_latency_of: {path} is not an ONNX model directory (the candidates are timed "
            "in ONNX Runtime); export it first (pocketsize export) or give max_latency_ms"
        )


def _within_limits(measured: list[dict], cfg: CompressConfig, space: list[Candidate]):
    alive = [c for c, e in zip(space, measured) if F.within_limits(e, cfg)]
    if alive:
        return alive
    built = [e for e in measured if F.buildable(e)]
    if not built:
        raise PocketsizeError(
            f"no candidate of the space could be built; the first said: "
            f"{measured[0][F.UNBUILDABLE]}"
        )
    small = min(built, key=lambda e: e["size_mb"])
    fast = min(built, key=lambda e: e["latency_ms"])
    beside = f" ({fast[F.BESIDE]} ms beside it)" if cfg.max_latency_of is not None else ""
    limits = [f"{key}={getattr(cfg, key)}" for key in ("max_size_mb", "max_latency_ms",
              "max_latency_of") if getattr(cfg, key) is not None]  # fmt: skip
    raise PocketsizeError(
        f"no candidate is within {' and '.join(limits)}: the smallest, {small['candidate']}, "
        f"weighs {small['size_mb']} MB, the fastest, {fast['candidate']}, takes "
        f"{fast['latency_ms']} ms{beside}; loosen a limit or add smaller candidates (fewer "
        "layers, more pruning)"
    )


def _train(run: _Run, candidate: Candidate, epochs: float, reference, cost: dict) -> dict:
    """One trial: distil the candidate's student, prune and recover it, export, int8, score."""
    from pocketsize.distill import distill

    cfg, started = run.cfg, time.time()
    target = S.trial_dir(run.out, candidate, epochs)
    with tempfile.TemporaryDirectory(prefix="pocketsize-trial-") as work:
        spec = "truncate:" + ",".join(str(i) for i in candidate.kept_layers(run.depth))
        student = distill(
            run.teacher, run.data, spec, Path(work) / "student", task=run.task.name,
            epochs=epochs, seed=cfg.seed, progress=False, **cfg.distill_options,
        )  # fmt: skip
        recover = {**cfg.recovery, "epochs": epochs}
        int8 = F.build_chain(
            student, run.teacher, run.data, candidate, cfg, run.task, Path(work), recover,
            scoring_examples=cfg.scoring_examples,
        )  # fmt: skip
        target.parent.mkdir(parents=True, exist_ok=True)
        replace_dir(_copy_of(int8, target.parent), target)
    agreement, metric = reference.score(target)
    return {
        "candidate": candidate.name, "phase": S.PHASE, **S.trial_settings(cfg, epochs),
        **candidate.to_dict(), "agreement": round(agreement, 6), "metric": round(metric, 6),
        "size_mb": cost["size_mb"], "latency_ms": cost["latency_ms"], "params": cost["params"],
        "model": str(target.relative_to(run.out)), "seconds": round(time.time() - started, 1),
    }  # fmt: skip


def _noise_floor(run: _Run, reference) -> float | None:
    """The second teacher's agreement with the teacher (None without one)."""
    if run.cfg.second_teacher is None:
        return None
    from pocketsize.assets import resolve_model
    from pocketsize.export import export

    onnx_dir = run.out / ".second-teacher"
    if not (onnx_dir / "stage.json").is_file():
        second = resolve_model(run.cfg.second_teacher)
        export(second, onnx_dir, task=run.task.name, overwrite=True)
    return round(reference.score(onnx_dir)[0], 6)


def _copy_of(source: Path, parent: Path) -> Path:
    """A complete copy of `source` beside its destination, ready to be renamed into place."""
    staging = Path(tempfile.mkdtemp(prefix=".copy-", dir=parent))
    shutil.rmtree(staging)
    shutil.copytree(source, staging)
    return staging


def _summary(run: _Run, measured, done, best, budget, reference) -> None:
    from pocketsize.eval.search_plot import frontier_png

    cfg = run.cfg
    summary = {
        "teacher": str(run.teacher), "task": run.task.name,
        "teacher_metric": reference.metric, "config": cfg.to_dict(),
        "chosen": best["candidate"], "chosen_trial": best, "budget": budget,
        "frontier": measured, "trials": done, "seconds": round(time.time() - run.started, 1),
    }  # fmt: skip
    write_json(run.out / "search.json", summary)
    (run.out / "frontier.png").write_bytes(frontier_png(summary))
