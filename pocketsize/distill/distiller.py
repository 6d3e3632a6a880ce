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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
from pocketsize.distill.config import DistillConfig
from pocketsize.distill.features import (
    FeatureCollator,
    forward_kwargs,
    probe_batch,
    training_features,
)
from pocketsize.distill.saving import (
    check_output_width,
    check_reloadable,
    output_widths,
    save_model,
)
from pocketsize.distill.students import build_student
from pocketsize.distill.trainer import collect
from pocketsize.distill.transfer import (
    augment_texts,
    iter_transfer_texts,
    scratch_dir,
    unlabelled_dataset,
)
from pocketsize.errors import PocketsizeError
from pocketsize.formats.records import stage_output
from pocketsize.fsutil import check_output_dir
from pocketsize.options import keywords_from

# The learning rate each student type trains at when the caller gives none (see distill()).
DEFAULT_LEARNING_RATES = {"truncate": 2e-4, "bilstm": 1e-3, "static": 5e-3}
FALLBACK_LEARNING_RATE = 5e-5


@bars_follow_progress
@keywords_from(DistillConfig)
def distill(
    teacher,
    data,
    student="truncate",
    out=None,
    *,
    config: DistillConfig | None = None,
    task=None,
    tokenizer=None,
    student_tokenizer=None,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = True,
    callbacks=None,
    trust_remote_code: bool = False,
    trust_module_code: bool = False,
    **options,
) -> Path:
    """Distil `teacher` into `student` on `data`; returns the student's directory.

    teacher: a fine-tuned model directory, hub id, catalogue name or model.
    student: "truncate[:0,2,4]", "config:layers=3,hidden=192,heads=6,ffn=768[,init=random]",
        "bilstm[:embed=128,hidden=150]", a spec dict, a model directory, or an nn.Module.
    config: a DistillConfig (pocketsize.distill.config); keywords build or override one:
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
        True or False. Intermediate losses need the live teacher, so they disable the cache;
        with hidden-state losses the live teacher's outputs are kept in memory from the first
        epoch for the later ones instead (distill/memo.py; off with cache=False).
        A causal LM's teacher is cached only when asked for (cache=True, or a `cache_top_k`),
        as its K largest logits per position (the top-k token KL, K=64 unless given;
        stage.json records the mass they cover).
    shuffle=False: examples in order, every epoch (for comparing runs; see training.train).
    trust_remote_code / trust_module_code: let the teacher's or a student directory's own code
    run (an auto_map in its config or tokenizer config; a module directory's class from
    outside pocketsize); off, such a model is refused in one line before any work.

    Under torchrun / accelerate launch every process trains its share of each batch (DDP);
    the main process alone fills the cache and writes the output, the others wait for it.
    """
    cfg = DistillConfig.build(config, **options)
    started = time.time()
    out = Path(out) if out is not None else T.default_out("distill")
    check_output_dir(out, overwrite)
    processes.start()
    trust = {"trust_remote_code": trust_remote_code, "trust_module_code": trust_module_code}
    run = _resolve(teacher, data, student, task, (tokenizer, student_tokenizer), cfg, trust)
    _training_examples(run)
    _prepare_losses(run)
    work, checkpoint = T.prepare_work_dir(out, resume)
    teacher_outputs, cache_info = _teacher_outputs(run)
    args = T.training_arguments(
        work, cfg, learning_rate=run.learning_rate, bf16=run.bf16, features=run.s_features,
        progress=progress,
    )  # fmt: skip
    validate = None
    split = T.validation_split(run.task, run.data, cfg.evaluate)
    if split is not None:
        validate = T.validator(run.task, run.s_tok, split, run.max_length)
    result, run.student_model, per_epoch, losses = T.train(
        run.student_model, run.task, run.s_features, run.s_tok, args,
        loss_weights=run.weights, loss_context=run.context, needs=run.needs,
        teacher=None if run.use_cache else run.teacher_model, teacher_outputs=teacher_outputs,
        teacher_memo=run.memo, projections=run.projections, callbacks=callbacks,
        checkpoint=checkpoint, validate=validate, shuffle=cfg.shuffle,
    )  # fmt: skip
    if not processes.is_main():
        processes.wait()  # for the main process to write the student
        _remove(run.scratch)
        return out
    scores = _final_scores(run, validate, per_epoch, result)
    with stage_output(out, "distill", overwrite) as tmp:
        save_model(run.student_model, run.s_tok, tmp, run.task, run.names)
        history = dict(validation_per_epoch=per_epoch, losses=losses)
        history["wall_time_s"] = round(time.time() - started, 2)
        _write_record(tmp, run, (teacher, student), result, checkpoint, cache_info, scores, history)
    shutil.rmtree(work, ignore_errors=True)
    _remove(run.scratch)
    processes.wait()
    return out


