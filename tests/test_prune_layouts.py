"""Structured pruning on every registered layout (prune/layouts/): DistilBERT, ModernBERT,
DeBERTa-v2/v3, MPNet, and the Llama layout's decoders (Llama, Mistral, Qwen2, Qwen3, SmolLM3) with
depth, grouped-query heads and MLP neurons.

The check that cannot be hollow: the pruned model, reloaded from disk with the Auto class, gives
the logits of the ORIGINAL model in which the same units are masked to zero — a removed head's
columns of the attention output projection, a removed neuron's column of the MLP's down
projection, and (pre-norm blocks) a removed layer's attention and MLP outputs, which leaves the
residual stream untouched. The modules masked here are named per architecture in this file, not
taken from the layout under test.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
from zoo import (
    HEAD_DIM,
    lm_data,
    make_cls_dataset,
    make_tiny_bert,
    make_tiny_decoder,
    make_tiny_distilbert,
    make_tiny_encoder,
    make_tiny_gpt2,
)

from pocketsize.errors import PocketsizeError
from pocketsize.prune import prune

# per model_type: (the layer list, attention output projection, MLP down projection); their
# weights are Linear's [outputs, inputs], except GPT-2's Conv1D, stored [inputs, outputs]
DECODER = ("model.layers", "self_attn.o_proj", "mlp.down_proj")
MASKED_MODULES = {
    "distilbert": ("distilbert.transformer.layer", "attention.out_lin", "ffn.lin2"),
    "modernbert": ("model.layers", "attn.Wo", "mlp.Wo"),
    "deberta-v2": ("deberta.encoder.layer", "attention.output.dense", "output.dense"),
    "mpnet": ("mpnet.encoder.layer", "attention.attn.o", "output.dense"),
    "gpt2": ("transformer.h", "attn.c_proj", "mlp.c_proj"),
    "llama": DECODER,
    "mistral": DECODER,
    "qwen2": DECODER,
    "qwen3": DECODER,
    "smollm3": DECODER,
}


pytestmark = pytest.mark.usefixtures("single_thread")


def masked_original(model, record: dict, head_size: int):
    """A copy of the unpruned model with what `pruning.json` says was removed set to zero."""
    layers_path, attn_out, ffn_out = MASKED_MODULES[model.config.model_type]
    masked = copy.deepcopy(model)
    layers = masked.get_submodule(layers_path)
    depth = record.get("depth", {})
    kept = depth.get("kept_layers", list(range(len(layers))))
    with torch.no_grad():
        for i in depth.get("removed_layers", []):
            for path in (attn_out, ffn_out):
                linear = layers[i].get_submodule(path)
                linear.weight.zero_()
                if linear.bias is not None:
                    linear.bias.zero_()
        # head and neuron plans index the layers left after depth pruning
        for new_index, old_index in enumerate(kept):
            layer = layers[old_index]
            for h in record.get("heads", {}).get("removed", {}).get(str(new_index), []):
                inputs_of(layer.get_submodule(attn_out))[:, h * head_size : (h + 1) * head_size] = 0
            for j in record.get("ffn", {}).get("removed", {}).get(str(new_index), []):
                inputs_of(layer.get_submodule(ffn_out))[:, j] = 0
    return masked


def inputs_of(module):
    """The weight as [outputs, inputs] (a view: writing to it writes the weight)."""
    from transformers.pytorch_utils import Conv1D

    return module.weight.T if isinstance(module, Conv1D) else module.weight


def logits_of(model, tokenizer, texts):
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits


def assert_pruned_equals_masked(source_model, out, tokenizer, texts, head_size, auto_class):
    record = json.loads((out / "stage.json").read_text())
    pruned = auto_class.from_pretrained(out).eval()
    masked = masked_original(source_model, record, head_size).eval()
    expected = logits_of(masked, tokenizer, texts)
    got = logits_of(pruned, tokenizer, texts)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # and the masking mattered: the unmasked original differs
    assert (logits_of(source_model.eval(), tokenizer, texts) - expected).abs().max() > 1e-3
    return pruned, record


# ---- DistilBERT ----


def silence_channels(norms, dead) -> None:
    """Zero the `dead` channels of every norm's output (weight, and bias where there is one),
    so that width pruning must find them as the least active."""
    with torch.no_grad():
        for norm in norms:
            norm.weight[dead] = 0
            if getattr(norm, "bias", None) is not None:
                norm.bias[dead] = 0


def test_distilbert_heads_and_neurons_equal_the_masked_original(tmp_path):
    from transformers import AutoModelForSequenceClassification

    model, tokenizer = make_tiny_distilbert(tmp_path / "src")
    data = make_cls_dataset()
    out = prune(
        tmp_path / "src", data, heads=0.5, ffn=0.5, scope="global", out=tmp_path / "p",
        verbose=False,
    )  # fmt: skip
    texts = list(data["test"]["text"])[:6]
    pruned, record = assert_pruned_equals_masked(
        model, out, tokenizer, texts, 8, AutoModelForSequenceClassification
    )
    assert pruned.config.hidden_dim == 19  # 37 - round(18.5)
    # global scope: layers keep different head counts, recorded in config.pruned_heads
    assert sum(record["heads"]["kept_per_layer"]) == 4
    assert pruned.config.pruned_heads


def test_distilbert_refuses_depth_with_the_alternative(tmp_path):
    make_tiny_distilbert(tmp_path / "src")
    data = make_cls_dataset()
    with pytest.raises(PocketsizeError, match="post-norm.*truncate"):
        prune(tmp_path / "src", data, depth=0.5, out=tmp_path / "x", verbose=False)
    assert not (tmp_path / "x").exists()


def test_distilbert_width_keeps_the_active_channels_reloads_and_exports(tmp_path):
    """Channels silenced at every LayerNorm go first; the narrower model (config dim and heads,
    the surplus heads in pruned_heads, the pre-classifier's own outputs) loads with the Auto
    class and exports with optimum, matching PyTorch."""
    from transformers import AutoModelForSequenceClassification

    from pocketsize.export import export

    model, tokenizer = make_tiny_distilbert(tmp_path / "src")
    dead = [1, 5, 6, 12, 20, 21, 30, 31]
    base = model.distilbert
    norms = [base.embeddings.LayerNorm] + [
        n for layer in base.transformer.layer for n in (layer.sa_layer_norm, layer.output_layer_norm)
    ]  # fmt: skip
    silence_channels(norms, dead)
    model.save_pretrained(tmp_path / "src")
    data = make_cls_dataset()
    out = prune(
        tmp_path / "src", data, heads=0.5, ffn=0.5, width=0.5, out=tmp_path / "p", verbose=False
    )
    width = json.loads((out / "stage.json").read_text())["width"]
    assert len(width["kept_channels"]) == 16 and not set(width["kept_channels"]) & set(dead)
    assert [h["name"] for h in width["head_layers"]] == ["pre_classifier", "classifier"]
    pruned = AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert (pruned.config.dim, pruned.config.n_heads, pruned.config.hidden_dim) == (16, 2, 19)
    assert pruned.pre_classifier.weight.shape == (16, 16)
    onnx_dir = export(out, tmp_path / "onnx")
    manifest = json.loads((onnx_dir / "stage.json").read_text())
    assert manifest["exporter"] == "optimum" and manifest["parity_max_abs_diff"] < 1e-4


def test_distilbert_with_sinusoidal_positions_keeps_its_width(tmp_path):
    make_tiny_distilbert(tmp_path / "src", sinusoidal_pos_embds=True)
    with pytest.raises(PocketsizeError, match="sinusoidal_pos_embds"):
        prune(tmp_path / "src", make_cls_dataset(), heads=0.5, width=0.5, out=tmp_path / "x",
              verbose=False)  # fmt: skip
    assert not (tmp_path / "x").exists()


# ---- ModernBERT and DeBERTa-v2/v3 ----


# longer than ModernBERT's local window (4) and DeBERTa's position buckets (8)
ENCODER_TEXTS = [
    "the film was good and the plot was bad and the cast was great",
    "the story was dull",
    "the music was wonderful and the ending was awful and the film was bad",
]


def test_modernbert_depth_and_neurons_equal_the_masked_original(tmp_path):
    """Wi stacks the input and gate halves: neuron j goes from both, and from Wo's column j.
    Depth drops a run of layers that starts at a global one, so every kept layer keeps its
    kind (global every 2nd layer here: 0 G, 1 L, 2 G, 3 L, 4 G; runs [2, 3] and [4])."""
    from transformers import AutoModelForSequenceClassification

    model, tokenizer = make_tiny_encoder(tmp_path / "src", "modernbert", num_hidden_layers=5)
    out = prune(
        tmp_path / "src", make_cls_dataset(), depth=0.4, ffn=0.5, out=tmp_path / "p",
        verbose=False,
    )  # fmt: skip
    pruned, record = assert_pruned_equals_masked(
        model, out, tokenizer, ENCODER_TEXTS, 8, AutoModelForSequenceClassification
    )
    assert record["depth"]["removed_layers"] in ([2, 3], [4])
    assert pruned.config.intermediate_size == 19
    assert pruned.model.layers[0].mlp.Wi.out_features == 2 * 19
    kinds = [layer.attn.local_attention for layer in pruned.model.layers]
    assert kinds == [(-1, -1), (2, 2), (-1, -1), (2, 2), (-1, -1)][: len(kinds)]


def test_modernbert_layers_keep_their_kind_when_a_run_is_dropped(tmp_path):
    """Dropping the middle run [2, 3] of five layers: the saved and reloaded model equals the
    original with those layers masked, so layer 4 still attends globally at position 2. A
    selection that moves a layer to a position of the other kind, or drops layer 0, is refused
    (a truncated student saved that way would reload as a different model)."""
    from transformers import AutoModelForSequenceClassification

    from pocketsize.distill.students import truncate

    model, tokenizer = make_tiny_encoder(tmp_path / "src", "modernbert", num_hidden_layers=5)
    student, _ = truncate(model, [0, 1, 4])
    student.save_pretrained(tmp_path / "s")
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "s").eval()
    record = {"depth": {"removed_layers": [2, 3], "kept_layers": [0, 1, 4]}}
    masked = masked_original(model, record, 8).eval()
    expected = logits_of(masked, tokenizer, ENCODER_TEXTS)
    torch.testing.assert_close(logits_of(reloaded, tokenizer, ENCODER_TEXTS), expected)
    assert (logits_of(model, tokenizer, ENCODER_TEXTS) - expected).abs().max() > 1e-3

    with pytest.raises(PocketsizeError, match="layer 2 attends globally but would become "):
        truncate(model, [0, 2])
    with pytest.raises(PocketsizeError, match="layer 1 attends locally.*truncate:0,1"):
        truncate(model, [1, 2])


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_modernbert_heads_and_width_go_together_keep_the_active_channels_and_export(
    pooling, tmp_path
):
    """The fused Wqkv loses each removed head's query, key and value rows; width keeps the 16
    channels that carry something (the others are silenced at every LayerNorm), and the task
    head's dense layer keeps 16 outputs of its own, which its LayerNorm follows. The head reads
    the first token or (the released checkpoints' setting) the mean over the tokens."""
    from transformers import AutoModelForSequenceClassification

    from pocketsize.export import export

    model, _ = make_tiny_encoder(
        tmp_path / "src", "modernbert", num_hidden_layers=4, classifier_pooling=pooling
    )
    dead = list(range(1, 32, 2))
    base = model.model
    norms = [base.embeddings.norm, base.final_norm] + [
        n for layer in base.layers for n in (layer.attn_norm, layer.mlp_norm) if hasattr(n, "weight")
    ]  # fmt: skip
    silence_channels(norms, dead)
    model.save_pretrained(tmp_path / "src")
    out = prune(
        tmp_path / "src", make_cls_dataset(), heads=0.5, width=0.5, ffn=0.5,
        out=tmp_path / "p", verbose=False,
    )  # fmt: skip
    record = json.loads((out / "stage.json").read_text())
    assert record["width"]["kept_channels"] == list(range(0, 32, 2))
    assert record["heads"]["kept_per_layer"] == [2, 2, 2, 2]
    assert [h["name"] for h in record["width"]["head_layers"]] == [
        "head.dense", "head.norm", "classifier",
    ]  # fmt: skip
    pruned, info = AutoModelForSequenceClassification.from_pretrained(out, output_loading_info=True)
    assert not any(info.values()), info  # every weight saved is read, none made up
    c = pruned.eval().config
    assert (c.hidden_size, c.num_attention_heads, c.intermediate_size) == (16, 2, 19)
    attn = pruned.model.layers[1].attn
    assert attn.Wqkv.weight.shape == (48, 16) and attn.head_dim == 8
    assert pruned.head.norm.weight.shape == (16,)
    onnx_dir = export(out, tmp_path / "onnx")
    manifest = json.loads((onnx_dir / "stage.json").read_text())
    assert manifest["exporter"] == "optimum" and manifest["parity_max_abs_diff"] < 1e-4


@pytest.mark.parametrize("ffn_score", ["activation", "magnitude"])
def test_modernbert_scores_neurons_by_both_halves_of_wi(ffn_score, tmp_path):
    make_tiny_encoder(tmp_path / "src", "modernbert")
    out = prune(
        tmp_path / "src", make_cls_dataset(), ffn=0.25, ffn_score=ffn_score, out=tmp_path / "p",
        verbose=False,
    )  # fmt: skip
    record = json.loads((out / "stage.json").read_text())
    assert record["ffn"]["intermediate_size_after"] == 28
    assert all(len(v) == 9 for v in record["ffn"]["removed"].values())


@pytest.mark.parametrize("share_att_key", [True, False])
def test_deberta_neurons_equal_the_masked_original(share_att_key, tmp_path):
    """DeBERTa-v3's shared position keys, and v2's own pos_key_proj / pos_query_proj."""
    from transformers import AutoModelForSequenceClassification

    model, tokenizer = make_tiny_encoder(
        tmp_path / "src", "deberta-v2", share_att_key=share_att_key
    )
    out = prune(tmp_path / "src", make_cls_dataset(), ffn=0.5, out=tmp_path / "p", verbose=False)
    pruned, _ = assert_pruned_equals_masked(
        model, out, tokenizer, ENCODER_TEXTS, 8, AutoModelForSequenceClassification
    )
    assert pruned.config.intermediate_size == 19
    assert hasattr(pruned.deberta.encoder.layer[0].attention.self, "pos_key_proj") != (
        share_att_key
    )


@pytest.mark.parametrize("share_att_key", [True, False])
def test_deberta_heads_and_width_go_together_keep_the_active_channels_and_export(
    share_att_key, tmp_path
):
    """Fewer heads load only with the hidden size they leave (DeBERTa's attention output is
    hidden x hidden): heads=0.5 with width=0.5 gives 2 heads of the old size 8 in 16 channels,
    the ones that carry something. The relative position table, its LayerNorm and v2's own
    position projections narrow too; the model reloads with the Auto class and exports."""
    from transformers import AutoModelForSequenceClassification

    from pocketsize.export import export

    model, _ = make_tiny_encoder(tmp_path / "src", "deberta-v2", share_att_key=share_att_key)
    dead = list(range(1, 32, 2))
    base = model.deberta
    norms = [base.embeddings.LayerNorm] + [
        n for layer in base.encoder.layer for n in (layer.attention.output.LayerNorm,
                                                    layer.output.LayerNorm)
    ]  # fmt: skip
    silence_channels(norms, dead)
    model.save_pretrained(tmp_path / "src")
    out = prune(
        tmp_path / "src", make_cls_dataset(), heads=0.5, width=0.5, ffn=0.5,
        out=tmp_path / "p", verbose=False,
    )  # fmt: skip
    record = json.loads((out / "stage.json").read_text())
    assert record["width"]["kept_channels"] == list(range(0, 32, 2))
    assert record["heads"]["kept_per_layer"] == [2, 2]
    pruned, info = AutoModelForSequenceClassification.from_pretrained(out, output_loading_info=True)
    assert not any(info.values()), info  # every weight saved is read, none made up
    c = pruned.eval().config
    assert (c.hidden_size, c.num_attention_heads, c.attention_head_size) == (16, 2, 8)
    assert (c.intermediate_size, c.pooler_hidden_size) == (19, 16)
    assert pruned.deberta.encoder.rel_embeddings.weight.shape[1] == 16
    attn = pruned.deberta.encoder.layer[0].attention.self
    assert attn.query_proj.weight.shape == (16, 16)
    if not share_att_key:
        assert attn.pos_key_proj.weight.shape == attn.pos_query_proj.weight.shape == (16, 16)
    onnx_dir = export(out, tmp_path / "onnx")
    manifest = json.loads((onnx_dir / "stage.json").read_text())
    assert manifest["exporter"] == "optimum" and manifest["parity_max_abs_diff"] < 1e-4


def test_deberta_refuses_heads_or_width_alone_and_unequal_shares(tmp_path):
    make_tiny_encoder(tmp_path / "src", "deberta-v2")
    data = make_cls_dataset()

    def attempt(**kw):
        prune(tmp_path / "src", data, out=tmp_path / "x", verbose=False, **kw)

    with pytest.raises(PocketsizeError, match="give width= removing the same share as heads="):
        attempt(heads=0.5)
    with pytest.raises(PocketsizeError, match="its width goes only with its heads"):
        attempt(width=0.5)
    with pytest.raises(
        PocketsizeError, match=r"leaves 8 channels but the layers keep 2 heads.*width=0.5"
    ):
        attempt(heads=0.5, width=0.75)
    with pytest.raises(PocketsizeError, match="scope='global'.*use scope='layer'"):
        attempt(heads=0.5, width=0.5, scope="global")
    with pytest.raises(PocketsizeError, match="a heads= share below 0.125 removes none"):
        attempt(heads=0.1, width=0.5)
    make_tiny_encoder(tmp_path / "conv", "deberta-v2", conv_kernel_size=3)
    with pytest.raises(PocketsizeError, match="convolution layer.*config:heads=N"):
        prune(tmp_path / "conv", data, heads=0.5, width=0.5, out=tmp_path / "x", verbose=False)
    assert not (tmp_path / "x").exists()


def test_deberta_three_heads_take_the_width_the_kept_head_leaves(tmp_path):
    """heads=0.5 of 3 removes 2 (Python rounds 1.5 to even), width=0.5 of 24 would leave 12:
    the width is the kept head's 8 channels, not a refusal over rounding."""
    from transformers import AutoConfig

    make_tiny_encoder(tmp_path / "src", "deberta-v2", hidden_size=24, num_attention_heads=3)
    out = prune(
        tmp_path / "src", make_cls_dataset(), heads=0.5, width=0.5, out=tmp_path / "p",
        verbose=False,
    )  # fmt: skip
    config = AutoConfig.from_pretrained(out)
    assert (config.hidden_size, config.num_attention_heads, config.attention_head_size) == (8, 1, 8)


# ---- Llama-layout decoders ----


LONG_TEXTS = [
    "the film was good and the plot was bad and the cast was great",
    "the story was dull",
    "the music was wonderful and the ending was awful",
]


@pytest.mark.parametrize("model_type", ["llama", "mistral", "qwen2", "qwen3", "smollm3"])
def test_decoder_depth_heads_and_neurons_equal_the_masked_original(model_type, tmp_path):
    from transformers import AutoModelForCausalLM

    model, tokenizer = make_tiny_decoder(tmp_path / "src", model_type)
    out = prune(
        tmp_path / "src", lm_data(), depth=0.25, heads=0.5, ffn=0.5, task="causal-lm",
        out=tmp_path / "p", verbose=False,
    )  # fmt: skip
    pruned, record = assert_pruned_equals_masked(
        model, out, tokenizer, LONG_TEXTS, HEAD_DIM, AutoModelForCausalLM
    )
    c = pruned.config
    assert (c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads) == (3, 2, 2)
    assert (c.head_dim, c.intermediate_size) == (HEAD_DIM, 19)
    # query heads went evenly from each key/value group: one of heads (0, 1), one of (2, 3)
    for removed in record["heads"]["removed"].values():
        assert sorted(h // 2 for h in removed) == [0, 1]
    kept = record["depth"]["kept_layers"]
    assert len(kept) == 3 and len(record["depth"]["importance"]) == 4
    layers = pruned.model.layers
    assert [layer.self_attn.layer_idx for layer in layers] == [0, 1, 2]
    if model_type == "qwen2":
        assert c.layer_types == [["full_attention", "sliding_attention"][i % 2] for i in kept]
    if model_type == "smollm3":  # which layers skip rotary positions follows the kept layers
        assert c.no_rope_layers == [[1, 0][i % 2] for i in kept]


def test_gpt2_depth_heads_and_neurons_equal_the_masked_original(tmp_path):
    """GPT-2's Conv1D weights are [inputs, outputs]; global head scope leaves layers with
    different head counts (transformers' prune_heads and config.pruned_heads)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = make_tiny_gpt2(tmp_path / "src", n_layer=4)
    model = AutoModelForCausalLM.from_pretrained(src).eval()
    with torch.no_grad():  # weights large enough that one masked head moves the logits
        for p in model.parameters():
            p.mul_(10.0)
    model.save_pretrained(src)
    tokenizer = AutoTokenizer.from_pretrained(src)
    out = prune(
        src, lm_data(), depth=0.25, heads=0.5, ffn=0.5, scope="global", task="causal-lm",
        out=tmp_path / "p", verbose=False,
    )  # fmt: skip
    pruned, record = assert_pruned_equals_masked(
        model, out, tokenizer, LONG_TEXTS, 8, AutoModelForCausalLM
    )
    assert (pruned.config.n_layer, pruned.config.n_inner) == (3, 64)  # MLP 128 -> 64
    assert sum(record["heads"]["kept_per_layer"]) == 6  # 12 heads over 3 layers, half kept
    assert [layer.attn.layer_idx for layer in pruned.transformer.h] == [0, 1, 2]


def test_gpt2_width_keeps_the_active_channels_reloads_and_generates_alike_in_onnx(tmp_path):
    """Channels silenced in both tables, every LayerNorm and both c_proj outputs carry nothing
    in the residual stream: width pruning must find them. The narrower GPT-2 (24 channels:
    three heads of the old size 8, the surplus one of each layer in pruned_heads, n_inner
    stated) reloads with a tied lm_head, exports with past key values of the kept heads, and
    ONNX Runtime generates PyTorch's tokens."""
    from transformers import AutoModelForCausalLM

    from pocketsize.export import export

    src = make_tiny_gpt2(tmp_path / "src", n_layer=2)
    model = AutoModelForCausalLM.from_pretrained(src).eval()
    dead = [0, 3, 4, 9, 17, 22, 28, 31]
    base = model.transformer
    silence_channels([base.ln_f] + [n for layer in base.h for n in (layer.ln_1, layer.ln_2)], dead)
    with torch.no_grad():
        base.wte.weight[:, dead] = 0
        base.wpe.weight[:, dead] = 0
        for layer in base.h:
            for proj in (layer.attn.c_proj, layer.mlp.c_proj):  # Conv1D: [inputs, outputs]
                proj.weight[:, dead] = 0
                proj.bias[dead] = 0
    model.save_pretrained(src)
    out = prune(
        src, lm_data(), heads=0.5, width=0.25, task="causal-lm", out=tmp_path / "p",
        verbose=False,
    )  # fmt: skip
    record = json.loads((out / "stage.json").read_text())["width"]
    assert record["kept_channels"] == [c for c in range(32) if c not in dead]
    pruned, info = AutoModelForCausalLM.from_pretrained(out, output_loading_info=True)
    assert not any(info.values()), info  # every weight saved is read, none made up
    c = pruned.eval().config
    assert (c.n_embd, c.n_head, c.n_inner) == (24, 3, 128)
    assert {int(k): v for k, v in c.pruned_heads.items()} == {0: [2], 1: [2]}
    assert [layer.attn.num_heads for layer in pruned.transformer.h] == [2, 2]
    assert pruned.lm_head.weight is pruned.transformer.wte.weight
    onnx_dir = export(out, tmp_path / "onnx")
    parity = json.loads((onnx_dir / "stage.json").read_text())["parity"]
    assert parity["same_tokens"] and parity["max_abs_logit_diff"] < 1e-4


@pytest.mark.parametrize("model_type", ["llama", "mistral", "qwen2", "qwen3", "smollm3"])
def test_decoder_width_keeps_the_outputs_when_the_removed_channels_carry_nothing(
    model_type, tmp_path
):
    """Channels that are zero in the embedding and in every attention and MLP output stay zero
    in the residual stream. Width pruning must find them (their norm outputs are zero) and
    remove them without changing the logits: RMSNorm divides by the mean over all channels,
    which the kept norm weights' sqrt(old / new width) scale makes up for. A tied output
    embedding stays tied."""
    from transformers import AutoModelForCausalLM

    tied = model_type in ("llama", "qwen3")
    # a tiny eps: the norm's eps is added to a mean that shrinks by new / old width, so at this
    # model's activations (~0.02) eps=1e-6 alone would move the logits by ~1e-3
    model, tokenizer = make_tiny_decoder(
        tmp_path / "src", model_type, tie_word_embeddings=tied, rms_norm_eps=1e-12
    )
    dead = list(range(0, 32, 2))
    with torch.no_grad():
        model.model.embed_tokens.weight[:, dead] = 0
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight[dead, :] = 0
            layer.mlp.down_proj.weight[dead, :] = 0
    model.save_pretrained(tmp_path / "src")
    out = prune(
        tmp_path / "src", lm_data(), width=0.5, task="causal-lm", out=tmp_path / "p",
        verbose=False,
    )  # fmt: skip
    record = json.loads((out / "stage.json").read_text())["width"]
    assert record["kept_channels"] == list(range(1, 32, 2))
    pruned = AutoModelForCausalLM.from_pretrained(out).eval()
    expected = logits_of(model.eval(), tokenizer, LONG_TEXTS)
    torch.testing.assert_close(logits_of(pruned, tokenizer, LONG_TEXTS), expected)
    c = pruned.config
    assert (c.hidden_size, c.head_dim, c.num_attention_heads) == (16, HEAD_DIM, 4)
    assert (pruned.lm_head.weight is pruned.model.embed_tokens.weight) == tied


def test_whole_key_value_groups_go_with_kv_groups(tmp_path):
    from transformers import AutoModelForCausalLM

    model, tokenizer = make_tiny_decoder(tmp_path / "src", "qwen2")
    out = prune(
        tmp_path / "src", lm_data(), heads=0.5, kv_groups=True, task="causal-lm",
        out=tmp_path / "p", verbose=False,
    )  # fmt: skip
    pruned, record = assert_pruned_equals_masked(
        model, out, tokenizer, LONG_TEXTS, HEAD_DIM, AutoModelForCausalLM
    )
    assert (pruned.config.num_attention_heads, pruned.config.num_key_value_heads) == (2, 1)
    for removed in record["heads"]["removed"].values():
        assert removed in ([0, 1], [2, 3])  # both query heads of one group
    assert pruned.model.layers[0].self_attn.k_proj.out_features == HEAD_DIM


def test_multi_head_decoder_removes_query_and_key_value_heads_together(tmp_path):
    from transformers import AutoModelForCausalLM

    model, tokenizer = make_tiny_decoder(tmp_path / "src", "llama", num_key_value_heads=4)
    out = prune(
        tmp_path / "src", lm_data(), heads=0.25, task="causal-lm", out=tmp_path / "p",
        verbose=False,
    )  # fmt: skip
    pruned, _ = assert_pruned_equals_masked(
        model, out, tokenizer, LONG_TEXTS, HEAD_DIM, AutoModelForCausalLM
    )
    assert (pruned.config.num_attention_heads, pruned.config.num_key_value_heads) == (3, 3)


def test_depth_pruned_decoder_generates_alike_with_and_without_its_cache(tmp_path):
    """layer_idx renumbered: each kept layer reads its own slot of the key/value cache."""
    make_tiny_decoder(tmp_path / "src", "qwen2")
    out = prune(
        tmp_path / "src", lm_data(), depth=0.5, task="causal-lm", out=tmp_path / "p",
        verbose=False,
    )  # fmt: skip
    from transformers import AutoModelForCausalLM, AutoTokenizer

    pruned = AutoModelForCausalLM.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    enc = tokenizer(["the film was good and the plot"], return_tensors="pt")
    settings = dict(max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    with_cache = pruned.generate(**enc, use_cache=True, **settings)
    without = pruned.generate(**enc, use_cache=False, **settings)
    assert with_cache.shape[1] == enc["input_ids"].shape[1] + 8
    assert torch.equal(with_cache, without)


def test_pruned_decoder_recovers_exports_with_past_and_generates_the_same_tokens(tmp_path):
    """Depth + heads + neurons + hidden width, recovered by distillation from the unpruned
    model, exported with past key values of the new shape; ONNX Runtime generates PyTorch's
    tokens."""
    import onnxruntime as ort

    from pocketsize.export import export

    make_tiny_decoder(tmp_path / "src", "llama")
    out = prune(
        tmp_path / "src", lm_data(), depth=0.25, heads=0.5, ffn=0.5, width=0.5,
        task="causal-lm", recover=True,
        recover_options={"max_steps": 6, "batch_size": 16, "progress": False},
        out=tmp_path / "p", verbose=False,
    )  # fmt: skip
    record = json.loads((out / "stage.json").read_text())
    assert record["recovery"]["teacher"] == "the unpruned model"
    onnx_dir = export(out, tmp_path / "onnx")
    parity = json.loads((onnx_dir / "stage.json").read_text())["parity"]
    assert parity["same_tokens"] and parity["max_abs_logit_diff"] < 1e-4
    session = ort.InferenceSession(str(onnx_dir / "model.onnx"))
    past = {i.name: i.shape for i in session.get_inputs() if i.name.startswith("past_key_values")}
    assert len(past) == 2 * 3  # a key and a value per kept layer
    for shape in past.values():
        assert shape[1] == 2 and shape[3] == HEAD_DIM  # key/value heads, head_dim


# ---- what a layout cannot do: one clear error, before any work ----


def test_decoder_head_settings_it_cannot_run_are_refused(tmp_path):
    make_tiny_decoder(tmp_path / "src", "llama")
    data = lm_data()

    def attempt(**kw):
        prune(tmp_path / "src", data, task="causal-lm", out=tmp_path / "x", verbose=False, **kw)

    with pytest.raises(PocketsizeError, match="every query head of each group.*kv_groups=True"):
        attempt(heads=0.9)
    with pytest.raises(PocketsizeError, match="removes no query head.*smallest step is 0.500"):
        attempt(heads=0.2)
    with pytest.raises(PocketsizeError, match="different head counts.*scope='layer'"):
        attempt(heads=0.5, scope="global")
    with pytest.raises(PocketsizeError, match="removes 0 of 4 layers"):
        attempt(depth=0.1)
    with pytest.raises(PocketsizeError, match="vocabulary trimming would take tokens away"):
        attempt(vocab=True)
    assert not (tmp_path / "x").exists()


def test_encoder_refuses_depth_and_kv_groups(tmp_path):
    src = make_tiny_bert(tmp_path / "bert")
    data = make_cls_dataset()
    with pytest.raises(PocketsizeError, match="post-norm"):
        prune(src, data, depth=0.5, out=tmp_path / "x", verbose=False)
    with pytest.raises(PocketsizeError, match="kv_groups=True.*'?bert'? has none"):
        prune(src, data, heads=0.5, kv_groups=True, out=tmp_path / "x", verbose=False)
    assert not (tmp_path / "x").exists()


def test_modernbert_deberta_and_mpnet_refuse_what_their_configs_cannot_state(tmp_path):
    data = make_cls_dataset()
    make_tiny_encoder(tmp_path / "modernbert", "modernbert")
    make_tiny_encoder(tmp_path / "deberta", "deberta-v2")
    make_tiny_encoder(tmp_path / "mpnet", "mpnet", pad_token_id=0)

    def attempt(src, **kw):
        prune(tmp_path / src, data, out=tmp_path / "x", verbose=False, **kw)

    with pytest.raises(PocketsizeError, match="give width= removing the same share.*heads=N"):
        attempt("modernbert", heads=0.5)
    # two layers, global every 2nd: no run of layers can go without layer 0
    with pytest.raises(PocketsizeError, match="have 0 that can go.*config:layers=N"):
        attempt("modernbert", depth=0.5)
    with pytest.raises(PocketsizeError, match="its width goes only with its heads"):
        attempt("modernbert", width=0.5)
    with pytest.raises(PocketsizeError, match=r"leaves 8 channels but the layers keep 2 heads"):
        attempt("modernbert", heads=0.5, width=0.75)
    with pytest.raises(PocketsizeError, match="DeBERTa builds.*config:heads=N"):
        attempt("deberta", heads=0.5)
    with pytest.raises(PocketsizeError, match="post-norm.*truncate"):
        attempt("deberta", depth=0.5)
    with pytest.raises(PocketsizeError, match="MPNet builds.*same share as heads="):
        attempt("mpnet", heads=0.5)
    with pytest.raises(PocketsizeError, match="MPNet's hidden size.*goes only with its heads"):
        attempt("mpnet", width=0.5)
    with pytest.raises(PocketsizeError, match="use scope='layer'"):
        attempt("mpnet", heads=0.5, width=0.5, scope="global")
    assert not (tmp_path / "x").exists()


# ---- MPNet ----


def test_mpnet_loses_the_same_heads_in_every_layer_and_equals_the_masked_original(tmp_path):
    """MPNet's layers share one relative position bias, a column per head: the heads ranked
    lowest over all layers go from every layer, and the bias loses their columns. Checked on
    the model in memory (its config states fewer heads only once the width follows): a wrong
    bias column would move every kept head's scores."""
    from pocketsize.prune.layouts import layout_for

    model, tokenizer = make_tiny_encoder(tmp_path / "src", "mpnet", pad_token_id=0)
    layout = layout_for(model)
    # alone, layer 0 would lose heads 1 and 3, layer 1 heads 0 and 2; summed (each layer
    # normalised), heads 1 and 0 rank lowest
    scores = [torch.tensor([4.0, 1.0, 3.0, 0.0]), torch.tensor([0.0, 2.0, 1.0, 4.0])]
    plan = layout.plan_heads(scores, 0.5, "layer")
    assert plan == {0: [0, 1], 1: [0, 1]}
    masked = masked_original(model, {"heads": {"removed": {"0": [0, 1], "1": [0, 1]}}}, 8)
    pruned = copy.deepcopy(model)
    layout_for(pruned).remove_heads(plan)
    bias = pruned.mpnet.encoder.relative_attention_bias.weight
    torch.testing.assert_close(bias, model.mpnet.encoder.relative_attention_bias.weight[:, 2:])
    got = logits_of(pruned.eval(), tokenizer, LONG_TEXTS)
    torch.testing.assert_close(
        got, logits_of(masked.eval(), tokenizer, LONG_TEXTS), atol=1e-5, rtol=1e-5
    )
    assert (logits_of(model, tokenizer, LONG_TEXTS) - got).abs().max() > 1e-3


def test_mpnet_heads_and_width_go_together_keep_the_active_channels_and_export(tmp_path):
    """heads=0.5 with width=0.5: 2 heads of the old size 8 in the 16 channels that carry
    something; the model reloads with the Auto class (every weight read) and exports."""
    from transformers import AutoModelForSequenceClassification

    from pocketsize.export import export

    model, _ = make_tiny_encoder(tmp_path / "src", "mpnet", pad_token_id=0)
    base = model.mpnet
    norms = [base.embeddings.LayerNorm] + [
        n for layer in base.encoder.layer for n in (layer.attention.LayerNorm, layer.output.LayerNorm)
    ]  # fmt: skip
    silence_channels(norms, list(range(1, 32, 2)))
    model.save_pretrained(tmp_path / "src")
    out = prune(
        tmp_path / "src", make_cls_dataset(), heads=0.5, width=0.5, ffn=0.5,
        out=tmp_path / "p", verbose=False,
    )  # fmt: skip
    record = json.loads((out / "stage.json").read_text())
    assert record["width"]["kept_channels"] == list(range(0, 32, 2))
    removed = record["heads"]["removed"]
    assert removed["0"] == removed["1"] and len(removed["0"]) == 2
    assert [h["name"] for h in record["width"]["head_layers"]] == [
        "classifier.dense", "classifier.out_proj",
    ]  # fmt: skip
    pruned, info = AutoModelForSequenceClassification.from_pretrained(out, output_loading_info=True)
    assert not any(info.values()), info  # every weight saved is read, none made up
    c = pruned.eval().config
    assert (c.hidden_size, c.num_attention_heads, c.intermediate_size) == (16, 2, 19)
    assert pruned.mpnet.encoder.relative_attention_bias.weight.shape == (32, 2)
    assert pruned.mpnet.encoder.layer[0].attention.attn.q.weight.shape == (16, 16)
    onnx_dir = export(out, tmp_path / "onnx")
    manifest = json.loads((onnx_dir / "stage.json").read_text())
    assert manifest["exporter"] == "optimum" and manifest["parity_max_abs_diff"] < 1e-4
