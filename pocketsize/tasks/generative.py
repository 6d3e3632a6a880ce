"""Distillation and ONNX export for the generative tasks (causal-lm: GPT-2; seq2seq: T5).

    distill_generative(teacher, data, student="truncate:0", out=..., task="causal-lm")
    export_generative(model_dir, out)          # optimum, with past key values, parity checked
    generate(model_or_dir, prompts, tokenizer, **settings) -> [[token ids]]

Distillation matches the student's token distributions to the teacher's at every target
position (KL at temperature T, scaled by T^2) plus the language-modelling loss on the data,
with teacher forcing: both models read the same gold prefix. Both losses live in
pocketsize.distill's loss registry ("token_kl", "token_ce"). The student is a copy of the
teacher with fewer layers (DistilGPT2 style); for T5 `truncate:0` keeps the chosen encoder
layers and the same decoder layers (see `truncate_seq2seq`).

Why this module exists beside pocketsize.distill / pocketsize.export: those stages work on
sequence-level outputs (one logit vector per example or per position pair); generative
models need per-token losses with label masking, and an export whose graphs take past key
values and are checked by generating, not by one forward pass.
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
import time
from pathlib import Path

from pocketsize.errors import PocketsizeError
from pocketsize.tasks.base import check_architecture, get_task

OPTIMUM_TASKS = {
    "causal-lm": "text-generation-with-past",
    "seq2seq": "text2text-generation-with-past",
}
PARITY_PROMPTS = ("the film", "a good story with", "the cast was very", "it is")


# ---- losses (registered in pocketsize.distill's registry on first use) ----


def register_token_losses() -> None:
    import torch.nn.functional as F

    from pocketsize.distill import LOSSES, register_loss

    if "token_kl" in LOSSES:
        return

    def positions(batch):
        return batch["labels"] != -100

    @register_loss("token_kl")
    def token_kl(student, teacher, batch, ctx):
        """KL(teacher || student) of next-token distributions over the labelled positions."""
        mask = positions(batch)
        T = ctx.temperature
        s = student["logits"][mask].float() / T
        t = teacher["logits"][mask].float() / T
        kl = F.kl_div(
            F.log_softmax(s, -1), F.log_softmax(t, -1), reduction="batchmean", log_target=True
        )
        return kl * T * T

    @register_loss("token_ce")
    def token_ce(student, teacher, batch, ctx):
        """The language-modelling loss: cross-entropy on the gold next tokens."""
        mask = positions(batch)
        return F.cross_entropy(student["logits"][mask].float(), batch["labels"][mask])


# ---- students ----


def truncate_seq2seq(teacher, encoder_layers: list[int], decoder_layers: list[int] | None = None):
    """A T5-like copy keeping the given encoder and decoder blocks (teacher indices).

    T5 computes its relative position bias in block 0 only, so block 0 is always kept first.
    """
    from torch import nn

    decoder_layers = list(decoder_layers if decoder_layers is not None else encoder_layers)
    student = copy.deepcopy(teacher)
    for stack, keep, key in (
        (student.encoder, list(encoder_layers), "num_layers"),
        (student.decoder, decoder_layers, "num_decoder_layers"),
    ):
        depth = len(stack.block)
        if not keep or keep[0] != 0 or any(not 0 <= i < depth for i in keep):
            raise PocketsizeError(
                f"T5 student layers {keep} must start with 0 (it holds the position bias) and "
                f"lie in 0..{depth - 1}; e.g. 'truncate:0' or 'truncate:0,2'"
            )
        stack.block = nn.ModuleList([stack.block[i] for i in keep])
        for new_index, block in enumerate(stack.block):
            for module in block.modules():
                if hasattr(module, "layer_idx"):
                    module.layer_idx = new_index
        setattr(student.config, key, len(keep))
        stack.config.num_layers = len(keep)
    return student


def build_generative_student(teacher, spec, task):
    """'truncate[:0,2]' (DistilGPT2-style: a copy with fewer layers), a directory or a model."""
    from torch import nn

    if isinstance(spec, nn.Module):
        return spec, {"type": "module"}
    kind, _, rest = str(spec).partition(":")
    if kind != "truncate":
        from pocketsize.assets import load_model

        return load_model(str(spec), task=task.name), {"type": "model", "path": str(spec)}
    layers = [int(x) for x in rest.split(",") if x.strip()] if rest else None
    if task.name == "seq2seq":
        depth = teacher.config.num_layers
        layers = layers or list(range(0, depth, 2))
        return truncate_seq2seq(teacher, layers), {"type": "truncate", "layers": layers}
    from pocketsize.distill import build_student

    spec = f"truncate:{','.join(map(str, layers))}" if layers else "truncate"
    student, info = build_student(teacher, spec)
    return student, info


def check_same_vocabulary(t_tok, s_tok, teacher, student) -> None:
    """Token-level distillation compares distributions over the same vocabulary, id for id."""
    t_vocab = teacher.get_output_embeddings().weight.shape[0]
    s_vocab = student.get_output_embeddings().weight.shape[0]
    if t_vocab != s_vocab or (s_tok is not t_tok and s_tok.get_vocab() != t_tok.get_vocab()):
        raise PocketsizeError(
            f"teacher and student have different vocabularies ({t_vocab} vs {s_vocab} output "
            "tokens, or different tokenizers); token-level distillation needs the same "
            "vocabulary: build the student from the teacher (student='truncate')"
        )


# ---- distillation ----


def distill_generative(
    teacher,
    data,
    student="truncate",
    out=None,
    *,
    task="causal-lm",
    losses=None,
    temperature: float = 2.0,
    tokenizer=None,
    student_tokenizer=None,
    epochs: float = 3,
    max_steps: int = -1,
    batch_size: int = 16,
    learning_rate: float = 5e-4,
    max_length: int = 128,
    seed: int = 0,
    logging_steps: int = 50,
    callbacks=None,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Distil a causal LM or seq2seq teacher into a smaller student; returns the student dir."""
    from transformers import Trainer, set_seed

    from pocketsize.assets import load_model, load_tokenizer
    from pocketsize.distill import LOSSES, LossContext
    from pocketsize.fsutil import atomic_dir, check_output_dir, write_json
    from pocketsize.tasks.generic import plain_training_arguments

    started = time.time()
    task = get_task(task)
    if task.name not in OPTIMUM_TASKS:
        raise PocketsizeError(
            f"distill_generative is for causal-lm and seq2seq, not {task.name}; use ps.distill"
        )
    out = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="pocketsize-gen-"))
    check_output_dir(out, overwrite)
    if not hasattr(data, "keys") or "train" not in data:
        raise PocketsizeError("data must be a DatasetDict with a train split")
    register_token_losses()
    weights = dict(losses or {"token_kl": 0.5, "token_ce": 0.5})
    unknown = [n for n in weights if n not in LOSSES]
    if unknown:
        raise PocketsizeError(f"unknown loss(es) {unknown}; known: {', '.join(sorted(LOSSES))}")

    t_tok = tokenizer if tokenizer is not None else load_tokenizer(teacher)
    teacher_model = teacher if hasattr(teacher, "forward") else load_model(teacher, task=task.name)
    check_architecture(teacher_model.config.model_type, task)
    set_seed(seed)
    student_model, info = build_generative_student(teacher_model, student, task)
    check_architecture(student_model.config.model_type, task)
    s_tok = student_tokenizer or t_tok
    if isinstance(s_tok, (str, os.PathLike)):
        s_tok = load_tokenizer(s_tok)
    check_same_vocabulary(t_tok, s_tok, teacher_model, student_model)

    features = task.encode(data["train"], t_tok, max_length=max_length)
    if task.name == "causal-lm":
        from transformers import DataCollatorForLanguageModeling

        if t_tok.pad_token is None:
            t_tok.pad_token = t_tok.eos_token
        collator = DataCollatorForLanguageModeling(t_tok, mlm=False)
    else:
        collator = task.collator(t_tok)
    fine_tuning = teacher_model is student_model  # finetune_generative: no separate teacher
    if not fine_tuning:
        teacher_model.eval().requires_grad_(False)
    context = LossContext(output_names=("logits",), temperature=temperature)
    shift = task.name == "causal-lm"  # position i predicts token i + 1

    class _TokenDistillTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs["labels"]
            feed = {k: v for k, v in inputs.items() if k != "labels"}
            if not shift:
                feed["labels"] = labels  # T5 builds its decoder inputs from the labels
            s_logits = model(**feed).logits
            t_logits = s_logits.detach()  # unused when no loss reads the teacher (fine-tuning)
            if any(n != "token_ce" for n in weights):
                with _no_grad():
                    t_logits = teacher_model(**feed).logits
            if shift:
                s_logits, t_logits, labels = s_logits[:, :-1], t_logits[:, :-1], labels[:, 1:]
            batch = {"labels": labels}
            loss = sum(
                w * LOSSES[n]({"logits": s_logits}, {"logits": t_logits}, batch, context)
                for n, w in weights.items()
            )
            return (loss, {"logits": s_logits}) if return_outputs else loss

    with atomic_dir(out, overwrite) as tmp:
        args = plain_training_arguments(
            tmp / ".work",
            epochs,
            max_steps,
            batch_size,
            learning_rate,
            seed,
            logging_steps,
            progress,
        )
        trainer = _TokenDistillTrainer(
            model=student_model,
            args=args,
            train_dataset=features,
            data_collator=collator,
            callbacks=callbacks,
        )
        result = trainer.train()
        shutil.rmtree(tmp / ".work", ignore_errors=True)
        student_model = trainer.model.eval()
        student_model.save_pretrained(tmp, safe_serialization=True)
        s_tok.save_pretrained(tmp)
        write_json(
            tmp / "stage.json",
            {
                "stage": "finetune" if fine_tuning else "distill",
                "task": task.name,
                "teacher": str(teacher) if not hasattr(teacher, "forward") else "<in-memory>",
                "student": info,
                "config": dict(
                    losses=weights,
                    temperature=temperature,
                    epochs=epochs,
                    max_steps=max_steps,
                    batch_size=batch_size,
                    learning_rate=learning_rate,
                    max_length=max_length,
                    seed=seed,
                ),
                "steps": result.global_step,
                "train_loss": result.training_loss,
                "parameters": sum(p.numel() for p in student_model.parameters()),
                "teacher_parameters": sum(p.numel() for p in teacher_model.parameters()),
                "wall_time_s": round(time.time() - started, 2),
            },
        )
    return out


