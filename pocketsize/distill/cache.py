"""Teacher-output cache: with output-only losses the teacher runs once per input, ever.

Outputs are stored on disk under a key made of the teacher's weights, the tokenized inputs
(which covers the data, the tokenizer and the max length) and the output names, so every
epoch and every later run with the same teacher and data reads them instead of running the
teacher. Files: one .npy array per stored output (written batch by batch and read back
memory-mapped, so neither building nor reading the cache holds it in memory), rows.npy (where
each row's positions start, and how many) for per-token outputs, and meta.json; all written
through atomic_dir so an interrupted computation leaves nothing behind.

A token-level teacher (a causal LM) has a distribution over the whole vocabulary at every
position, too big to keep: with `top_k` the cache keeps, per position, the k largest logits,
their token ids and the log-sum-exp of all logits at the distillation temperature, which is
what the top-k KL (losses.token_kl) needs to give the rest of the vocabulary its share of the
probability; meta.json records k and the mean probability mass the k tokens cover.

With `bf16` the teacher runs under bfloat16 autocast, as it does live in a run that trains
under it, so the cache holds what that run's teacher would give (stored as float32, keyed
apart from the float32 pass). On a 2-core Xeon with AMX (family 6 model 207) the MPNet-base
teacher's pass over 512 texts took 4.4 s against 15.8 s in float32, and its embeddings kept a
cosine of 0.99998 to the float32 ones (mean; 0.99989 the least).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch

from pocketsize.assets import cache_dir as user_cache_dir
from pocketsize.distill.features import forward_kwargs, get_output
from pocketsize.distill.losses import LOG_SUM_EXP, TOP_K_IDS, TOP_K_VALUES

# 2: per-token outputs keep their trailing shape; 3: integer ids, top-k; 4: .npy arrays;
# 5: batches padded on the right whatever the tokenizer's side (4 took a left-padded
# tokenizer's padding for its first positions)
CACHE_VERSION = 5
_NEG = -1e4  # padded span positions (masked by the losses anyway)


def teacher_fingerprint(model: torch.nn.Module) -> str:
    h = hashlib.sha256(type(model).__name__.encode())
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _column_chunks(features, column: str, chunk: int = 10_000):
    """A feature column, a chunk of rows at a time (never the whole column in memory)."""
    for start in range(0, len(features), chunk):
        yield features[start : start + chunk][column]


def features_fingerprint(features, columns) -> str:
    h = hashlib.sha256()
    for col in sorted(columns):
        h.update(col.encode())
        for rows in _column_chunks(features, col):
            for row in rows:
                h.update(np.asarray(row, dtype=np.int64).tobytes())
                h.update(b"|")
    return h.hexdigest()


class TeacherOutputs:
    """Teacher outputs per feature row, memory-mapped from the cache directory and gathered
    into padded batches: one array per output, (rows, *trailing) for one vector per example,
    or (positions, *trailing) for per-token outputs with `rows[i] = (start, length)` saying
    where row i's positions are. A per-token output keeps its trailing shape (one logit per
    tag for a token classifier; nothing for QA's one logit per token; k for a top-k cache)."""

    def __init__(self, values: dict[str, np.ndarray], rows: np.ndarray | None):
        self.values = values
        self.rows = rows  # None: one vector per example (row i is values[name][i])

    def __len__(self) -> int:
        return len(self.rows) if self.rows is not None else len(next(iter(self.values.values())))

    def batch(self, index: torch.Tensor, width: int | None = None) -> dict[str, torch.Tensor]:
        index = np.asarray(index.cpu() if isinstance(index, torch.Tensor) else index)
        if self.rows is None:
            return {n: torch.from_numpy(np.array(v[index])) for n, v in self.values.items()}
        starts, lengths = self.rows[index, 0], self.rows[index, 1]
        w = width or int(lengths.max())
        out = {}
        for name, flat in self.values.items():
            fill = _NEG if np.issubdtype(flat.dtype, np.floating) else 0  # ids stay valid
            padded = np.full((len(index), w, *flat.shape[1:]), fill, dtype=flat.dtype)
            for r, (start, length) in enumerate(zip(starts.tolist(), lengths.tolist())):
                n = min(length, w)
                padded[r, :n] = flat[start : start + n]
            out[name] = torch.from_numpy(padded)
        return out

    @classmethod
    def open(cls, directory: Path, stored=None, per_token=None) -> TeacherOutputs:
        """The outputs a cache directory holds (its meta.json says which, unless given),
        memory-mapped: nothing is read until a batch needs it."""
        if stored is None:
            meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
            stored, per_token = meta["stored"], meta["per_token"]
        values = {n: np.load(directory / f"{n}.npy", mmap_mode="r") for n in stored}
        rows = np.load(directory / "rows.npy", mmap_mode="r") if per_token else None
        return cls(values, rows)


