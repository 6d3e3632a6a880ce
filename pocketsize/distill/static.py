"""The static student of a sentence embedder: the teacher's token table, reduced by PCA to a
smaller width, as the start of a StaticEmbedder (pocketsize/zoo/static_embedder.py) that
distillation then trains on the teacher's sentence embeddings.

model2vec starts its tables from the teacher's output for each token alone; the input table
is used here because it costs nothing to read, and the distillation that follows is what
makes the mean of the vectors a sentence embedding (model2vec's own result is a baseline of
the embeddings report, so the two starts are compared there).
"""

from __future__ import annotations

import torch

from pocketsize.errors import PocketsizeError
from pocketsize.zoo.static_embedder import StaticEmbedder

DEFAULT_DIM = 256  # model2vec's default width


def static_from_teacher(teacher, tokenizer, dim: int | None = None, init: str = "teacher"):
    """(StaticEmbedder, info): one row per teacher token, `dim` wide; the tokenizer's special
    tokens but [UNK] are left out of every mean."""
    table = teacher.get_input_embeddings().weight.detach().float()
    vocab, width = table.shape
    dim = int(min(DEFAULT_DIM, width) if dim is None else dim)
    if not 0 < dim <= min(vocab, 4096):
        raise PocketsizeError(
            f"static student dim={dim} is out of range; choose 1..{min(vocab, 4096)} (the "
            f"teacher's tokens are {width} wide)"
        )
    if init not in ("teacher", "random"):
        raise PocketsizeError(f"static student init must be 'teacher' or 'random', not {init!r}")
    if init == "teacher" and dim > width:
        raise PocketsizeError(
            f"static student dim={dim} is wider than the teacher's {width}-wide tokens it starts "
            f"from; choose dim <= {width}, or init=random"
        )
    skip = [i for i in tokenizer.all_special_ids if i != tokenizer.unk_token_id and i < vocab]
    student = StaticEmbedder(vocab, dim, normalize=True, skip_ids=skip)
    with torch.no_grad():
        if init == "teacher":
            student.embeddings.weight.copy_(_principal_components(table, dim))
        else:
            student.embeddings.weight.normal_(0.0, 0.02)
    return student, {"dim": dim, "init": init, "teacher_width": width}


def _principal_components(table: torch.Tensor, dim: int) -> torch.Tensor:
    """The table's coordinates on its `dim` main directions (a thin SVD: exact and the same
    every run; about a second for a 30k x 768 table)."""
    centred = table - table.mean(0, keepdim=True)
    _, _, vt = torch.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:dim].T
