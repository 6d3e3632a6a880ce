"""Vocabulary trimming on the real packaged MiniLM tokenizer and rt-polarity text (e2e)."""

from __future__ import annotations

import json

import pytest
import torch

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    import pocketsize as ps
    from pocketsize.prune import prune

    # the packaged model and data must be there: no skip hides a failure
    data = ps.load_dataset("rt-polarity")
    ps.fetch("minilm-l6")

    out = tmp_path_factory.mktemp("real") / "vocab"
    prune("minilm-l6", data, vocab=True, out=out, verbose=False)
    return data, out


def test_real_vocab_trim_same_pieces_and_unk_per_piece(real):
    from transformers import AutoTokenizer

    import pocketsize as ps
    from pocketsize.prune import load_pruned

    data, out = real
    record = json.loads((out / "stage.json").read_text())["vocab"]
    assert record["original_vocab_size"] == 30522
    assert record["embedding_shrink"] >= 2.0  # issue 6: >= 2x smaller embedding matrix

    old_tok, new_tok = ps.load_tokenizer("minilm-l6"), AutoTokenizer.from_pretrained(out)
    kept = record["kept_vocab_size"]
    test_texts = list(data["test"]["text"])
    old_ids = old_tok(test_texts)["input_ids"]
    new_ids = new_tok(test_texts)["input_ids"]
    n_dropped = 0
    for a, b in zip(old_ids, new_ids):  # every test sentence: the same pieces, in order
        assert old_tok.convert_ids_to_tokens(a) == new_tok.convert_ids_to_tokens(b)
        n_dropped += sum(i >= kept for i in b)
    assert n_dropped > 0  # the test split does use pieces the training text never did

    original = ps.load_model("minilm-l6", task="text-classification")
    trimmed = load_pruned(out)
    # the random head is not saved with the base encoder: give both models the same head
    trimmed.classifier.load_state_dict(original.classifier.state_dict())
    fit = list(data["train"]["text"][:48]) + list(data["validation"]["text"][:16])
    with torch.no_grad():
        a = original(**old_tok(fit, padding=True, return_tensors="pt")).logits
        b = trimmed(**new_tok(fit, padding=True, return_tensors="pt")).logits
    torch.testing.assert_close(a, b)
    # test text: exactly the original model with each dropped piece replaced by [UNK] alone
    sample = [t for t, ids in zip(test_texts, new_ids) if any(i >= kept for i in ids)][:32]
    enc_old = old_tok(sample, padding=True, return_tensors="pt")
    enc_new = new_tok(sample, padding=True, return_tensors="pt")
    ids = enc_old["input_ids"].clone()
    ids[enc_new["input_ids"] >= kept] = old_tok.unk_token_id
    with torch.no_grad():
        expected = original(**{**enc_old, "input_ids": ids}).logits
        got = trimmed(**enc_new).logits
    torch.testing.assert_close(got, expected)


def test_why_not_delete_pieces_from_wordpiece(real):
    """The rejected design: a WordPiece vocabulary of only the kept pieces re-segments words."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    data, out = real
    new_tok = AutoTokenizer.from_pretrained(out)
    kept = json.loads((out / "stage.json").read_text())["vocab"]["kept_vocab_size"]
    spec = json.loads(new_tok.backend_tokenizer.to_str())
    spec["model"]["vocab"] = {t: i for t, i in spec["model"]["vocab"].items() if i < kept}
    naive = Tokenizer.from_str(json.dumps(spec))
    words = sorted({w for t in data["test"]["text"] for w in t.split()})
    changed = 0
    for w in words:
        exact = new_tok.tokenize(w)
        unk_per_piece = ["[UNK]" if new_tok.convert_tokens_to_ids(p) >= kept else p for p in exact]
        if naive.encode(w, add_special_tokens=False).tokens != unk_per_piece:
            changed += 1
    assert changed > 0
