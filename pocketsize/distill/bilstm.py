"""The BiLSTM student (Tang et al. 2019).

It saves and loads as a pocketsize module directory (pocketsize.formats.module_dir), like any
other non-transformers model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import nn

from pocketsize.errors import PocketsizeError
from pocketsize.formats.module_dir import load_module_dir as load_module  # noqa: F401

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


def load_bilstm(path) -> BiLSTMClassifier:
    """Load a BiLSTM student directory written by pocketsize."""
    model = load_module(path)
    if not isinstance(model, BiLSTMClassifier):
        raise PocketsizeError(f"{path} holds a {type(model).__name__}, not a BiLSTM student")
    return model
