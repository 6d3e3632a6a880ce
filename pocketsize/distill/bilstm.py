"""The BiLSTM student (Tang et al. 2019) and pocketsize's loader for non-transformers models.

A non-transformers model directory holds `config.json` (with `pocketsize_class`, the import
path of the module's class, and its constructor arguments), `model.safetensors` and the
tokenizer files. Loading imports that class from installed code and loads the tensors:
never pickles, never code from the directory itself.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from pocketsize.errors import PocketsizeError

MODEL_TYPE = "pocketsize-bilstm"


@dataclass
class BiLSTMConfig:
    vocab_size: int
    num_labels: int = 2
    embed_dim: int = 128
    hidden_size: int = 150
    num_layers: int = 1
    fc_size: int = 200
    dropout: float = 0.1
    pad_token_id: int = 0
    id2label: dict = field(default_factory=dict)
    label2id: dict = field(default_factory=dict)
    model_type: str = MODEL_TYPE

    def __post_init__(self):
        # JSON turns int keys into strings; put them back.
        self.id2label = {int(k): v for k, v in self.id2label.items()}
        if not self.id2label:
            self.id2label = {i: f"LABEL_{i}" for i in range(self.num_labels)}
        if not self.label2id:
            self.label2id = {v: k for k, v in self.id2label.items()}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def reverse_within_length(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each (right-padded) sequence's first `length` steps; padding stays at the end."""
    pos = torch.arange(x.shape[1], device=x.device).unsqueeze(0)
    last = lengths.unsqueeze(1)
    index = torch.where(pos < last, last - 1 - pos, pos)
    return x.gather(1, index.unsqueeze(-1).expand_as(x))


class BiLSTMClassifier(nn.Module):
    """Embeddings -> BiLSTM -> masked max-pool over time -> ReLU layer -> label logits.

    Tang et al. classify from the final LSTM states. Here each direction is its own LSTM and
    the backward one reads every sequence reversed within its length, so padding can never
    reach a real token's state (what pack_padded_sequence does, but as plain gathers that
    export to ONNX); a masked max-pool then summarises the sequence.
    """

    def __init__(self, config: BiLSTMConfig | dict):
        super().__init__()
        if isinstance(config, dict):
            config = BiLSTMConfig(**{k: v for k, v in config.items() if k != "pocketsize_class"})
        self.config = config
        self.embeddings = nn.Embedding(
            config.vocab_size, config.embed_dim, padding_idx=config.pad_token_id
        )
        self.forward_lstms = nn.ModuleList()
        self.backward_lstms = nn.ModuleList()
        width = config.embed_dim
        for _ in range(config.num_layers):
            self.forward_lstms.append(nn.LSTM(width, config.hidden_size, batch_first=True))
            self.backward_lstms.append(nn.LSTM(width, config.hidden_size, batch_first=True))
            width = 2 * config.hidden_size
        self.dropout = nn.Dropout(config.dropout)
        self.fc = nn.Linear(2 * config.hidden_size, config.fc_size)
        self.classifier = nn.Linear(config.fc_size, config.num_labels)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings

    def forward(self, input_ids, attention_mask=None, labels=None, **_):
        from transformers.modeling_outputs import SequenceClassifierOutput

        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        lengths = attention_mask.sum(1).clamp(min=1)
        h = self.dropout(self.embeddings(input_ids))
        for k, (fwd, bwd) in enumerate(zip(self.forward_lstms, self.backward_lstms)):
            ahead, _ = fwd(h)
            behind, _ = bwd(reverse_within_length(h, lengths))
            h = torch.cat([ahead, reverse_within_length(behind, lengths)], dim=-1)
            if k < len(self.forward_lstms) - 1:
                h = self.dropout(h)
        h = h.masked_fill(attention_mask.unsqueeze(-1) == 0, -1e4)
        pooled = h.max(dim=1).values
        logits = self.classifier(self.dropout(torch.relu(self.fc(pooled))))
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def bilstm_from_teacher(
    teacher: nn.Module,
    tokenizer,
    num_labels: int,
    id2label: dict | None = None,
    embed_dim: int | None = 128,
    hidden_size: int = 150,
    num_layers: int = 1,
    fc_size: int = 200,
    dropout: float = 0.1,
) -> BiLSTMClassifier:
    """A BiLSTM on the teacher's tokenizer, its embeddings copied from the teacher's.

    When `embed_dim` is smaller than the teacher's width the teacher's word embeddings are
    projected onto their top principal directions (an SVD), which keeps most of what they
    encode at a fraction of the parameters (the embedding table dominates a BiLSTM's size).
    """
    weight = teacher.get_input_embeddings().weight.detach().float()
    width = weight.shape[1]
    embed_dim = width if embed_dim is None else int(embed_dim)
    if embed_dim > width:
        raise PocketsizeError(
            f"embed_dim {embed_dim} exceeds the teacher's embedding width {width}; use <= {width}"
        )
    if embed_dim < width:
        centred = weight - weight.mean(0, keepdim=True)
        _, _, v = torch.linalg.svd(centred, full_matrices=False)
        weight = centred @ v[:embed_dim].T
    config = BiLSTMConfig(
        vocab_size=weight.shape[0],
        num_labels=num_labels,
        embed_dim=embed_dim,
        hidden_size=hidden_size,
        num_layers=num_layers,
        fc_size=fc_size,
        dropout=dropout,
        pad_token_id=tokenizer.pad_token_id or 0,
        id2label=dict(id2label or {}),
    )
    model = BiLSTMClassifier(config)
    with torch.no_grad():
        model.embeddings.weight.copy_(weight)
    return model


