"""`distill(teacher, data, student=...)`: checks every input, then trains with DistillationTrainer.

One path for every task and every student kind. Order of work: load and check (labels,
tokenizers, output widths, layer mapping, output dir) -> teacher outputs from the cache when
only output losses are used -> Trainer loop, validating each epoch -> the student's directory
written in one rename.
"""

from __future__ import annotations

import itertools
import shutil
import time
from pathlib import Path

import torch
from torch import nn

from pocketsize import processes
from pocketsize.data.progress import bars_follow_progress
from pocketsize.distill import loading as load
from pocketsize.distill import losses as L
from pocketsize.distill import mapping
from pocketsize.distill import records as R
from pocketsize.distill import training as T
from pocketsize.distill.cache import home_device
from pocketsize.distill.features import (
    FeatureCollator,
    forward_kwargs,
    probe_batch,
    training_features,
)
from pocketsize.distill.saving import check_output_width, check_reloadable, save_model
from pocketsize.distill.students import build_student
from pocketsize.distill.trainer import collect
from pocketsize.distill.transfer import (
    augment_texts,
    iter_transfer_texts,
    scratch_dir,
    unlabelled_dataset,
)
from pocketsize.errors import PocketsizeError
from pocketsize.fsutil import atomic_dir, check_output_dir

# The learning rate each student type trains at when the caller gives none (see distill()).
DEFAULT_LEARNING_RATES = {"truncate": 2e-4, "bilstm": 1e-3}
FALLBACK_LEARNING_RATE = 5e-5


