"""Vocabulary trimming: keep the embedding rows of the pieces the task's text uses.

Why not simply delete the unused pieces from the tokenizer: WordPiece (and BPE/Unigram)
segmentation depends on the whole vocabulary. With a piece removed, greedy longest-match
segments an unseen word differently (other, shorter pieces), and WordPiece turns a whole word
into [UNK] when one of its pieces is missing. Both change what the model sees on new text.

What pocketsize does instead:
1. The tokenizer keeps every piece (so it segments all text exactly as before), but its ids
   are renumbered: the kept pieces get ids 0..K-1 (in their old order), the dropped pieces
   K..V-1. Unique ids, so the tokenizer saves and reloads through `save_pretrained` unchanged.
2. The embedding matrix keeps only the K kept rows (`config.vocab_size = K`): a standard
   transformers model that `from_pretrained` loads and optimum exports.
3. Every id >= K is mapped to the new [UNK] id right before the embedding lookup, piece by
   piece (`VocabClampedEmbedding` in PyTorch; a Less+Where in front of the ONNX graph, added by
   `add_vocab_clamp_to_onnx` or traced from the clamped PyTorch model). The config records it
   as `pocketsize_vocab_trim`; `apply_vocab_clamp(model)` re-installs it after loading.
A plain `from_pretrained` without the clamp still gives the same results for every kept piece;
a dropped piece then fails loudly (index out of range) instead of silently reading a wrong row.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from pocketsize.errors import PocketsizeError
from pocketsize.formats.vocab_clamp import (  # noqa: F401  (re-exported)
    CONFIG_KEY,
    add_vocab_clamp_to_onnx,
    apply_vocab_clamp,
    embedding_class,
)

# columns of text (or, for token classification, of pre-split words) a tokenizer reads
TEXT_COLUMNS = ("text", "text_pair", "question", "context", "tokens")


def require_fast_tokenizer(tokenizer) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise PocketsizeError(
            f"vocabulary trimming needs a fast (Rust) tokenizer, got {type(tokenizer).__name__}; "
            "load it with AutoTokenizer.from_pretrained(..., use_fast=True) or convert it first"
        )
    if tokenizer.unk_token_id is None:
        raise PocketsizeError(
            "vocabulary trimming needs a tokenizer with an unknown token (unk_token) for the "
            "dropped pieces; this tokenizer has none"
        )


def texts_of(data, splits: Iterable[str] = ("train", "validation")) -> list[str]:
    """All text of the given splits' text columns (never the test split unless asked)."""
    texts: list[str] = []
    for name in splits:
        if name not in data:
            continue
        split = data[name]
        for col in TEXT_COLUMNS:
            if col in split.column_names:
                # words are tokenized one by one, so each is a text of its own
                texts += [w for t in split[col] for w in ([t] if isinstance(t, str) else t) if w]
    return texts


def read_lines(source) -> list[str]:
    """A list of strings as given, or the non-empty lines of a text file."""
    if source is None:
        return []
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise PocketsizeError(f"{path} is not a file; give a text file with one entry a line")
        return [
            line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
        ]
    return [str(s) for s in source]


def corpus_texts(corpora: list[str]) -> list[str]:
    """The texts of dataset specs (NAME, NAME:SPLIT or NAME:SPLIT:N; data/text_specs.py), e.g. a broad
    corpus whose pieces a trimmed vocabulary keeps beside the task's own."""
    from pocketsize.data.text_specs import spec_texts

    return [t for spec in corpora for t in spec_texts(spec)]


def used_ids(
    tokenizer, texts: list[str], keep_tokens: Iterable = (), min_count: int = 1, batch: int = 1000
) -> set:
    """Ids of the pieces `texts` tokenize into at least `min_count` times, plus special/added
    tokens and a user list (kept whatever their count)."""
    counts: Counter = Counter()
    for start in range(0, len(texts), batch):
        enc = tokenizer(texts[start : start + batch], add_special_tokens=False)["input_ids"]
        for row in enc:
            counts.update(row)
    ids = {i for i, n in counts.items() if n >= min_count}
    ids |= set(tokenizer.all_special_ids)
    ids |= set(tokenizer.added_tokens_decoder)
    vocab = tokenizer.get_vocab()
    for tok in keep_tokens:
        if isinstance(tok, int):
            ids.add(tok)
        elif tok in vocab:
            ids.add(vocab[tok])
        else:
            raise PocketsizeError(
                f"token {tok!r} in the keep list is not in the tokenizer's vocabulary"
            )
    return ids


def plan_vocab(tokenizer, keep: set, model_vocab_size: int) -> tuple[dict, int]:
    """old id -> new id for every id the tokenizer can produce: kept first, dropped after."""
    present = set(tokenizer.get_vocab().values())
    kept = sorted(i for i in present if i in keep)
    if kept and kept[-1] >= model_vocab_size:
        raise PocketsizeError(
            f"the tokenizer produces id {kept[-1]} but the model has only {model_vocab_size} "
            "embedding rows; tokenizer and model do not belong together"
        )
    dropped = sorted(present - set(kept))
    return {old: new for new, old in enumerate(kept + dropped)}, len(kept)