def finetune_generative(model, data, out=None, *, task="causal-lm", **kw) -> Path:
    """Train a causal LM / seq2seq model on the data's targets (the LM loss alone)."""
    from pocketsize.assets import load_model

    task = get_task(task)
    loaded = model if hasattr(model, "forward") else load_model(model, task=task.name)
    tokenizer = kw.pop("tokenizer", None)
    if tokenizer is None:
        from pocketsize.assets import load_tokenizer

        tokenizer = load_tokenizer(model)
    return distill_generative(
        loaded, data, loaded, out, task=task, losses={"token_ce": 1.0}, tokenizer=tokenizer, **kw
    )


def _no_grad():
    import torch

    return torch.no_grad()


# ---- generation ----


def load_generator(model, task, onnx: bool | None = None):
    """(model, tokenizer) from a PyTorch dir, an exported ONNX dir or an in-memory model."""
    from transformers import AutoTokenizer

    task = get_task(task)
    path = Path(str(model))
    is_onnx = onnx if onnx is not None else any(path.glob("*.onnx"))
    tok = AutoTokenizer.from_pretrained(path)
    if is_onnx:
        from pocketsize.eval.runners import onnx_file_names, resolve_variant

        variant = resolve_variant("model", path)
        return task.ort_model_class().from_pretrained(path, **onnx_file_names(variant)), tok
    return task.auto_model_class().from_pretrained(path, use_safetensors=True).eval(), tok


