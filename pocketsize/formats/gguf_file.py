"""GGUF files in: a llama.cpp model file becomes a save_pretrained directory, once.

Why a directory, not a GGUF path carried through the stages: every stage reads a model
directory (config.json, safetensors, tokenizer files) and writes one. transformers' own GGUF
loader (`from_pretrained(dir, gguf_file=NAME)`, which needs the `gguf` package) dequantizes the
file to a float model; saving that once, in the cache and keyed by the file's sha256, lets
every verb take it as it takes any model, and a second verb on the same file reads it at once.

The directory records where its weights came from: `stage.json` (`"dequantized_from"`: the
file, its sha256 and how many tensors were of each GGUF type, e.g. 210 Q4_1, 1 Q8_0, 61 F32),
which the stages made from it inherit, and the model card. Quantized weights dequantized to
float are not the original float weights: the card says so.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from pocketsize.errors import PocketsizeError
from pocketsize.fsutil import atomic_dir, atomic_write_text, sha256_file, write_json

SUFFIX = ".gguf"
EXTRA_HINT = "pip install 'pocketsize[gguf]' (or pip install gguf)"


def gguf_file_of(ref: str) -> Path | None:
    """The GGUF file `ref` names: a path ending in .gguf, or a directory holding one GGUF file
    and no config.json; None for anything else (several GGUF files are refused by name)."""
    path = Path(ref)
    if path.is_file() and path.suffix.lower() == SUFFIX:
        return path
    if not path.is_dir() or (path / "config.json").exists():
        return None
    found = sorted(p for p in path.iterdir() if p.suffix.lower() == SUFFIX and p.is_file())
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise PocketsizeError(
            f"{path} holds {len(found)} GGUF files ({names}); pass the one to load, e.g. {found[0]}"
        )
    return found[0] if found else None


def require_gguf() -> None:
    try:
        import gguf  # noqa: F401
    except ImportError as e:
        raise PocketsizeError(
            f"reading a GGUF file needs the gguf package, which is not installed: {EXTRA_HINT}"
        ) from e


def tensor_types(path: Path) -> dict[str, int]:
    """How many tensors of each GGUF type the file holds, e.g. {'Q4_1': 210, 'F32': 61}."""
    from gguf import GGUFReader

    counts = Counter(t.tensor_type.name for t in GGUFReader(str(path)).tensors)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def dequantized_dir(path: Path, cache_root: Path) -> Path:
    """The save_pretrained directory of GGUF file `path` (made on first use, under cache_root)."""
    require_gguf()
    digest = sha256_file(path)
    out = Path(cache_root) / "gguf" / digest
    if (out / "stage.json").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_dir(out, overwrite=True) as tmp:
        try:
            source = {"file": path.name, "sha256": digest, "tensor_types": tensor_types(path)}
            _dequantize(path, tmp)
        except (ValueError, KeyError, OSError, IndexError) as e:
            raise PocketsizeError(
                f"{path} could not be read as a GGUF model by transformers' GGUF loader "
                f"({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}); check "
                "that the file is complete and that transformers supports its architecture"
            ) from e
        write_json(tmp / "stage.json", {"schema": 1, "stage": "gguf", "dequantized_from": source})
        atomic_write_text(tmp / "README.md", model_card(source))
    return out


def _dequantize(path: Path, out: Path) -> None:
    """transformers' GGUF loader: the float model and its tokenizer, saved as a directory."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    from pocketsize.formats import hf_load  # the one loader: no code of the file's runs

    folder, name = str(path.parent), path.name
    config = hf_load.load_config(folder, gguf_file=name)
    auto = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    model = hf_load.load_model(auto, folder, gguf_file=name, dtype=torch.float32)
    tokenizer = hf_load.load_tokenizer(folder, gguf_file=name)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def model_card(source: dict) -> str:
    types = ", ".join(f"{n} {t}" for t, n in source["tensor_types"].items())
    return (
        f"# Dequantized from {source['file']}\n\n"
        f"The weights of this directory were dequantized to float32 by transformers' GGUF "
        f"loader from `{source['file']}` (sha256 `{source['sha256']}`), whose tensors were: "
        f"{types}. Quantized weights made float again are not the original float weights: "
        "compare against the GGUF model, not its unquantized parent.\n"
    )
