"""Export of generative models (causal LM: GPT-2; seq2seq: T5) and the generation they do.

    export_generative(model_dir, out)          # optimum, with past key values, parity checked
    generate(model_or_dir, prompts, tokenizer, **settings) -> [[token ids]]

A generating model's export is checked by generating, not by one forward pass: the logits of
one forward within `atol`, and greedy generation giving the same tokens in PyTorch and ONNX
Runtime.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from pocketsize.errors import PocketsizeError
from pocketsize.formats import hf_load
from pocketsize.formats.onnx_dir import graph_files, model_file
from pocketsize.tasks import check_architecture, get_task, task_of_model

PARITY_PROMPTS = ("the film", "a good story with", "the cast was very", "it is")


def _no_grad():
    import torch

    return torch.no_grad()


def load_generator(model, task, onnx: bool | None = None, trust_remote_code: bool = False):
    """(model, tokenizer) from a PyTorch dir, an exported ONNX dir or an in-memory model."""
    from pocketsize.formats.model_dir import load_model_dir

    task = get_task(task)
    path = Path(str(model))
    is_onnx = onnx if onnx is not None else any(path.glob("*.onnx"))
    tok = hf_load.load_tokenizer(path, trust_remote_code)
    if is_onnx:
        files = graph_files(model_file(path))
        ort_class = task.ort_model_class()
        return hf_load.load_model(ort_class, path, trust_remote_code, **files), tok
    auto_class = task.auto_model_class()
    return load_model_dir(path, auto_class, trust_remote_code=trust_remote_code), tok


def check_generation_settings(model, settings: dict) -> None:
    """Refuse settings the (exported) model cannot honour, before generating."""
    # an optimum ORTModel, or pocketsize's subclass of one (tasks/causal_lm.py)
    is_ort = any(c.__module__.startswith("optimum") for c in type(model).__mro__)
    if is_ort:
        if settings.get("use_cache") and not getattr(model, "can_use_cache", True):
            raise PocketsizeError(
                "use_cache=True but the ONNX graph was exported without past key values; "
                "re-export with pocketsize.export (text-generation-with-past) or pass "
                "use_cache=False"
            )
        for flag in ("output_attentions", "output_hidden_states"):
            if settings.get(flag):
                raise PocketsizeError(
                    f"{flag}=True: the exported ONNX graph returns logits and past key values "
                    "only; generate with the PyTorch model for attentions or hidden states"
                )
    limit = getattr(model.config, "n_positions", None) or getattr(
        model.config, "max_position_embeddings", None
    )
    wanted = settings.get("max_length")
    if limit and wanted and wanted > limit:
        raise PocketsizeError(
            f"max_length={wanted} exceeds the model's {limit} positions; use max_length <= {limit}"
        )


def generate(model, prompts, tokenizer, **settings) -> list[list[int]]:
    """Greedy token ids generated for each prompt, one prompt at a time (no padding).

    Prompts go one by one on purpose: PyTorch GPT-2 numbers the positions of a left-padded
    prompt from 0 at the padding while optimum's ONNX model counts from the first real token,
    so batched, padded generation can differ between the two.
    """
    settings = {"max_new_tokens": 8, "do_sample": False, "num_beams": 1, **settings}
    check_generation_settings(model, settings)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out = []
    encoder_decoder = getattr(model.config, "is_encoder_decoder", False)
    for prompt in prompts:
        enc = tokenizer([prompt], return_tensors="pt")
        enc = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask")}
        with _no_grad():
            ids = model.generate(**enc, pad_token_id=pad, **settings)[0]
        if not encoder_decoder:
            ids = ids[enc["input_ids"].shape[1] :]
        out.append(ids.tolist())
    return out


def export_generative(
    model,
    out,
    *,
    task=None,
    tokenizer=None,
    prompts=PARITY_PROMPTS,
    atol: float = 1e-4,
    max_new_tokens: int = 8,
    overwrite: bool = False,
    trust_remote_code: bool = False,
) -> Path:
    """Export a causal LM / seq2seq model with optimum (past key values), checked against PyTorch:
    logits of one forward within `atol`, and greedy generation giving the same tokens."""
    from pocketsize.formats.records import carried, stage_output, update_record
    from pocketsize.fsutil import check_output_dir

    check_output_dir(out, overwrite)
    with tempfile.TemporaryDirectory(prefix="pocketsize-gen-export-") as staging:
        if hasattr(model, "save_pretrained"):
            if tokenizer is None:
                raise PocketsizeError("an in-memory model needs its tokenizer; pass tokenizer=...")
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
            model_dir = Path(staging)
        else:
            model_dir = Path(str(model))
            if not (model_dir / "config.json").is_file():
                raise PocketsizeError(f"{model_dir} is not a model directory (no config.json)")
        config = hf_load.load_config(model_dir, trust_remote_code)
        task = get_task(task) if task is not None else task_of_model(model_dir)
        if task is None or not task.generates:
            raise PocketsizeError(
                f"export_generative exports models that generate (causal-lm, seq2seq), not "
                f"{task.name if task else 'a ' + str(config.architectures) + ' model'}; "
                "use pocketsize.export"
            )
        check_architecture(config.model_type, task)
        torch_model, tok = load_generator(model_dir, task, False, trust_remote_code)
        with stage_output(out, "export", overwrite) as tmp:
            from pocketsize.export.pruned_heads import custom_onnx_configs

            hf_load.optimum_export(
                model_dir,
                tmp,
                trust_remote_code,
                task=task.optimum_task,
                do_validation=False,
                local_files_only=True,
                custom_onnx_configs=custom_onnx_configs(config, task.optimum_task),
            )
            ort_model, _ = load_generator(tmp, task, True, trust_remote_code)
            parity = generation_parity(
                torch_model, ort_model, tok, list(prompts), atol, max_new_tokens
            )
            files = sorted(p.name for p in tmp.glob("*.onnx"))
            update_record(
                tmp,
                format="onnx",
                file="model.onnx" if "model.onnx" in files else "encoder_model.onnx",
                files=files,
                task=task.name,
                model_type=config.model_type,
                exporter="optimum",
                optimum_task=task.optimum_task,
                parity_max_abs_diff=parity["max_abs_logit_diff"],
                generation_parity=parity["same_tokens"],
                parity=parity,
                **carried(model_dir),
            )
    return Path(out)


def generation_parity(torch_model, ort_model, tokenizer, prompts, atol, max_new_tokens) -> dict:
    """Compare one forward's logits and greedy generations; raise when they differ."""
    import numpy as np
    import torch

    enc = tokenizer(prompts[:1], return_tensors="pt")
    feed = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask")}
    if getattr(torch_model.config, "is_encoder_decoder", False):
        start = torch_model.config.decoder_start_token_id
        feed["decoder_input_ids"] = torch.full((1, 3), start, dtype=torch.long)
    with torch.no_grad():
        expected = torch_model(**feed).logits.numpy()
    got = np.asarray(ort_model(**feed).logits)
    diff = float(np.abs(expected - got).max())
    torch_ids = generate(torch_model, prompts, tokenizer, max_new_tokens=max_new_tokens)
    ort_ids = generate(ort_model, prompts, tokenizer, max_new_tokens=max_new_tokens)
    same = torch_ids == ort_ids
    report = {
        # ok / atol / max_abs_diff: the parity part every export's record has
        "ok": diff <= atol and same,
        "atol": atol,
        "max_abs_diff": diff,
        "max_abs_logit_diff": diff,
        "prompts": list(prompts),
        "torch_tokens": torch_ids,
        "onnx_tokens": ort_ids,
        "same_tokens": same,
    }
    if diff > atol:
        raise PocketsizeError(
            f"the exported logits differ from PyTorch by {diff:.2e} (tolerance {atol:.0e}); "
            "the export is wrong, report it with the model's config"
        )
    if not same:
        first = next(i for i, (a, b) in enumerate(zip(torch_ids, ort_ids)) if a != b)
        raise PocketsizeError(
            f"greedy generation from ONNX differs from PyTorch for prompt {prompts[first]!r} "
            f"({ort_ids[first]} vs {torch_ids[first]}); the export is wrong"
        )
    return report
