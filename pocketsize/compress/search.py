"""Training spent where it can win: successive halving over the candidates within the limits.

Rung by rung, every surviving candidate is distilled from the teacher, pruned and recovered
for the rung's epochs, exported, int8-quantized and scored on the validation split; the best
1/eta by agreement with the teacher (and any tied with the last of them) go on to eta times
the training. The last rung trains for `epochs`. Each trial is logged when it finishes
(trials.py), so a rerun continues.

Why not Optuna: its samplers propose points of a space one trial at a time, and its
successive-halving pruner stops trials inside one training run. Here the space is a short
list of candidates whose size and latency are already measured, and each trial is a chain of
separate stages (distil, prune, recover, export, quantize): ranking a fixed list after each
rung is the whole algorithm, deterministic, in a few lines, without a study database.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

from pocketsize.compress.config import CompressConfig
from pocketsize.compress.space import Candidate
from pocketsize.compress.trials import TrialLog

PHASE = "train"


def rung_epochs(cfg: CompressConfig) -> list[float]:
    """The training of each rung, shortest first: epochs / eta^k, ..., epochs."""
    return [cfg.epochs / cfg.eta**k for k in reversed(range(cfg.rungs))]


def successive_halving(
    alive: list[Candidate],
    cfg: CompressConfig,
    train: Callable[[Candidate, float], dict],
    log: TrialLog,
    deadline: float,
) -> list[dict]:
    """Every trial run (or read back from the log), rung by rung. After the deadline no new
    trial starts: the search ends with what it has."""
    done: list[dict] = []
    for rung, epochs in enumerate(rung_epochs(cfg)):
        results = []
        for candidate in alive:
            entry = log.find(candidate.name, PHASE, **trial_settings(cfg, epochs))
            if entry is None:
                if time.time() > deadline:
                    break
                entry = log.add({**train(candidate, epochs), "rung": rung})
            results.append(entry)
        done += results
        if not results or rung == cfg.rungs - 1 or time.time() > deadline:
            break
        alive = [c for c in alive if c.name in promoted(results, cfg.eta)]
    return done


def promoted(results: list[dict], eta: float) -> set[str]:
    """The best 1/eta by agreement, and every trial that agrees as much as the last of them: a
    rung that cannot tell candidates apart does not choose between them by speed. (After 1/3
    epoch every 1-layer student of the main job predicted one class, 47.96% agreement each, and
    the fastest two went on by the tie-break alone.)"""
    keep = max(1, math.ceil(len(results) / eta))
    cut = ranked(results)[keep - 1]["agreement"]
    return {e["candidate"] for e in results if e["agreement"] >= cut}


def trial_settings(cfg: CompressConfig, epochs: float) -> dict:
    """What a trained trial depends on besides its candidate, as the log holds it: a rerun
    with other training options trains again instead of reading back a trial trained
    otherwise (the distill options as JSON reads them back, so that a tuple equals its list)."""
    return {
        "epochs": epochs, "seed": cfg.seed, "block_size": cfg.block_size, "vocab": cfg.vocab,
        "scoring_examples": cfg.scoring_examples,
        "distill_options": json.loads(json.dumps(cfg.distill_options)),
        "recover_options": json.loads(json.dumps(cfg.recovery)),
    }  # fmt: skip


def ranked(results: list[dict]) -> list[dict]:
    """Most agreement first; among equals, the faster, then the smaller."""
    return sorted(results, key=lambda e: (-e["agreement"], e["latency_ms"], e["size_mb"]))


def choose(done: list[dict], cfg: CompressConfig, teacher_metric: float) -> tuple[dict, dict]:
    """The chosen trial among the most-trained ones, and what it says of the budget: the
    fastest that keeps the budget, else (none keeps it) the one that agrees most. Without an
    agreement budget (neither min_agreement nor max_drop), the limits are all that was asked:
    the one that agrees most within them (the fastest would be a choice nobody made)."""
    top = max(e["epochs"] for e in done)
    final = [e for e in done if e["epochs"] == top]
    if cfg.min_agreement is None and cfg.max_drop is None:
        return ranked(final)[0], {"met": True}
    keeping = [e for e in final if _shortfall(e, cfg, teacher_metric) <= 0]
    if keeping:
        best = min(keeping, key=lambda e: (e["latency_ms"], e["size_mb"], -e["agreement"]))
        return best, {"met": True}
    best = ranked(final)[0]
    return best, {"met": False, "shortfall": round(_shortfall(best, cfg, teacher_metric), 4)}


def _shortfall(entry: dict, cfg: CompressConfig, teacher_metric: float) -> float:
    """How far a trial is from the budget (<= 0: within it)."""
    if cfg.min_agreement is not None:
        return cfg.min_agreement - entry["agreement"]
    if cfg.max_drop is not None:
        return (teacher_metric - entry["metric"]) - cfg.max_drop
    return 0.0


def trial_dir(root: Path, candidate: Candidate, epochs: float) -> Path:
    return Path(root) / "trials" / f"{candidate.name}-e{epochs:g}"
