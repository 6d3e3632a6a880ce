"""Which student layer learns from which teacher layer, as plain data: a list of pairs.

Layers are 0-based transformer layers (hidden_states[i + 1], attentions[i]); the embedding
output is handled by the `embedding` loss, not by the mapping.
"""

from __future__ import annotations

from pocketsize.errors import PocketsizeError


def layer_map(spec, n_student: int, n_teacher: int) -> list[tuple[int, int]]:
    """Resolve a mapping spec against both depths.

    spec: "uniform" (student layer i -> teacher layer round((i+1)*Lt/Ls)-1, so the last maps
    to the last), "last" or "last:K" (the last K layers of each, aligned from the top),
    a list of (student, teacher) pairs, a {student: teacher} dict or a "0:1,1:3" string.
    """
    if n_student < 1 or n_teacher < 1:
        raise PocketsizeError(
            "intermediate losses need models with transformer layers; use output losses only"
        )
    if spec is None or spec == "uniform":
        pairs = [(i, round((i + 1) * n_teacher / n_student) - 1) for i in range(n_student)]
    elif isinstance(spec, str) and (spec == "last" or spec.startswith("last:")):
        k = int(spec.split(":", 1)[1]) if ":" in spec else min(n_student, n_teacher)
        if not 1 <= k <= min(n_student, n_teacher):
            raise PocketsizeError(
                f"layer map {spec!r}: K must be between 1 and {min(n_student, n_teacher)} "
                f"(student has {n_student} layers, teacher {n_teacher})"
            )
        pairs = [(n_student - k + i, n_teacher - k + i) for i in range(k)]
    else:
        pairs = _explicit_pairs(spec)
    validate(pairs, n_student, n_teacher)
    return pairs


def _explicit_pairs(spec) -> list[tuple[int, int]]:
    try:
        if isinstance(spec, str):
            items = [p.split(":") for p in spec.replace(" ", "").split(",") if p]
            return [(int(s), int(t)) for s, t in items]
        if isinstance(spec, dict):
            return [(int(s), int(t)) for s, t in spec.items()]
        return [(int(s), int(t)) for s, t in spec]
    except (TypeError, ValueError) as e:
        raise PocketsizeError(
            f"cannot read layer map {spec!r}; use 'uniform', 'last:K', "
            "pairs like [(0, 1), (1, 3)] or a string like '0:1,1:3'"
        ) from e


def validate(pairs, n_student: int, n_teacher: int) -> None:
    if not pairs:
        raise PocketsizeError("the layer map is empty; give at least one (student, teacher) pair")
    for s, t in pairs:
        if not 0 <= s < n_student:
            raise PocketsizeError(
                f"layer map names student layer {s}, but the student has {n_student} layers "
                f"(0..{n_student - 1}); fix the mapping"
            )
        if not 0 <= t < n_teacher:
            raise PocketsizeError(
                f"layer map names teacher layer {t}, but the teacher has {n_teacher} layers "
                f"(0..{n_teacher - 1}); fix the mapping"
            )
