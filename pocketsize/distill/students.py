"""Student builders: truncate (keep chosen teacher layers), config (a smaller architecture),
bilstm (Tang et al. 2019), static (one token table, mean-pooled: a sentence embedder's
smallest form), or any model directory / nn.Module the user gives.

Specs are plain data: "truncate:0,2,4", "config:layers=3,hidden=192,heads=6,ffn=768,init=teacher",
"bilstm:embed=128,hidden=150", {"init": "truncate", "layers": [0, 2, 4]}, a path, a module.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import torch
from torch import nn

from pocketsize.errors import PocketsizeError
from pocketsize.formats.layer_lists import keep_layers, layer_list, select_per_layer

STUDENT_TYPES = ("truncate", "config", "bilstm", "static")


def parse_spec(spec) -> tuple[str, dict]:
    """A student spec -> (kind, options)."""
    return _parse_mapping(spec) if isinstance(spec, dict) else _parse_text(spec)


def _parse_mapping(spec: dict) -> tuple[str, dict]:
    """{init: truncate, layers: [0, 2]} (a recipe's or a Python caller's)."""
    opts = dict(spec)
    kind = opts.pop("init", None) or opts.pop("type", None)
    if not kind:
        raise PocketsizeError(
            f"student spec {spec!r} needs init: one of {STUDENT_TYPES} or a model directory"
        )
    if kind not in STUDENT_TYPES:
        if opts:
            raise PocketsizeError(
                f"student {kind!r} is a model reference and takes no options; got {sorted(opts)}"
            )
        return "path", {"path": str(kind)}
    check_spec_options(kind, opts, spec)
    return kind, opts


def _parse_text(spec) -> tuple[str, dict]:
    """The text form: truncate:0,2,4, config:layers=3,hidden=192 or a model reference."""
    kind, _, rest = str(spec).partition(":")
    if kind not in STUDENT_TYPES:
        return "path", {"path": str(spec)}
    opts: dict = {}
    if kind == "truncate" and rest:
        try:
            opts["layers"] = [int(x) for x in rest.split(",") if x.strip()]
        except ValueError as e:
            raise PocketsizeError(
                f"cannot read student spec {spec!r}; write it like 'truncate:0,2,4'"
            ) from e
    elif rest:
        for part in rest.split(","):
            key, eq, value = part.partition("=")
            if not eq:
                raise PocketsizeError(
                    f"cannot read student option {part!r} in {spec!r}; write key=value pairs"
                )
            opts[key.strip()] = _number(value.strip())
    check_spec_options(kind, opts, spec)
    return kind, opts


SPEC_OPTIONS = {
    "truncate": {"layers"},
    "config": {"layers", "hidden", "heads", "ffn", "init"},
    "bilstm": {"embed", "hidden", "layers", "fc_size", "dropout"}
    | {"embed_dim", "hidden_size", "num_layers"},
    "static": {"dim", "init"},
}


def check_spec_options(kind: str, opts: dict, spec) -> None:
    """Unknown student options are errors, found before any training starts."""
    unknown = sorted(set(opts) - SPEC_OPTIONS[kind])
    if unknown:
        raise PocketsizeError(
            f"student {kind!r} has no option {', '.join(unknown)} (in {spec!r}); "
            f"allowed: {', '.join(sorted(SPEC_OPTIONS[kind]))}"
        )


def _number(value: str):
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def every_other(n: int) -> list[int]:
    """DistilBERT's initialisation: layers 0, 2, 4, ... (half the depth, rounded up)."""
    return list(range(0, n, 2))


def truncate(teacher: nn.Module, layers: list[int] | None = None) -> tuple[nn.Module, list[int]]:
    """A copy of the teacher keeping `layers` (teacher indices, in order)."""
    if getattr(teacher.config, "is_encoder_decoder", False):
        layers = list(layers) if layers else every_other(teacher.config.num_layers)
        return truncate_encoder_decoder(teacher, layers), layers
    depth = teacher.config.num_hidden_layers
    layers = list(layers) if layers else every_other(depth)
    bad = [i for i in layers if not 0 <= i < depth]
    if bad:
        raise PocketsizeError(
            f"truncate student names layer(s) {bad} but the teacher has {depth} layers "
            f"(0..{depth - 1}); choose existing layers"
        )
    if len(set(layers)) != len(layers):
        raise PocketsizeError(f"truncate student repeats a layer in {layers}; list each once")
    student = copy.deepcopy(teacher)
    keep_layers(student, layers)
    return student, layers


def truncate_encoder_decoder(
    teacher, encoder_layers: list[int], decoder_layers: list[int] | None = None
):
    """A T5-like copy keeping the given encoder and decoder blocks (teacher indices; the
    decoder keeps the encoder's unless told otherwise).

    T5 computes its relative position bias in block 0 only, so block 0 is always kept first.
    """
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


