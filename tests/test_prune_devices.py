"""Pruning keeps every weight on its device and in its dtype, which is what lets `prune` score
and slice on a GPU (it moves the model to the process's device). Checked here without one: each
layout's removals run on a model on PyTorch's meta device, where a tensor made on the CPU along
the way would surface as a CPU parameter (or fail to copy out of meta), and on a bf16 model,
where a module rebuilt in float32 would show."""

from __future__ import annotations

import pytest
import torch
from zoo import make_tiny_decoder, make_tiny_distilbert, make_tiny_encoder, make_tiny_gpt2

from pocketsize.errors import PocketsizeError
from pocketsize.prune import width
from pocketsize.prune.ffn import plan_ffn_removal
from pocketsize.prune.layouts import layout_for

pytestmark = pytest.mark.usefixtures("single_thread")


def _gpt2(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(make_tiny_gpt2(path, n_layer=4))


MODELS = {
    "bert": lambda p: make_tiny_encoder(p, "bert")[0],
    "distilbert": lambda p: make_tiny_distilbert(p)[0],
    "modernbert": lambda p: make_tiny_encoder(p, "modernbert", num_hidden_layers=4)[0],
    "deberta-v2": lambda p: make_tiny_encoder(p, "deberta-v2")[0],
    "gpt2": _gpt2,
    "llama": lambda p: make_tiny_decoder(p, "llama")[0],
}
# what each layout can remove on these tiny models (the rest it refuses by design)
REMOVALS = {
    "bert": ["heads", "ffn", "width"],
    "distilbert": ["heads", "ffn", "width"],
    "modernbert": ["heads", "ffn", "width", "depth"],
    "deberta-v2": ["heads", "ffn", "width"],
    "gpt2": ["heads", "ffn", "width", "depth"],
    "llama": ["heads", "ffn", "width", "depth"],
}


def remove_everything_it_can(model, batch=None) -> list[str]:
    """Half the heads, neurons, width and layers, by fixed scores (no data needed). With a
    batch, width goes through prune/width.py with the task head too (its trace needs values,
    which the meta device has not)."""
    layout = layout_for(model)
    n = len(layout.layers())
    done = []
    try:
        layout.check_heads(0.5, "layer", False)
    except PocketsizeError:
        pass
    else:
        scores = [torch.arange(len(layout.current_heads(i)), dtype=torch.float) for i in range(n)]
        layout.remove_heads(layout.plan_heads(scores, 0.5, "layer"))
        done.append("heads")
    size = layout.ffn_size()
    layout.remove_neurons(plan_ffn_removal(layout, [torch.arange(size).float()] * n, 0.5))
    done.append("ffn")
    if layout.width:
        keep = list(range(layout.plan_width(0.5, None)))
        if batch is None:
            layout.remove_width(torch.tensor(keep))
        else:
            head = width.head_layers(model, batch)
            width.remove_channels(model, keep, head, {h.name: keep for h in head if h.own_space})
        done.append("width")
    if layout.depth:
        layout.remove_layers(list(range(n - layout.check_depth(0.5))))
        done.append("depth")
    return done


@pytest.mark.parametrize("arch", list(MODELS))
def test_pruning_keeps_every_weight_on_its_device(arch, tmp_path):
    model = MODELS[arch](tmp_path / "src").to("meta")
    assert remove_everything_it_can(model) == REMOVALS[arch]
    elsewhere = [n for n, t in [*model.named_parameters(), *model.named_buffers()]
                 if t.device.type != "meta"]  # fmt: skip
    assert not elsewhere, elsewhere


@pytest.mark.parametrize("arch", list(MODELS))
def test_a_bf16_model_stays_bf16_and_runs(arch, tmp_path):
    model = MODELS[arch](tmp_path / "src").to(torch.bfloat16).eval()
    batch = {"input_ids": torch.tensor([[2, 7, 8, 9, 10, 11, 3]])}
    batch["attention_mask"] = torch.ones_like(batch["input_ids"])
    assert remove_everything_it_can(model, batch) == REMOVALS[arch]
    other = [n for n, p in model.named_parameters() if p.dtype != torch.bfloat16]
    assert not other, other
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits.float()).all()
