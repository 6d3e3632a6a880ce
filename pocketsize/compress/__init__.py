"""Compress to a target: the smallest, fastest model that keeps a stated agreement with the
teacher, found by search against latency measured on this CPU.

The candidates (space.py) are built untrained and timed first (frontier.py); the ones within
the size and latency limits are distilled by successive halving (search.py) and scored against
the teacher (reference.py); every trial goes to a log a rerun continues (trials.py); the
driver is compressor.py.
"""

from pocketsize._callable import make_package_callable
from pocketsize.compress.compressor import compress
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
    "compress",
    "measure_frontier",
    "within_limits",
]

make_package_callable(__name__, compress)