def is_module_dir(path) -> bool:
    config = Path(path) / "config.json" if isinstance(path, (str, os.PathLike)) else None
    if config is None or not config.is_file():
        return False
    try:
        return "pocketsize_class" in json.loads(config.read_text())
    except (OSError, ValueError):
        return False


def save_module(model: nn.Module, out_dir, tokenizer=None) -> None:
    """Save a non-transformers module: config.json (class path + its config) + safetensors."""
    from safetensors.torch import save_model

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = getattr(model, "config", None)
    if hasattr(config, "to_dict"):
        config = config.to_dict()
    elif not isinstance(config, dict):
        config = {}
    cls = type(model)
    config = {**config, "pocketsize_class": f"{cls.__module__}:{cls.__qualname__}"}
    (out_dir / "config.json").write_text(json.dumps(config, indent=2, default=str) + "\n")
    save_model(model, str(out_dir / "model.safetensors"))
    if tokenizer is not None:
        tokenizer.save_pretrained(out_dir)


def load_module(path, trust_module_code: bool = False) -> nn.Module:
    """Load a directory written by save_module: import the class, build it, load the tensors.

    config.json names the class by import path. pocketsize's own classes load as they are; a
    class from any other module is imported only with trust_module_code=True (like
    transformers' trust_remote_code), since importing a module named in a file runs its code.
    """
    from safetensors.torch import load_model

    path = Path(path)
    if not is_module_dir(path):
        raise PocketsizeError(
            f"{path} is not a pocketsize module directory (no config.json with pocketsize_class)"
        )
    config = json.loads((path / "config.json").read_text())
    module_name, _, qualname = config.pop("pocketsize_class").partition(":")
    if (
        not (module_name == "pocketsize" or module_name.startswith("pocketsize."))
        and not trust_module_code
    ):
        raise PocketsizeError(
            f"{path} names the class {module_name}:{qualname} outside pocketsize; pass "
            "trust_module_code=True (CLI: --trust-module-code) to import it if you trust that code"
        )
    try:
        cls = importlib.import_module(module_name)
        for part in qualname.split("."):
            cls = getattr(cls, part)
    except (ImportError, AttributeError) as e:
        raise PocketsizeError(
            f"cannot import {module_name}:{qualname} to load {path}; install the package that "
            "defines it"
        ) from e
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise PocketsizeError(
            f"{path}: {module_name}:{qualname} is not a torch.nn.Module class; refusing to call it"
        )
    try:
        model = cls(config) if config else cls()
    except TypeError as e:
        raise PocketsizeError(
            f"cannot build {qualname} from {path}/config.json ({e}); give the class a "
            "constructor that takes its config dict"
        ) from e
    load_model(model, str(path / "model.safetensors"))
    model.eval()
    return model


def load_bilstm(path) -> BiLSTMClassifier:
    """Load a BiLSTM student directory written by pocketsize."""
    model = load_module(path)
    if not isinstance(model, BiLSTMClassifier):
        raise PocketsizeError(f"{path} holds a {type(model).__name__}, not a BiLSTM student")
    return model
