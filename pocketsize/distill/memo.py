"""Teacher memo: the live teacher's outputs, kept in memory per training example for the epochs
after the first.

Hidden-state losses need more of the teacher than the disk cache holds (cache.py keeps the
outputs only), so the teacher used to run again on every batch of every epoch: a third of a
3-layer student's step, more than half of a pruned one's. Its outputs do not change (it is
frozen, in eval mode, and each example's tokens are fixed for the run), so the first epoch
keeps what the teacher returned for each example, without its padding and only the hidden
states the losses read, and later batches are put together from it. A batch holding an example
not kept yet (the first epoch, a resumed run, examples past the memory limit) runs the live
teacher as before. Per-token tensors are stored at each example's own length and re-padded to
the batch: the attention mask says where an example's tokens are, so either padding side works.
"""

from __future__ import annotations

import torch

from pocketsize.distill.cache import _NEG  # padded positions of per-token outputs, as there

# What the memo may hold; past it, the remaining examples run the live teacher every epoch.
MEMO_LIMIT_BYTES = 3 * 2**30


class TeacherMemo:
    """Per-example teacher views: `per_token` says whether the task's outputs have a sequence
    axis; `hidden_layers` which hidden_states the losses read (None: all of them)."""

    def __init__(self, per_token: bool, hidden_layers=None, limit_bytes: int = MEMO_LIMIT_BYTES):
        self.per_token = per_token
        self.hidden_layers = None if hidden_layers is None else sorted(set(hidden_layers))
        self.limit_bytes = limit_bytes
        self.rows: dict[int, dict] = {}
        self.layer_count = 0  # len(hidden_states) as the teacher returns it
        self.bytes = 0
        self.full = False
        self.batches_from_memo = 0
        self.batches_live = 0

    def get(self, index: torch.Tensor, mask: torch.Tensor | None) -> dict | None:
        """The teacher view of a batch when every example of it is kept, else None."""
        keys = index.tolist()
        if mask is None or any(k not in self.rows for k in keys):
            self.batches_live += 1
            return None
        valid = mask.bool().cpu()
        rows = [self.rows[k] for k in keys]
        if any(r["_length"] != int(v.sum()) for r, v in zip(rows, valid)):
            self.batches_live += 1  # not the tokens it was kept for: ask the teacher again
            return None
        self.batches_from_memo += 1
        view = {}
        for name in rows[0]:
            if name == "_length":
                continue
            if name == "hidden_states":
                view[name] = self._hidden(rows, valid)
            elif rows[0][name] is None:
                view[name] = None
            elif self.per_token:
                view[name] = _repad([r[name] for r in rows], valid, _NEG)
            else:
                view[name] = torch.stack([r[name] for r in rows])
        return view

    def put(self, index: torch.Tensor, mask: torch.Tensor | None, view: dict) -> None:
        """Keep each example of a batch the live teacher has just run on."""
        if mask is None or self.full:
            return
        valid = mask.bool().cpu()
        hidden = view.get("hidden_states")
        if hidden is not None:
            self.layer_count = len(hidden)
        for k, key in enumerate(index.tolist()):
            if key in self.rows:
                continue
            row = self._row(view, k, valid[k])
            size = sum(_nbytes(v) for v in row.values())
            if self.bytes + size > self.limit_bytes:
                self.full = True
                return
            self.rows[key] = row
            self.bytes += size

    def summary(self) -> dict:
        return {
            "examples": len(self.rows),
            "megabytes": round(self.bytes / 2**20, 1),
            "batches_from_memo": self.batches_from_memo,
            "batches_live": self.batches_live,
            "full": self.full,
        }

    def _row(self, view: dict, k: int, valid: torch.Tensor) -> dict:
        row: dict = {"_length": int(valid.sum())}
        for name, value in view.items():
            if name == "attentions" or name == "loss":
                row[name] = None  # never read from the teacher's view by the memo's losses
            elif name == "hidden_states":
                row[name] = None if value is None else self._kept_layers(value, k, valid)
            elif value is None:
                row[name] = None
            elif self.per_token:
                row[name] = value[k].detach().cpu()[valid].clone()
            else:
                row[name] = value[k].detach().cpu().clone()  # a copy, not a view of the batch
        return row

    def _kept_layers(self, hidden, k: int, valid: torch.Tensor) -> dict:
        layers = self.hidden_layers if self.hidden_layers is not None else range(len(hidden))
        return {i: hidden[i][k].detach().cpu()[valid].clone() for i in layers}

    def _hidden(self, rows: list, valid: torch.Tensor):
        if rows[0]["hidden_states"] is None:
            return None
        layers = [None] * self.layer_count
        for i in rows[0]["hidden_states"]:
            layers[i] = _repad([r["hidden_states"][i] for r in rows], valid, 0.0)
        return layers


def _repad(parts: list, valid: torch.Tensor, fill: float) -> torch.Tensor:
    """Per-example (length, ...) tensors put back at their positions in a padded batch."""
    first = parts[0]
    out = torch.full((*valid.shape, *first.shape[1:]), fill, dtype=first.dtype)
    out[valid] = torch.cat(parts)
    return out


def _nbytes(value) -> int:
    if value is None or isinstance(value, int):
        return 0
    if isinstance(value, dict):
        return sum(_nbytes(v) for v in value.values())
    return value.numel() * value.element_size()