@dataclass
class _Run:
    """What the phases of one distillation share: the inputs as resolved and checked."""

    cfg: DistillConfig
    data: Any
    task: Any
    names: list | None
    weights: dict
    bf16: bool
    use_cache: bool
    teacher_model: Any = None
    t_tok: Any = None
    student_model: Any = None
    info: dict = field(default_factory=dict)
    s_tok: Any = None
    shared_tokenizer: bool = True
    learning_rate: float = FALLBACK_LEARNING_RATE
    # the training examples (_training_examples) and the losses' context (_prepare_losses)
    max_length: int | None = None
    t_features: Any = None
    s_features: Any = None
    n_extra: int = 0
    scratch: Path | None = None
    context: Any = None
    projections: Any = None
    trust: dict = field(default_factory=dict)  # trust_remote_code, trust_module_code
    memo: Any = None  # the live teacher's outputs kept for later epochs (distill/memo.py)

    @property
    def needs(self) -> set:
        return L.needs_of(self.weights)

    @property
    def intermediate(self) -> set:
        return self.needs & L.INTERMEDIATE


def _resolve(teacher, data, student, task, tokenizers, cfg, trust: dict) -> _Run:
    """Load the data, the teacher and the student, and run every check that needs only them."""
    from pocketsize.tasks import resolve_task

    with processes.main_first():  # the main process fetches what is not cached yet
        data = load.load_data(data)
    task = resolve_task(task, model=load.saved_model_dir(teacher), data=data)
    names = task.labels(load.require_split(data, "train"))
    weights = L.parse_losses(cfg.losses if cfg.losses is not None else dict(task.default_losses))
    intermediate = L.needs_of(weights) & L.INTERMEDIATE
    use_cache = _decide_cache(cfg.cache_setting, intermediate, task) and L.reads_teacher(weights)
    run = _Run(cfg, data, task, names, weights, T.resolve_bf16(cfg.bf16_setting), use_cache)
    run.trust = trust
    tokenizer, student_tokenizer = tokenizers
    _load_teacher(run, teacher, tokenizer)
    _build_student(run, student, student_tokenizer)
    run.shared_tokenizer = _check_tokenizers(
        run.t_tok, run.s_tok, run.student_model, task, intermediate, cfg.cache_setting
    )
    if not run.shared_tokenizer:
        run.use_cache = True  # the teacher's outputs are matched to examples, not to tokens
    return run


def _load_teacher(run: _Run, teacher, tokenizer) -> None:
    with processes.main_first():
        run.teacher_model = load.load_model(teacher, run.task, **run.trust)
    if run.task.needs_tokenizer:
        run.t_tok = load.load_tokenizer(
            tokenizer if tokenizer is not None or isinstance(teacher, nn.Module) else teacher,
            run.teacher_model,
            trust_remote_code=run.trust["trust_remote_code"],
        )
    if isinstance(run.teacher_model, nn.Module):
        run.teacher_model.eval()
    _check_architecture(run.teacher_model, run.task)
    if run.t_tok is not None and hasattr(run.teacher_model, "get_input_embeddings"):
        from pocketsize.formats.checkpoint import check_tokenizer_fits

        where = teacher if isinstance(teacher, (str, Path)) else "the teacher"
        check_tokenizer_fits(run.teacher_model, run.t_tok, where)
    load.check_labels(run.teacher_model, run.names, "teacher")


def _build_student(run: _Run, student, student_tokenizer) -> None:
    from transformers import set_seed

    set_seed(run.cfg.seed)
    run.student_model, run.info = build_student(
        run.teacher_model, student, tokenizer=run.t_tok, task=run.task,
        student_tokenizer=student_tokenizer, trust=run.trust,
    )  # fmt: skip
    run.student_model = run.task.prepare_model(run.student_model)
    _check_architecture(run.student_model, run.task)
    load.check_labels(run.student_model, run.names, "student")
    check_reloadable(run.student_model)
    run.learning_rate = run.cfg.learning_rate
    if run.learning_rate is None:
        run.learning_rate = DEFAULT_LEARNING_RATES.get(run.info.get("type"), FALLBACK_LEARNING_RATE)
    s_tok = student_tokenizer or run.info.get("tokenizer") or run.t_tok
    if isinstance(s_tok, (str, Path)):
        s_tok = load.load_tokenizer(s_tok, trust_remote_code=run.trust["trust_remote_code"])
    run.s_tok = s_tok