def smaller_config(
    teacher: nn.Module,
    layers: int | None = None,
    hidden: int | None = None,
    heads: int | None = None,
    ffn: int | None = None,
    init: str = "teacher",
) -> tuple[nn.Module, dict]:
    """The teacher's architecture with fewer layers / narrower widths.

    init="teacher" copies every teacher tensor whose shape fits (student layer i from the
    teacher layer a uniform mapping gives it); the rest stays randomly initialised.
    """
    config = copy.deepcopy(teacher.config)
    t_layers = config.num_hidden_layers
    config.num_hidden_layers = int(layers or max(1, t_layers // 2))
    if hidden:
        config.hidden_size = int(hidden)
    if heads:
        config.num_attention_heads = int(heads)
    if ffn and hasattr(config, "intermediate_size"):
        config.intermediate_size = int(ffn)
    if config.hidden_size % config.num_attention_heads:
        raise PocketsizeError(
            f"hidden size {config.hidden_size} is not divisible by {config.num_attention_heads} "
            "heads; choose a head count that divides it"
        )
    if init not in ("teacher", "random"):
        raise PocketsizeError(f"config student init must be 'teacher' or 'random', not {init!r}")
    n = config.num_hidden_layers
    source = [round((i + 1) * t_layers / n) - 1 for i in range(n)]
    select_per_layer(config, source, t_layers)  # e.g. Qwen's layer_types follow the layers
    student = type(teacher)(config)
    info = {"copied_tensors": 0, "total_tensors": len(student.state_dict())}
    info["teacher_layers"] = source
    if init == "teacher":
        name, _ = layer_list(student)
        t_state = teacher.state_dict()
        s_state = student.state_dict()
        pattern = re.compile(rf"^{re.escape(name)}\.(\d+)\.")
        with torch.no_grad():
            for key, tensor in s_state.items():
                src = pattern.sub(lambda m: f"{name}.{source[int(m.group(1))]}.", key)
                if src in t_state and t_state[src].shape == tensor.shape:
                    tensor.copy_(t_state[src])
                    info["copied_tensors"] += 1
    return student, info


def build_student(
    teacher: nn.Module, spec="truncate", *, tokenizer=None, task=None, trust=None, **kw
):
    """Build a student from `spec` and the (loaded) teacher.

    Returns (student_module, info) where info holds `type`, for truncate students the kept
    `layers` (the natural layer mapping), and `tokenizer` when the student brings its own.
    trust: trust_remote_code / trust_module_code for a student loaded from a directory.
    """
    if isinstance(spec, nn.Module):
        return spec, {"type": "module", "tokenizer": kw.get("student_tokenizer")}
    kind, opts = parse_spec(spec)
    if task is not None and kind != "path" and kind not in task.student_kinds:
        allowed = ", ".join(task.student_kinds) or "none: pass a module or its directory"
        raise PocketsizeError(
            f"the {kind} student does not fit {task.name}; student builders for it: {allowed}"
        )
    opts.update({k: v for k, v in kw.items() if k != "student_tokenizer"})
    if kind == "path":
        return _student_from_directory(opts["path"], task, trust or {})
    return _BUILDERS[kind](teacher, opts, spec, tokenizer)


def _truncated(teacher, opts: dict, spec, tokenizer):
    student, layers = truncate(teacher, opts.get("layers"))
    return student, {"type": "truncate", "layers": layers}


def _smaller(teacher, opts: dict, spec, tokenizer):
    _check_options(opts, SPEC_OPTIONS["config"], spec)
    student, info = smaller_config(teacher, **opts)
    return student, {"type": "config", **info}


def _bilstm(teacher, opts: dict, spec, tokenizer):
    from pocketsize.distill.bilstm import bilstm_from_teacher

    aliases = {"embed": "embed_dim", "hidden": "hidden_size", "layers": "num_layers"}
    opts = {aliases.get(k, k): v for k, v in opts.items()}
    _check_options(opts, {"embed_dim", "hidden_size", "num_layers", "fc_size", "dropout"}, spec)
    if tokenizer is None:
        raise PocketsizeError("the bilstm student needs the teacher's tokenizer")
    student = bilstm_from_teacher(
        teacher,
        tokenizer,
        num_labels=teacher.config.num_labels,
        id2label=dict(teacher.config.id2label),
        **opts,
    )
    return student, {"type": "bilstm"}


def _static(teacher, opts: dict, spec, tokenizer):
    from pocketsize.distill.static import static_from_teacher

    _check_options(opts, SPEC_OPTIONS["static"], spec)
    if tokenizer is None:
        raise PocketsizeError("the static student needs the teacher's tokenizer")
    student, info = static_from_teacher(teacher, tokenizer, **opts)
    return student, {"type": "static", **info}


_BUILDERS = {"truncate": _truncated, "config": _smaller, "bilstm": _bilstm, "static": _static}


def _student_from_directory(path, task, trust: dict):
    """A model directory, catalogue name or hub id as the student (with its own tokenizer)."""
    from pocketsize.assets import resolve_model
    from pocketsize.distill import loading
    from pocketsize.formats.side_files import has_tokenizer

    path = resolve_model(path)  # a catalogue name: its directory, with its own tokenizer
    student = loading.load_model(path, task, **trust)
    own = None
    if Path(path).is_dir() and has_tokenizer(path):
        own = loading.load_tokenizer(path, trust_remote_code=trust.get("trust_remote_code", False))
    return student, {"type": "model", "path": path, "tokenizer": own}


def _check_options(opts: dict, allowed: set, spec) -> None:
    unknown = set(opts) - allowed
    if unknown:
        raise PocketsizeError(
            f"unknown option(s) {sorted(unknown)} in student spec {spec!r}; "
            f"allowed: {sorted(allowed)}"
        )