def top_k_parts(name: str, logits: torch.Tensor, k: int, temperature: float) -> dict:
    """What the cache keeps of a full-vocabulary output: the top-k logits, their ids, and
    the log-sum-exp of all logits / temperature (so the rest's probability is known)."""
    values, ids = logits.topk(min(k, logits.shape[-1]), dim=-1)
    lse = torch.logsumexp(logits / temperature, dim=-1)
    return {
        f"{name}{TOP_K_VALUES}": values,
        f"{name}{TOP_K_IDS}": ids.to(torch.int32),
        f"{name}{LOG_SUM_EXP}": lse,
    }


def top_k_mass(outputs: TeacherOutputs, name: str, temperature: float) -> float:
    """Mean over positions of the probability the cached top-k tokens hold at `temperature`
    (read in chunks: the arrays may be far larger than memory)."""
    values, lse = outputs.values[name + TOP_K_VALUES], outputs.values[name + LOG_SUM_EXP]
    total, chunk = 0.0, 1 << 16
    for start in range(0, len(lse), chunk):
        v = torch.from_numpy(np.array(values[start : start + chunk])) / temperature
        m = torch.from_numpy(np.array(lse[start : start + chunk]))
        total += float(torch.exp(v - m.unsqueeze(-1)).sum(-1).double().sum())
    return total / max(len(lse), 1)


@torch.no_grad()
def compute_outputs(
    teacher, features, collator, output_names, span: bool, directory: Path,
    batch_size: int = 64, top_k: int | None = None, temperature: float = 1.0, device=None,
    bf16: bool = False,
) -> list[str]:  # fmt: skip
    """Run the teacher once over every feature (longest-first batches: little padding) on
    `device` (default: where its weights are), stored as float32, each batch straight into
    memory-mapped arrays in `directory`, so that memory does not grow with the data; returns
    the names of the arrays stored. The teacher goes back where it was afterwards."""
    teacher.eval()
    home = home_device(teacher)
    device = torch.device(device) if device is not None else home
    teacher.to(device)
    try:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            return _write_outputs(
                teacher, features, collator, output_names, span, directory, batch_size, top_k,
                temperature, device,
            )  # fmt: skip
    finally:
        teacher.to(home)


def home_device(teacher) -> torch.device:
    """Where the teacher's weights are (the CPU for a module without any)."""
    weights = teacher.parameters() if hasattr(teacher, "parameters") else iter(())
    return next(iter(weights), torch.empty(0)).device