@bars_follow_progress
def distill(
    teacher,
    data,
    student="truncate",
    out=None,
    *,
    losses=None,
    temperature: float = 2.0,
    layer_map="auto",
    projection: bool = True,
    epochs: float = 3,
    batch_size: int = 32,
    learning_rate: float | None = None,
    max_length: int | None = None,
    transfer=None,
    augment: int = 0,
    cache="auto",
    cache_dir=None,
    cache_top_k: int = 64,
    task=None,
    tokenizer=None,
    student_tokenizer=None,
    seed: int = 0,
    shuffle: bool = True,
    bf16: bool | str = False,
    max_steps: int = -1,
    save_steps: int | None = None,
    warmup_ratio: float = 0.06,
    weight_decay: float = 0.01,
    logging_steps: int = 50,
    evaluate: bool = True,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = True,
    callbacks=None,
    **training_kw,
) -> Path:
    """Distil `teacher` into `student` on `data`; returns the student's directory.

    teacher: a fine-tuned model directory, hub id, catalogue name or model.
    student: "truncate[:0,2,4]", "config:layers=3,hidden=192,heads=6,ffn=768[,init=random]",
        "bilstm[:embed=128,hidden=150]", a spec dict, a model directory, or an nn.Module.
    losses: {name: weight} or "kl=0.5,ce=0.5" (default: the task's, kl + ce, or token_kl +
        token_ce for generators); names in pocketsize.distill.LOSSES (aliases: logits=kl,
        hard=ce, hidden=hidden_mse, attention=attention_kl, ...).
    layer_map: for hidden/attention losses: "auto" (a truncate student's kept layers,
        else uniform), "uniform", "last:K", or (student, teacher) pairs.
    task: any task (inferred from the data when absent); what differs per task (inputs,
        outputs, default losses: token-level KL + LM loss for causal-lm / seq2seq) is asked
        of its adapter, the trainer is the same.
    learning_rate: None picks the student type's own (DEFAULT_LEARNING_RATES): 2e-4 for a
        truncated teacher, whose layers must re-adapt to their new neighbours (rt-polarity,
        3 seeds: 84.1% at 2e-4 against 82.9% at the usual 5e-5), 1e-3 for a freshly initialised
        BiLSTM, 5e-5 (the Trainer's default) otherwise.
    transfer: extra unlabelled text labelled by the teacher; augment: Tang et al. augmented
        copies per training example. cache: "auto" (on when every loss reads outputs only),
        True or False. Intermediate losses need the live teacher, so they disable the cache.
        A causal LM's teacher is cached only with cache=True, as its `cache_top_k` largest
        logits per position (the top-k token KL; stage.json records the mass they cover).
    shuffle=False: examples in order, every epoch (for comparing runs; see training.train).

    Under torchrun / accelerate launch every process trains its share of each batch (DDP);
    the main process alone fills the cache and writes the output, the others wait for it.
    """
    from transformers import set_seed

    from pocketsize.tasks import get_task, task_for_dataset

    started = time.time()
    out = Path(out) if out is not None else T.default_out("distill")
    check_output_dir(out, overwrite)
    processes.start()
    with processes.main_first():  # the main process fetches what is not cached yet
        data = load.load_data(data)
    task = get_task(task) if task is not None else task_for_dataset(data)
    train = load.require_split(data, "train")
    names = task.labels(train)
    weights = L.parse_losses(losses if losses is not None else dict(task.default_losses))
    needs = L.needs_of(weights)
    intermediate = needs & L.INTERMEDIATE
    bf16 = T.resolve_bf16(bf16)
    if not isinstance(cache_top_k, int) or cache_top_k < 1:
        raise PocketsizeError(
            f"cache_top_k must be a whole number of at least 1, not {cache_top_k!r}"
        )
    use_cache = _decide_cache(cache, intermediate, task) and L.reads_teacher(weights)

    # -- teacher and student, and the checks that need only them
    with processes.main_first():
        teacher_model = load.load_model(teacher, task)
    t_tok = None
    if task.needs_tokenizer:
        t_tok = load.load_tokenizer(
            tokenizer if tokenizer is not None or isinstance(teacher, nn.Module) else teacher,
            teacher_model,
        )
    if isinstance(teacher_model, nn.Module):
        teacher_model.eval()
    _check_architecture(teacher_model, task)
    if t_tok is not None and hasattr(teacher_model, "get_input_embeddings"):
        from pocketsize.formats.checkpoint import check_tokenizer_fits

        where = teacher if isinstance(teacher, (str, Path)) else "the teacher"
        check_tokenizer_fits(teacher_model, t_tok, where)
    load.check_labels(teacher_model, names, "teacher")
    set_seed(seed)
    student_model, info = build_student(
        teacher_model, student, tokenizer=t_tok, task=task, student_tokenizer=student_tokenizer
    )
    _check_architecture(student_model, task)
    load.check_labels(student_model, names, "student")
    check_reloadable(student_model)
    if learning_rate is None:
        learning_rate = DEFAULT_LEARNING_RATES.get(info.get("type"), FALLBACK_LEARNING_RATE)
    s_tok = student_tokenizer or info.get("tokenizer") or t_tok
    if isinstance(s_tok, (str, Path)):
        s_tok = load.load_tokenizer(s_tok)
    shared_tokenizer = _check_tokenizers(t_tok, s_tok, student_model, task, intermediate, cache)
    if not shared_tokenizer:
        use_cache = True  # the teacher's outputs are matched to examples, not to tokens

    # -- training examples: the train split, transfer text, augmented copies (written to a
    #    scratch Arrow file and memory-mapped: a transfer set of millions stays on disk)
    texts_extra = _extra_texts(transfer, augment, train, task, seed, t_tok)
    max_length = task.training_max_length(train, t_tok, teacher_model, max_length)
    examples, n_extra, scratch = train, 0, None
    if texts_extra is not None:
        from datasets import Value, concatenate_datasets

        scratch = scratch_dir("pocketsize-examples-")
        extra = unlabelled_dataset(texts_extra, scratch)
        n_extra = len(extra)
        examples = concatenate_datasets([train.cast_column("label", Value("int64")), extra])
    t_features = training_features(task, examples, t_tok, max_length)
    s_features = (
        t_features if shared_tokenizer else training_features(task, examples, s_tok, max_length)
    )

    # -- output widths, layer mapping and projections (checked on real examples first)
    outputs = task.training_outputs or task.output_names
    context = L.LossContext(output_names=tuple(outputs), temperature=temperature)
    check_output_width(student_model, s_features, task, s_tok, names, "student")
    if L.reads_teacher(weights):
        check_output_width(teacher_model, t_features, task, t_tok, names, "teacher")
    projections = nn.ModuleDict()
    if intermediate:
        _prepare_intermediate(
            teacher_model, student_model, t_features, task, t_tok, intermediate, weights, info,
            layer_map, projection, context, projections,
        )  # fmt: skip

    work, checkpoint = T.prepare_work_dir(out, resume)

    # -- teacher outputs: from the disk cache when only output losses are used
    teacher_outputs, cache_info = None, {"used": False}
    if use_cache:
        with processes.main_first():  # computed once; the other processes read it
            teacher_outputs, cache_info = _cached_outputs(
                teacher_model, t_features, task, t_tok, context, cache_dir, batch_size,
                cache_top_k if task.distribution_outputs else None,
            )  # fmt: skip
        cache_info["used"] = True
        computed = processes.gather(not cache_info["hit"])
        cache_info["computed_by_processes"] = sum(computed)

    args = T.training_arguments(
        work,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        bf16=bf16,
        max_steps=max_steps,
        save_steps=save_steps,
        logging_steps=logging_steps,
        warmup_ratio=warmup_ratio,
        weight_decay=weight_decay,
        group_by_length=shuffle and T.grouped_by_length(s_features),
        progress=progress,
        **training_kw,
    )
    validate = None
    if evaluate and "validation" in data:
        validate = T.validator(task, s_tok, data["validation"], max_length)

    result, student_model, per_epoch, losses = T.train(
        student_model, task, s_features, s_tok, args,
        loss_weights=weights, loss_context=context, needs=needs,
        teacher=None if use_cache else teacher_model, teacher_outputs=teacher_outputs,
        projections=projections, callbacks=callbacks, checkpoint=checkpoint, validate=validate,
        shuffle=shuffle,
    )  # fmt: skip
    if not processes.is_main():
        processes.wait()  # for the main process to write the student
        _remove(scratch)
        return out

    metrics, teacher_metrics = {}, {}
    if validate is not None:
        metrics = T.final_validation(per_epoch, result, validate, student_model)
        if isinstance(teacher_model, nn.Module):  # a plain callable teacher is not scored
            # with one tokenizer the student's encoding of the split is the teacher's too
            score = validate
            if not shared_tokenizer:
                score = T.validator(task, t_tok, data["validation"], max_length)
            # on the student's device (a cached teacher stayed where it was), then back
            home = home_device(teacher_model)
            teacher_metrics = score(teacher_model.to(processes.device()))
            teacher_model.to(home)

    params = sum(p.numel() for p in student_model.parameters())
    t_params = _parameters(teacher_model)
    with atomic_dir(out, overwrite) as tmp:
        save_model(student_model, s_tok, tmp, task, names)
        R.write_stage(
            tmp,
            "distill",
            teacher=load.describe(teacher),
            student=info.get("type"),
            student_spec=load.describe(student),
            task=task.name,
            labels=names,
            config=dict(
                losses=weights,
                temperature=temperature,
                layer_pairs=context.layer_pairs,
                projections=sorted(projections.keys()),
                epochs=epochs,
                batch_size=batch_size,
                learning_rate=learning_rate,
                max_length=max_length,
                transfer_examples=n_extra,
                augment=augment,
                bf16=bf16,
                seed=seed,
                max_steps=max_steps,
                shuffle=shuffle,
                processes=processes.world_size(),
            ),
            cache=cache_info,
            train_examples=len(s_features),
            steps=result.global_step,
            resumed_from=checkpoint,
            train_loss=result.training_loss,
            train_runtime_s=result.metrics.get("train_runtime"),
            parameters=params,
            teacher_parameters=t_params,
            validation=R.headline(metrics, task),
            teacher_validation=R.headline(teacher_metrics, task),
            validation_per_epoch=per_epoch,
            losses=losses,
            wall_time_s=round(time.time() - started, 2),
        )
        share = f" ({params / t_params:.1%} of the teacher's {t_params:,})" if t_params else ""
        R.write_model_card(
            tmp,
            f"{info.get('type')} student distilled from {load.describe(teacher)}",
            [
                "Written by `pocketsize distill`.",
                f"- parameters: {params:,}{share}",
                f"- losses: {weights}, temperature {temperature}, layer pairs {context.layer_pairs}",
                f"- validation: {R.headline(metrics, task)}; teacher: "
                f"{R.headline(teacher_metrics, task)}",
            ],
        )
    shutil.rmtree(work, ignore_errors=True)
    _remove(scratch)
    processes.wait()
    return out


