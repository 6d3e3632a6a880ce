"""BERT's layout: BERT, RoBERTa, XLM-R, CamemBERT, ELECTRA, ERNIE (`encoder.layer[i]` with
`attention.self.{query,key,value}`, `attention.output.dense`, `intermediate.dense`,
`output.dense`).

Heads go through transformers' own `prune_heads`, which records them in `config.pruned_heads`;
`from_pretrained` re-applies that record before loading the weights, so layers may keep
different head counts and still load with the Auto classes.

Hidden width (ranking and the task head: prune/width.py): BERT's attention computes head_size =
hidden_size / num_attention_heads, so the new width is a multiple of the head size, the config
states width / head_size heads, and each layer's surplus heads are recorded in `pruned_heads` (a
layer keeping k heads holds them in positions 0..k-1). The result is a plain transformers model
that `from_pretrained`, optimum's exporter and ONNX Runtime's fusions take as is.
"""

from __future__ import annotations

from pocketsize.errors import PocketsizeError
from pocketsize.prune.layouts.base import TransformersHeadPruning, register


@register
class BertLayout(TransformersHeadPruning):
    model_types = ("bert", "roberta", "xlm-roberta", "camembert", "electra", "ernie")
    layer_modules = (
        "attention.self.query",
        "attention.output.dense",
        "intermediate.dense",
        "output.dense",
    )
    width = True

    def layers(self) -> list:
        encoder = getattr(self.model.base_model, "encoder", None)
        if encoder is None or not hasattr(encoder, "layer"):
            raise PocketsizeError(
                f"{self.config.model_type} model has no encoder.layer, so its layout is not "
                "BERT's; structured pruning cannot find its heads"
            )
        return list(encoder.layer)

    def attention_output(self, layer):
        return layer.attention.output.dense

    def ffn_inputs(self, layer) -> list:
        return [layer.intermediate.dense]

    def ffn_output(self, layer):
        return layer.output.dense

    # ---- hidden width ----
    def plan_width(self, fraction: float, kept_heads: int | None) -> int:
        width, size = self.config.hidden_size, self.head_size()
        new = int(round((1 - fraction) * width / size)) * size
        if kept_heads is None:
            kept_heads = max(len(self.current_heads(i)) for i in range(len(self.layers())))
        if new < max(kept_heads, 1) * size:
            most = 1 - kept_heads * size / width
            fix = f"or at most width={most:.3f}" if most > 0 else "first"
            raise PocketsizeError(
                f"width={fraction} leaves {new} channels, room for {new // size} heads of size "
                f"{size}, but a layer keeps {kept_heads}; remove heads too (heads=) {fix}"
            )
        return new

    def width_norms(self) -> list:
        norms = [self.model.base_model.embeddings.LayerNorm]
        for layer in self.layers():
            norms += [layer.attention.output.LayerNorm, layer.output.LayerNorm]
        return norms

    def body_modules(self):
        base = self.model.base_model  # its pooler belongs to the task head
        return [*base.embeddings.modules(), *base.encoder.modules()]

    def remove_width(self, keep) -> None:
        import torch
        from transformers.pytorch_utils import prune_linear_layer

        emb = self.model.base_model.embeddings
        size = self.head_size()
        for table in (emb.word_embeddings, emb.position_embeddings,
                      getattr(emb, "token_type_embeddings", None)):  # fmt: skip
            if table is not None:
                # in place, so that a VocabClampedEmbedding keeps its class and clamp
                table.weight = torch.nn.Parameter(table.weight.detach()[:, keep].clone())
                table.embedding_dim = len(keep)
        emb.LayerNorm = _sliced_layer_norm(emb.LayerNorm, keep)
        heads_per_layer = []
        for layer in self.layers():
            attn = layer.attention
            for part in ("query", "key", "value"):
                linear = getattr(attn.self, part)
                setattr(attn.self, part, prune_linear_layer(linear, keep, dim=1))
            attn.output.dense = prune_linear_layer(attn.output.dense, keep, dim=0)
            attn.output.LayerNorm = _sliced_layer_norm(attn.output.LayerNorm, keep)
            layer.intermediate.dense = prune_linear_layer(layer.intermediate.dense, keep, dim=1)
            layer.output.dense = prune_linear_layer(layer.output.dense, keep, dim=0)
            layer.output.LayerNorm = _sliced_layer_norm(layer.output.LayerNorm, keep)
            heads_per_layer.append(attn.self.num_attention_heads)

        n_heads = len(keep) // size
        self.config.hidden_size = len(keep)
        self.config.num_attention_heads = n_heads
        # each layer holds its k heads in positions 0..k-1; the config's other heads are pruned
        pruned = {i: list(range(k, n_heads)) for i, k in enumerate(heads_per_layer) if k < n_heads}
        self.config.pruned_heads = pruned
        for i, layer in enumerate(self.layers()):
            layer.attention.pruned_heads = set(pruned.get(i, []))


def _sliced_layer_norm(norm, keep):
    import torch

    new = torch.nn.LayerNorm(len(keep), eps=norm.eps, elementwise_affine=True)
    with torch.no_grad():
        new.weight.copy_(norm.weight[keep])
        new.bias.copy_(norm.bias[keep])
    return new