def _training_examples(run: _Run) -> None:
    """The train split, transfer text and augmented copies, as each model's features (extra
    text is written to a scratch Arrow file and memory-mapped: millions of lines stay on disk)."""
    cfg, task, train = run.cfg, run.task, run.data["train"]
    texts_extra = _extra_texts(cfg.transfer, cfg.augment, train, task, cfg.seed, run.t_tok)
    run.max_length = task.training_max_length(train, run.t_tok, run.teacher_model, cfg.max_length)
    examples = train
    if texts_extra is not None:
        from datasets import Value, concatenate_datasets

        run.scratch = scratch_dir("pocketsize-examples-")
        extra = unlabelled_dataset(texts_extra, run.scratch)
        run.n_extra = len(extra)
        if "label" in train.column_names:
            train = train.cast_column("label", Value("int64"))
        else:  # text alone (a sentence embedder's training text)
            extra = extra.remove_columns("label")
        examples = concatenate_datasets([train, extra])
    run.t_features = training_features(task, examples, run.t_tok, run.max_length)
    run.s_features = run.t_features
    if not run.shared_tokenizer:
        run.s_features = training_features(task, examples, run.s_tok, run.max_length)


def _prepare_losses(run: _Run) -> None:
    """Output widths, the layer mapping and projections, checked on real examples first."""
    task = run.task
    outputs = task.training_outputs or task.output_names
    run.context = L.LossContext.of_task(task, outputs, temperature=run.cfg.temperature)
    check_output_width(run.student_model, run.s_features, task, run.s_tok, run.names, "student")
    if L.reads_teacher(run.weights):
        check_output_width(run.teacher_model, run.t_features, task, run.t_tok, run.names, "teacher")
    run.projections = nn.ModuleDict()
    _output_projections(run)
    if run.intermediate:
        _prepare_intermediate(
            run.teacher_model, run.student_model, run.t_features, task, run.t_tok,
            run.intermediate, run.weights, run.info, run.cfg.layer_map, run.cfg.projection,
            run.context, run.projections,
        )  # fmt: skip


def _output_projections(run: _Run) -> None:
    """A learned projection per output that a feature-by-feature loss (mse, cosine) compares
    at two widths: a 384-wide student embedder against a 768-wide teacher."""
    users = sorted(n for n in run.weights if getattr(L.get_loss(n), "projects", False))
    if not users or not L.reads_teacher(run.weights):
        return
    names = run.context.output_names
    s = output_widths(run.student_model, run.s_features, run.task, run.s_tok, names)
    t = output_widths(run.teacher_model, run.t_features, run.task, run.t_tok, names)
    for name in names:
        if s[name] == t[name] or s[name] is None or t[name] is None:
            continue
        if not run.cfg.projection:
            raise PocketsizeError(
                f"the {users} loss compares {name} of width {s[name]} (student) and {t[name]} "
                "(teacher) and projection=False; allow projection=True or match widths"
            )
        run.projections[name] = nn.Linear(s[name], t[name])


def _teacher_outputs(run: _Run):
    """The teacher's outputs from the disk cache when only output losses are used (else the
    live teacher, whose outputs the memo may keep for the later epochs)."""
    if not run.use_cache:
        run.memo = _teacher_memo(run)
        return None, {"used": False}
    with processes.main_first():  # computed once; the other processes read it
        outputs, info = _cached_outputs(
            run.teacher_model, run.t_features, run.task, run.t_tok, run.context,
            run.cfg.cache_dir, run.cfg.batch_size,
            run.cfg.top_k if run.task.distribution_outputs else None, run.bf16,
        )  # fmt: skip
    info["used"] = True
    computed = processes.gather(not info["hit"])
    info["computed_by_processes"] = sum(computed)
    return outputs, info


def _teacher_memo(run: _Run):
    """A memo of the live teacher's outputs (distill/memo.py) where they can be kept: a task
    whose outputs the disk cache could hold, losses that read no attention maps, more than one
    pass over the examples, the cache not turned off, and no bf16 autocast."""
    task, cfg = run.task, run.cfg
    if cfg.cache == "off" or not L.reads_teacher(run.weights):
        return None
    if run.bf16:
        # Measured on a 2-core Xeon with AMX (docs/results.md): the bf16 teacher is cheap there,
        # so the memo made the student's distillation only 1.18x faster, while the main job's
        # final model lost 0.67 accuracy points on the mean of 3 seeds (lower on all three).
        return None
    if not task.cacheable or task.distribution_outputs or "attentions" in run.intermediate:
        return None
    if cfg.epochs <= 1 and cfg.max_steps <= 0:
        return None  # one pass: nothing would be read back
    from pocketsize.distill.memo import TeacherMemo

    return TeacherMemo(task.per_token_outputs, L.teacher_hidden_of(run.weights, run.context))


