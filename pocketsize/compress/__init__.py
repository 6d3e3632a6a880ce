"""Compress to a target: the smallest, fastest model that keeps a stated agreement with the
teacher, found by search against latency measured on this CPU.

So far: the candidates (space.py), the trial log that a rerun continues (trials.py) and the
size/latency frontier measured before any training (frontier.py). The training phase and the
`compress` verb build on these.
"""

from pocketsize.compress.config import CompressConfig
from pocketsize.compress.frontier import build_chain, measure_frontier, within_limits
from pocketsize.compress.space import Candidate, candidates
from pocketsize.compress.trials import TrialLog

__all__ = [
    "Candidate",
    "CompressConfig",
    "TrialLog",
    "build_chain",
    "candidates",
    "measure_frontier",
    "within_limits",
]
