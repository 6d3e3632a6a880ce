"""Teacher-output cache: with output-only losses the teacher runs once per input, ever.

Outputs are stored on disk under a key made of the teacher's weights, the tokenized inputs
(which covers the data, the tokenizer and the max length) and the output names, so every
epoch and every later run with the same teacher and data reads them instead of running the
teacher. Files: outputs.safetensors (one flat tensor per output + row offsets) and meta.json,
written through atomic_dir so an interrupted computation leaves nothing behind.

A token-level teacher (a causal LM) has a distribution over the whole vocabulary at every
position, too big to keep: with `top_k` the cache keeps, per position, the k largest logits,
their token ids and the log-sum-exp of all logits at the distillation temperature, which is
what the top-k KL (losses.token_kl) needs to give the rest of the vocabulary its share of the
probability; meta.json records k and the mean probability mass the k tokens cover.
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

CACHE_VERSION = 3  # 2: per-token outputs keep their trailing shape; 3: integer ids, top-k
_NEG = -1e4  # padded span positions (masked by the losses anyway)


def teacher_fingerprint(model: torch.nn.Module) -> str:
    h = hashlib.sha256(type(model).__name__.encode())
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def features_fingerprint(features, columns) -> str:
    h = hashlib.sha256()
    for col in sorted(columns):
        h.update(col.encode())
        for row in features[col]:
            h.update(np.asarray(row, dtype=np.int64).tobytes())
            h.update(b"|")
    return h.hexdigest()


class TeacherOutputs:
    """Teacher outputs per feature row: flat values + row offsets (in positions), gathered into
    padded batches. A per-token output keeps its trailing shape (e.g. one logit per tag for
    each token of a token classifier; nothing for QA's one logit per token)."""

    def __init__(self, values: dict[str, torch.Tensor], offsets: torch.Tensor, trailing=None):
        self.values = values
        self.offsets = offsets
        self.trailing = {n: tuple(trailing.get(n, ())) for n in values} if trailing else {}

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def batch(self, index: torch.Tensor, width: int | None = None) -> dict[str, torch.Tensor]:
        out = {}
        starts, ends = self.offsets[index], self.offsets[index + 1]
        lengths = ends - starts
        for name, flat in self.values.items():
            trailing = self.trailing.get(name, ())
            size = int(np.prod(trailing)) if trailing else 1
            rows = [
                flat[s * size : e * size].reshape(-1, *trailing)
                for s, e in zip(starts.tolist(), ends.tolist())
            ]
            if bool((lengths == lengths[0]).all()) and width is None:
                out[name] = torch.stack(rows)
            else:
                w = width or int(lengths.max())
                fill = _NEG if flat.is_floating_point() else 0  # a token id must stay valid
                padded = torch.full((len(rows), w, *trailing), fill, dtype=flat.dtype)
                for r, row in enumerate(rows):
                    padded[r, : len(row)] = row[:w]
                out[name] = padded
        return out

    def tensors(self) -> dict[str, torch.Tensor]:
        """What the cache file stores: values, offsets and each output's trailing shape."""
        shapes = {
            f"__trailing__{n}": torch.tensor(self.trailing.get(n, ()), dtype=torch.int64)
            for n in self.values
        }
        return {**self.values, "__offsets__": self.offsets, **shapes}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> TeacherOutputs:
        tensors = dict(tensors)
        offsets = tensors.pop("__offsets__")
        trailing = {
            k[len("__trailing__") :]: tuple(tensors.pop(k).tolist())
            for k in list(tensors)
            if k.startswith("__trailing__")
        }
        return cls(tensors, offsets, trailing)


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
    """Mean over positions of the probability the cached top-k tokens hold at `temperature`."""
    values, lse = outputs.values[name + TOP_K_VALUES], outputs.values[name + LOG_SUM_EXP]
    k = outputs.trailing[name + TOP_K_VALUES][0]
    mass = torch.exp(values.reshape(-1, k) / temperature - lse.reshape(-1, 1)).sum(-1)
    return float(mass.mean())


@torch.no_grad()
def compute_outputs(
    teacher, features, collator, output_names, span: bool, batch_size: int = 64,
    top_k: int | None = None, temperature: float = 1.0,
):  # fmt: skip
    """Run the teacher once over every feature (longest-first batches: little padding)."""
    teacher.eval()
    inputs = [
        x for x in features.column_names if x in ("input_ids", "attention_mask", "token_type_ids")
    ]
    lengths = np.asarray([len(x) for x in features["input_ids"]])
    order = np.argsort(-lengths, kind="stable")
    per_row: dict[str, list] = {}
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size].tolist()
        rows = features.select(idx)
        batch = collator([{col: r[col] for col in inputs} for r in rows])
        out = teacher(**forward_kwargs(teacher, batch))
        for n in output_names:
            values = get_output(out, n).float()
            parts = top_k_parts(n, values, top_k, temperature) if top_k else {n: values}
            for stored, tensor in parts.items():
                column = per_row.setdefault(stored, [None] * len(features))
                for k, row in enumerate(idx):
                    column[row] = tensor[k, : lengths[row]] if span else tensor[k]
    # span rows are (positions, *trailing); a per-example row is one vector (its positions)
    trailing = {n: tuple(rows[0].shape[1:]) if span else () for n, rows in per_row.items()}
    offsets = [0]
    for row in next(iter(per_row.values())):
        offsets.append(offsets[-1] + row.shape[0])
    values = {n: torch.cat([r.reshape(-1) for r in rows]) for n, rows in per_row.items()}
    return TeacherOutputs(values, torch.tensor(offsets, dtype=torch.int64), trailing)


def cache_key(teacher, features, output_names, top_k=None, temperature=1.0) -> str:
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
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def load_or_compute(
    teacher, features, collator, output_names, span: bool, cache_dir=None, batch_size: int = 64,
    top_k: int | None = None, temperature: float = 1.0,
) -> tuple[TeacherOutputs, dict]:  # fmt: skip
    """The teacher's outputs for `features`, from the disk cache or computed and stored
    (with top_k: the k largest logits per position and what the rest weighs, see above)."""
    from safetensors.torch import load_file, save_file

    from pocketsize.fsutil import atomic_dir, write_json

    started = time.time()
    key = cache_key(teacher, features, tuple(output_names), top_k, temperature)
    directory = Path(cache_dir or user_cache_dir() / "teacher-outputs") / key
    info = {"key": key, "dir": str(directory)}
    if (directory / "outputs.safetensors").is_file():
        outputs = TeacherOutputs.from_tensors(load_file(str(directory / "outputs.safetensors")))
        if len(outputs) == len(features):
            meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
            info.update({k: meta[k] for k in ("top_k", "top_k_mass") if k in meta})
            info.update(hit=True, seconds=round(time.time() - started, 3))
            return outputs, info
    outputs = compute_outputs(
        teacher, features, collator, tuple(output_names), span, batch_size, top_k, temperature
    )
    meta = {"rows": len(outputs), "outputs": list(output_names), "version": CACHE_VERSION}
    if top_k:
        masses = [top_k_mass(outputs, n, temperature) for n in output_names]
        meta.update(top_k=top_k, temperature=temperature, top_k_mass=round(min(masses), 6))
    with atomic_dir(directory, overwrite=True) as tmp:
        save_file(outputs.tensors(), str(tmp / "outputs.safetensors"))
        write_json(tmp / "meta.json", meta)
    info.update({k: meta[k] for k in ("top_k", "top_k_mass") if k in meta})
    info.update(hit=False, seconds=round(time.time() - started, 3))
    return outputs, info


def describe(info: dict) -> str:
    return json.dumps(info)
