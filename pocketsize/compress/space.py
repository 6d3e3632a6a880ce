"""The candidates a search weighs: every combination of the config's space, named stably.

A candidate is a recipe for a model, not a model: how many of the teacher's layers it keeps
(spread evenly, DistilBERT's choice: 3 of 6 keeps 0, 2, 4), the shares of heads, FFN neurons
and hidden channels pruning removes, and the bits of its int8 model's embedding table.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

from pocketsize.compress.config import CompressConfig
from pocketsize.errors import PocketsizeError


@dataclass(frozen=True)
class Candidate:
    layers: int
    heads: float
    ffn: float
    width: float
    embedding_bits: int

    @property
    def name(self) -> str:
        """A stable key: the same candidate has the same name in every run (the trial log)."""
        return (
            f"L{self.layers}-h{self.heads:g}-f{self.ffn:g}-w{self.width:g}-e{self.embedding_bits}"
        )

    def kept_layers(self, depth: int) -> list[int]:
        """`layers` of the teacher's `depth` layers, evenly spread from the first."""
        return sorted({round(i * depth / self.layers) for i in range(self.layers)})

    def prune_options(self) -> dict:
        """The structure pruning removes, as PruneConfig options (none when nothing is)."""
        chosen = {"heads": self.heads, "ffn": self.ffn, "width": self.width}
        return {k: v for k, v in chosen.items() if v}

    def to_dict(self) -> dict:
        return asdict(self)


def candidates(cfg: CompressConfig, depth: int) -> list[Candidate]:
    """Every combination of the space, for a teacher of `depth` layers."""
    too_deep = [n for n in cfg.layers if n > depth]
    if too_deep:
        raise PocketsizeError(
            f"compress option layers: {too_deep} is more than the teacher's {depth} layers; "
            f"give counts from 1 to {depth}"
        )
    product = itertools.product(
        sorted(set(cfg.layers)), sorted(set(cfg.heads)), sorted(set(cfg.ffn)),
        sorted(set(cfg.width)), sorted(set(cfg.embedding_bits)),
    )  # fmt: skip
    return [Candidate(*combination) for combination in product]