def _write_outputs(
    teacher, features, collator, output_names, span, directory, batch_size, top_k, temperature,
    device,
) -> list[str]:  # fmt: skip
    from numpy.lib.format import open_memmap

    inputs = [
        x for x in features.column_names if x in ("input_ids", "attention_mask", "token_type_ids")
    ]
    lengths = np.asarray(
        [len(x) for rows in _column_chunks(features, "input_ids") for x in rows], dtype=np.int64
    )
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if span else None
    if span:
        np.save(directory / "rows.npy", np.stack([starts, lengths], axis=1))
    order = np.argsort(-lengths, kind="stable")
    arrays: dict[str, np.ndarray] = {}
    for first in range(0, len(order), batch_size):
        idx = order[first : first + batch_size].tolist()
        rows = features.select(idx)
        batch = collator([{col: r[col] for col in inputs} for r in rows])
        feed = {k: v.to(device) for k, v in forward_kwargs(teacher, batch).items()}  # tensors
        out = teacher(**feed)
        for n in output_names:
            values = get_output(out, n).float()
            parts = top_k_parts(n, values, top_k, temperature) if top_k else {n: values}
            for stored, tensor in parts.items():
                tensor = tensor.cpu().numpy()
                if stored not in arrays:  # its trailing shape is known from the first batch
                    trailing = tensor.shape[2:] if span else tensor.shape[1:]
                    shape = (int(lengths.sum()) if span else len(features), *trailing)
                    arrays[stored] = open_memmap(
                        directory / f"{stored}.npy", mode="w+", dtype=tensor.dtype, shape=shape
                    )
                for k, row in enumerate(idx):
                    if span:
                        arrays[stored][starts[row] : starts[row] + lengths[row]] = tensor[
                            k, : lengths[row]
                        ]
                    else:
                        arrays[stored][row] = tensor[k]
    for array in arrays.values():
        array.flush()
    return list(arrays)


def cache_key(teacher, features, output_names, top_k=None, temperature=1.0, bf16=False) -> str:
    inputs = [
        x for x in features.column_names if x in ("input_ids", "attention_mask", "token_type_ids")
    ]
    parts = [
        f"v{CACHE_VERSION}",
        teacher_fingerprint(teacher),
        features_fingerprint(features, inputs),
        ",".join(output_names),
    ]
    if top_k:  # the log-sum-exp is taken at the temperature
        parts.append(f"top{top_k}@T{temperature}")
    if bf16:
        parts.append("bf16 autocast")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def load_or_compute(
    teacher, features, collator, output_names, span: bool, cache_dir=None, batch_size: int = 64,
    top_k: int | None = None, temperature: float = 1.0, device=None, bf16: bool = False,
) -> tuple[TeacherOutputs, dict]:  # fmt: skip
    """The teacher's outputs for `features`, from the disk cache or computed and stored on
    `device` (with top_k: the k largest logits per position and what the rest weighs; with
    bf16: under bfloat16 autocast)."""
    from pocketsize.fsutil import atomic_dir, write_json

    started = time.time()
    key = cache_key(teacher, features, tuple(output_names), top_k, temperature, bf16)
    directory = Path(cache_dir or user_cache_dir() / "teacher-outputs") / key
    info = {"key": key, "dir": str(directory), "bf16": bf16}
    if (directory / "meta.json").is_file():
        outputs = TeacherOutputs.open(directory)
        if len(outputs) == len(features):
            meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
            info.update({k: meta[k] for k in ("top_k", "top_k_mass") if k in meta})
            info.update(hit=True, seconds=round(time.time() - started, 3))
            return outputs, info
    with atomic_dir(directory, overwrite=True) as tmp:
        stored = compute_outputs(
            teacher, features, collator, tuple(output_names), span, tmp, batch_size, top_k,
            temperature, device, bf16,
        )  # fmt: skip
        meta = {
            "rows": len(features),
            "outputs": list(output_names),
            "stored": stored,
            "per_token": span,
            "bf16": bf16,
            "version": CACHE_VERSION,
        }
        if top_k:
            computed = TeacherOutputs.open(tmp, stored, span)
            masses = [top_k_mass(computed, n, temperature) for n in output_names]
            meta.update(top_k=top_k, temperature=temperature, top_k_mass=round(min(masses), 6))
        write_json(tmp / "meta.json", meta)
    info.update({k: meta[k] for k in ("top_k", "top_k_mass") if k in meta})
    info.update(
        hit=False,
        seconds=round(time.time() - started, 3),
        device=str(device or home_device(teacher)),
    )
    return TeacherOutputs.open(directory), info


def describe(info: dict) -> str:
    return json.dumps(info)