def _remove(directory) -> None:
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)


def _decide_cache(cache, needs, task) -> bool:
    if cache is True and not task.cacheable:
        raise PocketsizeError(
            f"the teacher-output cache does not hold {task.name} outputs; use cache='auto'"
        )
    if cache == "auto":  # a top-k cache approximates the teacher: only when asked for
        return not needs and task.cacheable and not task.distribution_outputs
    if cache and needs:
        raise PocketsizeError(
            f"losses needing {sorted(needs)} use the live teacher and cannot be cached; "
            "use cache='auto' or output losses only (kl, ce, mse)"
        )
    return bool(cache)


def _same_vocab(a, b) -> bool:
    return a is b or a.get_vocab() == b.get_vocab()


def _check_tokenizers(t_tok, s_tok, student, task, needs, cache) -> bool:
    """True when both models read the same token ids; refuse mismatches that cannot work."""
    if t_tok is None or _same_vocab(t_tok, s_tok):
        emb = student.get_input_embeddings() if hasattr(student, "get_input_embeddings") else None
        if emb is not None and emb.num_embeddings < len(t_tok):
            raise PocketsizeError(
                f"tokenizer mismatch: the student's vocabulary has {emb.num_embeddings} tokens "
                f"but the teacher's tokenizer has {len(t_tok)}; give the student its own "
                "tokenizer (student_tokenizer=...) or build it from the teacher"
            )
        return True
    if needs:
        raise PocketsizeError(
            "tokenizer mismatch: hidden-state/attention losses compare token positions, so the "
            "student must use the teacher's tokenizer; use output losses only (kl, ce, mse)"
        )
    if task.per_token_outputs:
        raise PocketsizeError(
            f"tokenizer mismatch: teacher and student have different vocabularies, and "
            f"{task.name} outputs are per token, so the student must use the teacher's "
            "tokenizer; build the student from the teacher (student='truncate')"
        )
    if cache is False:
        raise PocketsizeError(
            "tokenizer mismatch: a student with its own tokenizer learns from the teacher's "
            "cached outputs per example; allow the cache (cache='auto')"
        )
    return False