def _remap_post_processor(proc: dict | None, old2new: dict) -> None:
    if not proc:
        return
    kind = proc.get("type")
    if kind in ("BertProcessing", "RobertaProcessing"):
        for key in ("sep", "cls"):
            proc[key][1] = old2new[proc[key][1]]
    elif kind == "TemplateProcessing":
        for spec in proc.get("special_tokens", {}).values():
            spec["ids"] = [old2new[i] for i in spec["ids"]]
    elif kind == "Sequence":
        for p in proc.get("processors", []):
            _remap_post_processor(p, old2new)


def rewrite_tokenizer(tokenizer, old2new: dict, out_dir: Path) -> None:
    """Save `tokenizer` into out_dir with every id renumbered by old2new (same pieces)."""
    out_dir = Path(out_dir)
    tokenizer.save_pretrained(out_dir, legacy_format=False)  # fast files only: no stale vocab
    tj_path = out_dir / "tokenizer.json"
    tj = json.loads(tj_path.read_text(encoding="utf-8"))
    model = tj["model"]
    if isinstance(model.get("vocab"), dict):  # WordPiece, BPE, WordLevel
        model["vocab"] = dict(
            sorted(((tok, old2new[i]) for tok, i in model["vocab"].items()), key=lambda kv: kv[1])
        )
    elif isinstance(model.get("vocab"), list):  # Unigram: [piece, score] listed in id order
        pieces = model["vocab"]
        reordered = [None] * len(pieces)
        for old, entry in enumerate(pieces):
            reordered[old2new[old]] = entry
        model["vocab"] = reordered
        if model.get("unk_id") is not None:
            model["unk_id"] = old2new[model["unk_id"]]
    else:
        raise PocketsizeError(f"cannot renumber a {model.get('type')} tokenizer model")
    for added in tj.get("added_tokens", []):
        added["id"] = old2new[added["id"]]
    _remap_post_processor(tj.get("post_processor"), old2new)
    if tj.get("padding") and "pad_id" in tj["padding"]:
        tj["padding"]["pad_id"] = old2new[tj["padding"]["pad_id"]]
    # compact: the file ships with the model, and indentation is a third of a WordPiece file
    tj_path.write_text(json.dumps(tj, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")

    cfg_path = out_dir / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    if "added_tokens_decoder" in cfg:
        cfg["added_tokens_decoder"] = {
            str(old2new[int(k)]): v for k, v in cfg["added_tokens_decoder"].items()
        }
    cfg_path.write_text(json.dumps(cfg, ensure_ascii=False, indent=2), encoding="utf-8")

    if model.get("type") == "WordPiece":
        # vocab.txt in the new order, so the slow tokenizer and vocab-file readers agree too
        (out_dir / "vocab.txt").write_text(
            "".join(tok + "\n" for tok in model["vocab"]), encoding="utf-8"
        )


def shrink_embeddings(model, old2new: dict, kept: int, unk_token_id: int) -> None:
    """Keep the kept rows of the input embedding, renumbered; install the [UNK] clamp."""
    import torch

    if model.get_output_embeddings() is not None:
        raise PocketsizeError(
            "vocabulary trimming supports encoder models without an LM head; this model ties "
            "its output layer to the vocabulary"
        )
    old = model.get_input_embeddings()
    kept_old = sorted((o for o, n in old2new.items() if n < kept), key=lambda o: old2new[o])
    new_unk = old2new[unk_token_id]
    pad = old.padding_idx
    new_pad = old2new.get(pad) if pad is not None and old2new.get(pad, kept) < kept else None
    emb = embedding_class()(kept, old.embedding_dim, new_unk, padding_idx=new_pad)
    with torch.no_grad():
        emb.weight.copy_(old.weight[torch.tensor(kept_old, dtype=torch.long)])
    emb.to(device=old.weight.device, dtype=old.weight.dtype)
    original_size = model.config.vocab_size
    model.set_input_embeddings(emb)
    model.config.vocab_size = kept
    embeddings = getattr(model.base_model, "embeddings", None)
    if new_pad is not None and hasattr(embeddings, "padding_idx"):
        embeddings.padding_idx = new_pad  # RoBERTa derives position ids from it
    for key, value in list(model.config.to_dict().items()):
        if key.endswith("_token_id") and isinstance(value, int) and value in old2new:
            setattr(model.config, key, old2new[value])
    setattr(
        model.config,
        CONFIG_KEY,
        {"kept_vocab_size": kept, "unk_token_id": new_unk, "original_vocab_size": original_size},
    )


def check_same_pieces(old_tok, new_tok, old2new: dict, texts: list[str]) -> None:
    """The renumbered tokenizer must give the same pieces as before, id for id."""
    old = old_tok(texts)["input_ids"]
    new = new_tok(texts)["input_ids"]
    for text, a, b in zip(texts, old, new):
        if [old2new[i] for i in a] != b:
            raise RuntimeError(f"renumbered tokenizer segments {text!r} differently: bug")
