"""One pruning layout per architecture, registered by `config.model_type` (see base.py)."""

from pocketsize.prune.layouts import (  # noqa: F401  (registers them)
    bert,
    deberta,
    decoders,
    distilbert,
    gpt2,
    modernbert,
    mpnet,
)
from pocketsize.prune.layouts.base import (
    Layout,
    layout_for,
    supported_architectures,
    width_architectures,
)

__all__ = ["Layout", "layout_for", "supported_architectures", "width_architectures"]