def _extra_texts(transfer, augment, train, task, seed, tokenizer):
    """The transfer texts and augmented copies, as one iterator (None when there are none)."""
    if not transfer and not augment:
        return None
    if not task.accepts_transfer_text:
        raise PocketsizeError(
            f"transfer data and augmentation are supported for text classification only, "
            f"not {task.name}; drop transfer= and augment="
        )
    if "text_pair" in train.column_names:
        raise PocketsizeError(
            "transfer data and augmentation are supported for single-sentence datasets only"
        )
    texts = iter_transfer_texts(transfer)
    if augment:
        mask = getattr(tokenizer, "mask_token", None) or "[MASK]"
        made = augment_texts(list(train["text"]), int(augment), seed=seed, mask_token=mask)
        texts = itertools.chain(texts, made)
    return texts


def _cached_outputs(teacher, features, task, tokenizer, context, cache_dir, batch_size, top_k):
    from pocketsize.distill.cache import load_or_compute

    inputs = [x for x in features.column_names if x in task.input_names]
    return load_or_compute(
        teacher,
        features.select_columns(inputs),
        FeatureCollator(task, tokenizer),
        context.output_names,
        span=task.per_token_outputs,
        cache_dir=cache_dir,
        batch_size=max(batch_size, 64),
        top_k=top_k,
        temperature=context.temperature,
        device=processes.device(),  # the GPU where there is one
    )


@torch.no_grad()
def _prepare_intermediate(
    teacher, student, features, task, tokenizer, needs, weights, info, spec, projection,
    context, projections,
):  # fmt: skip
    """Probe both models on two real examples: depths, widths, the layer map, projections."""
    batch = probe_batch(features, task, tokenizer)
    flags = {"output_hidden_states": True, "output_attentions": "attentions" in needs}
    was_training = student.training
    student.eval()
    s = collect(student(**forward_kwargs(student, batch, **flags)), context.output_names)
    t = collect(teacher(**forward_kwargs(teacher, batch, **flags)), context.output_names)
    student.train(was_training)
    for side, view in (("student", s), ("teacher", t)):
        if view["hidden_states"] is None:
            raise PocketsizeError(
                f"the {side} returns no hidden states, which {sorted(needs)} losses need; "
                "use output losses only (kl, ce, mse)"
            )
        if "attentions" in needs and view["attentions"] is None:
            raise PocketsizeError(
                f"the {side} returns no attention weights; use a model that supports "
                "output_attentions or drop the attention loss"
            )
    n_s, n_t = len(s["hidden_states"]) - 1, len(t["hidden_states"]) - 1
    if spec == "auto":
        if info.get("type") == "truncate":
            spec = list(enumerate(info["layers"]))
        elif info.get("type") == "config":
            spec = list(enumerate(info["teacher_layers"]))
        else:
            spec = "uniform"
    context.layer_pairs = mapping.layer_map(spec, n_s, n_t)
    features_needing_width = {
        "hidden": {"hidden_mse", "hidden_cos"} & set(weights),
        "embedding": {"embedding_mse"} & set(weights),
    }
    for key, users in features_needing_width.items():
        if not users:
            continue
        index = 0 if key == "embedding" else -1
        w_s = s["hidden_states"][index].shape[-1]
        w_t = t["hidden_states"][index].shape[-1]
        if w_s == w_t:
            continue
        if not projection:
            raise PocketsizeError(
                f"the {sorted(users)} loss compares {key} states of width {w_s} (student) and "
                f"{w_t} (teacher) and projection=False; allow projection=True or match widths"
            )
        projections[key] = nn.Linear(w_s, w_t)


def _check_architecture(model, task) -> None:
    from pocketsize.tasks import check_architecture

    check_architecture(getattr(getattr(model, "config", None), "model_type", None), task)


def _parameters(model) -> int:
    return sum(p.numel() for p in model.parameters()) if isinstance(model, nn.Module) else 0