def check_generation_settings(model, settings: dict) -> None:
    """Refuse settings the (exported) model cannot honour, before generating."""
    is_ort = type(model).__module__.startswith("optimum")
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


# ---- export ----


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
) -> Path:
    """Export a causal LM / seq2seq model with optimum (past key values), checked against PyTorch:
    logits of one forward within `atol`, and greedy generation giving the same tokens."""
    from transformers import AutoConfig

    from pocketsize.fsutil import atomic_dir, check_output_dir, write_json

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
        config = AutoConfig.from_pretrained(model_dir)
        task = get_task(task or ("seq2seq" if config.is_encoder_decoder else "causal-lm"))
        if task.name not in OPTIMUM_TASKS:
            raise PocketsizeError(
                f"export_generative exports causal-lm and seq2seq models, not {task.name}; "
                "use pocketsize.export"
            )
        check_architecture(config.model_type, task)
        torch_model, tok = load_generator(model_dir, task, onnx=False)
        with atomic_dir(out, overwrite) as tmp:
            from optimum.exporters.onnx import main_export

            main_export(
                str(model_dir),
                tmp,
                task=OPTIMUM_TASKS[task.name],
                do_validation=False,
                local_files_only=True,
            )
            ort_model, _ = load_generator(tmp, task, onnx=True)
            parity = generation_parity(
                torch_model, ort_model, tok, list(prompts), atol, max_new_tokens
            )
            write_json(tmp / "parity.json", parity)
            files = sorted(p.name for p in tmp.glob("*.onnx"))
            write_json(
                tmp / "pocketsize.json",
                {
                    "format": "onnx",
                    "file": "model.onnx" if "model.onnx" in files else "encoder_model.onnx",
                    "files": files,
                    "task": task.name,
                    "model_type": config.model_type,
                    "exporter": "optimum",
                    "optimum_task": OPTIMUM_TASKS[task.name],
                    "parity_max_abs_diff": parity["max_abs_logit_diff"],
                    "generation_parity": parity["same_tokens"],
                },
            )
    return Path(out)


