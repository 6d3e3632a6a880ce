"""What a trained model must be, to be written: outputs that fit the labels, a class that loads
again, and one directory format for it (save_pretrained, or a pocketsize module directory)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from pocketsize.distill.features import forward_kwargs, get_output, model_inputs, probe_batch
from pocketsize.errors import PocketsizeError


def check_output_width(model, features, task, tokenizer, names, who: str) -> None:
    """A classifier's outputs must have one logit per label: run it on two real examples."""
    if names is None or len(features) == 0:
        return
    first = task.output_names[0]
    width = output_widths(model, features, task, tokenizer, (first,))[first]
    if width != len(names):
        raise PocketsizeError(
            f"the {who} outputs {width} logits but the data has {len(names)} labels; "
            "build it with num_labels matching the data"
        )


@torch.no_grad()
def output_widths(model, features, task, tokenizer, names) -> dict:
    """The last-axis width of each named output, on two real examples."""
    batch = probe_batch(features, task, tokenizer)
    was_training = getattr(model, "training", False)
    if isinstance(model, nn.Module):
        model.eval()
    out = model(**forward_kwargs(model, batch, model_inputs(task)))
    if isinstance(model, nn.Module):
        model.train(was_training)
    widths = {}
    for name in names:
        value = get_output(out, name)
        widths[name] = None if value is None else int(value.shape[-1])
    return widths


def check_reloadable(model) -> None:
    """A model that is no transformers model must be rebuildable from its directory."""
    from transformers import PreTrainedModel

    if isinstance(model, PreTrainedModel):
        return
    from pocketsize.formats.module_dir import init_style, module_config

    init_style(type(model), module_config(model))


def save_model(model, tokenizer, directory: Path, task, labels=None) -> None:
    from transformers import PreTrainedModel

    if isinstance(model, PreTrainedModel):
        model.save_pretrained(directory, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(directory)
        task.write_model_files(model, directory)
    else:
        from pocketsize.formats.module_dir import save_module_dir

        save_module_dir(model, directory, tokenizer, labels=labels, task=task.name)