def _final_scores(run: _Run, validate, per_epoch, result) -> dict:
    """The student's last validation and the teacher's on the same split (on the main process)."""
    if validate is None:
        return {"student": {}, "teacher": {}}
    student = T.final_validation(per_epoch, result, validate, run.student_model)
    teacher = {}
    if isinstance(run.teacher_model, nn.Module):  # a plain callable teacher is not scored
        # with one tokenizer the student's encoding of the split is the teacher's too
        score = validate
        if not run.shared_tokenizer:
            score = T.validator(run.task, run.t_tok, run.data["validation"], run.max_length)
        # on the student's device (a cached teacher stayed where it was), then back
        home = home_device(run.teacher_model)
        teacher = score(run.teacher_model.to(processes.device()))
        run.teacher_model.to(home)
    return {"student": student, "teacher": teacher}


def _write_record(tmp, run: _Run, refs, result, checkpoint, cache_info, scores, history) -> None:
    """stage.json and the model card of the student's directory."""
    cfg, task, (teacher, student) = run.cfg, run.task, refs
    params = sum(p.numel() for p in run.student_model.parameters())
    t_params = _parameters(run.teacher_model)
    validation = R.headline(scores["student"], task)
    teacher_validation = R.headline(scores["teacher"], task)
    R.write_stage(
        tmp, teacher=load.describe(teacher), student=run.info.get("type"),
        student_spec=load.describe(student), task=task.name, labels=run.names,
        config=dict(
            losses=run.weights, temperature=cfg.temperature, layer_pairs=run.context.layer_pairs,
            projections=sorted(run.projections.keys()), epochs=cfg.epochs,
            batch_size=cfg.batch_size, learning_rate=run.learning_rate,
            max_length=run.max_length, transfer_examples=run.n_extra, augment=cfg.augment,
            bf16=run.bf16, seed=cfg.seed, max_steps=cfg.max_steps, shuffle=cfg.shuffle,
            processes=processes.world_size(),
        ),
        cache=dict(cache_info, **({"memo": run.memo.summary()} if run.memo else {})),
        train_examples=len(run.s_features), steps=result.global_step,
        resumed_from=checkpoint, train_loss=result.training_loss,
        train_runtime_s=result.metrics.get("train_runtime"), parameters=params,
        teacher_parameters=t_params, validation=validation,
        teacher_validation=teacher_validation, **history,
    )  # fmt: skip
    share = f" ({params / t_params:.1%} of the teacher's {t_params:,})" if t_params else ""
    R.write_model_card(
        tmp,
        f"{run.info.get('type')} student distilled from {load.describe(teacher)}",
        [
            "Written by `pocketsize distill`.",
            f"- parameters: {params:,}{share}",
            f"- losses: {run.weights}, temperature {cfg.temperature}, "
            f"layer pairs {run.context.layer_pairs}",
            f"- validation: {validation}; teacher: {teacher_validation}",
        ],
    )


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
            f"transfer data and augmentation are supported for text classification and "
            f"sentence embeddings, not {task.name}; drop transfer= and augment="
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


def _cached_outputs(
    teacher, features, task, tokenizer, context, cache_dir, batch_size, top_k, bf16
):
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
        bf16=bf16,  # the teacher as it would run live in this training
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
    context.layer_pairs = mapping.layer_map(_layer_spec(spec, info), n_s, n_t)
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


def _layer_spec(spec, info: dict):
    """layer_map="auto": the teacher layers a truncated or config student was built from."""
    if spec != "auto":
        return spec
    if info.get("type") == "truncate":
        return list(enumerate(info["layers"]))
    if info.get("type") == "config":
        return list(enumerate(info["teacher_layers"]))
    return "uniform"


def _check_architecture(model, task) -> None:
    from pocketsize.tasks import check_architecture

    check_architecture(getattr(getattr(model, "config", None), "model_type", None), task)


def _parameters(model) -> int:
    return sum(p.numel() for p in model.parameters()) if isinstance(model, nn.Module) else 0