def quantize_generative(onnx_dir, out, *, overwrite: bool = False, **settings) -> Path:
    """Dynamic int8 of every graph of a generative export (T5: encoder and both decoders).

    Each graph goes through pocketsize.quantize (method="dynamic"); the merged decoder, an
    alternative to the decoder pair, is left out. A one-graph export (GPT-2) can use
    pocketsize.quantize directly.
    """
    from pocketsize.export import copy_model_side_files
    from pocketsize.fsutil import atomic_dir, check_output_dir, write_json
    from pocketsize.quantize import QUANTIZED_FILE, quantize

    onnx_dir = Path(onnx_dir)
    check_output_dir(out, overwrite)
    graphs = [p for p in sorted(onnx_dir.glob("*.onnx")) if "merged" not in p.name]
    graphs = [p for p in graphs if not p.stem.endswith("_quantized")]
    if not graphs:
        raise PocketsizeError(f"{onnx_dir} holds no .onnx graphs; export the model first")
    from pocketsize.export import read_manifest

    manifest = read_manifest(onnx_dir)
    with atomic_dir(out, overwrite) as tmp, tempfile.TemporaryDirectory() as work:
        for graph in graphs:
            done = quantize(graph, method="dynamic", out=Path(work) / graph.stem, **settings)
            shutil.move(done / QUANTIZED_FILE, tmp / f"{graph.stem}_quantized.onnx")
        copy_model_side_files(onnx_dir, tmp)
        files = sorted(p.name for p in tmp.glob("*.onnx"))
        first = "model_quantized.onnx"
        if first not in files:
            first = "encoder_model_quantized.onnx"
        write_json(
            tmp / "pocketsize.json",
            {**manifest, "file": first, "files": files, "quantization": {"method": "dynamic"}},
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
        "max_abs_logit_diff": diff,
        "atol": atol,
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
