"""Distillation of the generative tasks (causal-lm: GPT-2; seq2seq: T5).

    distill_generative(teacher, data, student="truncate:0", out=..., task="causal-lm")

Distillation matches the student's token distributions to the teacher's at every target
position (KL at temperature T, scaled by T^2) plus the language-modelling loss on the data,
with teacher forcing: both models read the same gold prefix. Both losses live in
pocketsize.distill's loss registry ("token_kl", "token_ce"). The student is a copy of the
teacher with fewer layers (DistilGPT2 style); for T5 `truncate:0` keeps the chosen encoder
layers and the same decoder layers (see `truncate_seq2seq`). Their export and quantization
live in pocketsize.export.generative and pocketsize.quantize.multi_graph.
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
        return task.load_model(str(spec)), {"type": "model", "path": str(spec)}
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

    from pocketsize.assets import load_tokenizer
    from pocketsize.distill import LOSSES, LossContext
    from pocketsize.fsutil import atomic_dir, check_output_dir, write_json
    from pocketsize.tasks.generic import plain_training_arguments

    started = time.time()
    task = get_task(task)
    if not task.generates:
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
    teacher_model = teacher if hasattr(teacher, "forward") else task.load_model(teacher)
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
    task = get_task(task)
    loaded = model if hasattr(model, "forward") else task.load_model(model)
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
