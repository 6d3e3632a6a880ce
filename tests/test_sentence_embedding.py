"""Sentence embeddings: reading sentence-transformers directories, the pooled output through
distillation (output losses with a projection, the relational loss), the ONNX graph with the
pooling inside, and loading every directory pocketsize writes with sentence-transformers itself
(tiny random encoders; the real all-mpnet-base-v2 only in the e2e test of test_assets.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from zoo import EVAL_QUICK, QUICK_LOGGED, QUICK_VALIDATED, make_cls_dataset, make_tiny_embedder

from pocketsize.distill import distill
from pocketsize.errors import PocketsizeError
from pocketsize.formats.sentence_dir import Pooling, read_pooling
from pocketsize.tasks import embedding_metrics as M

pytestmark = pytest.mark.usefixtures("single_thread", "cache_in_tmp")

TEXTS = ["a good film", "the plot was dull and the cast was weak", "boring", "quite superb"]


@pytest.fixture(scope="module")
def embedder(tmp_path_factory):
    return make_tiny_embedder(tmp_path_factory.mktemp("embedder"))


@pytest.fixture(scope="module")
def data():
    return make_cls_dataset(32, 8, 24)


def _st_encode(path, **kw) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(path), device="cpu", **kw)
    return model.encode(TEXTS, convert_to_numpy=True)


def _ours(path) -> np.ndarray:
    import torch

    from pocketsize.distill.loading import load_tokenizer
    from pocketsize.tasks import get_task

    model = get_task("sentence-embedding").load_model(str(path))
    enc = load_tokenizer(str(path))(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**enc).sentence_embedding.numpy()


# ------------------------------------------------------------------ sentence-transformers files


def test_the_mpnet_layout_reads_as_mean_pooling_normalized_without_its_normalize_folder(
    embedder, tmp_path
):
    import shutil

    copy = shutil.copytree(embedder, tmp_path / "copy")
    shutil.rmtree(copy / "2_Normalize")  # all-mpnet-base-v2's archive lacks it too
    assert read_pooling(copy) == Pooling("mean", True)
    assert read_pooling(tmp_path) is None  # no modules.json: not a sentence-transformers dir


def test_modules_pocketsize_cannot_run_are_named(embedder, tmp_path):
    import shutil

    copy = shutil.copytree(embedder, tmp_path / "dense")
    modules = json.loads((copy / "modules.json").read_text())
    modules.append(
        {"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"}
    )
    (copy / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(PocketsizeError, match=r"sentence_transformers.models.Dense \(3_Dense\)"):
        read_pooling(copy)
    (copy / "modules.json").write_text(json.dumps(modules[:1]))
    with pytest.raises(PocketsizeError, match="lists no Pooling module"):
        read_pooling(copy)
    (copy / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": "weightedmean"}))
    (copy / "modules.json").write_text(json.dumps(modules[:2]))
    with pytest.raises(PocketsizeError, match="pooling mode 'weightedmean' is not one"):
        read_pooling(copy)


@pytest.mark.parametrize("mode", ["mean", "cls", "max"])
def test_the_pooled_output_is_sentence_transformers_own(tmp_path, mode):
    path = make_tiny_embedder(tmp_path / mode, pooling=mode)
    assert read_pooling(path) == Pooling(mode, True)
    np.testing.assert_allclose(_ours(path), _st_encode(path), atol=1e-5)


def test_a_text_column_alone_still_means_a_causal_lm():
    from datasets import Dataset

    from pocketsize.tasks import resolve_task, task_for_dataset

    assert task_for_dataset(Dataset.from_dict({"text": TEXTS})).name == "causal-lm"
    assert resolve_task("embedding").name == "sentence-embedding"


# ------------------------------------------------------------------ distillation


def test_a_narrower_student_learns_through_a_projection_and_loads_in_sentence_transformers(
    embedder, data, tmp_path
):
    from pocketsize.distill import distill

    out = distill(
        embedder, data, "config:layers=1,hidden=16,heads=2,ffn=24", tmp_path / "narrow",
        task="sentence-embedding", losses={"mse": 1.0, "cosine": 1.0}, max_steps=3, **QUICK_LOGGED,
    )  # fmt: skip
    record = json.loads((out / "stage.json").read_text())
    assert record["task"] == "sentence-embedding"
    assert record["config"]["projections"] == ["sentence_embedding"]  # 16 -> 32, for the loss only
    config = json.loads((out / "config.json").read_text())
    assert config["hidden_size"] == 16 and config["sentence_pooling"] == Pooling().as_dict()
    pooling = json.loads((out / "1_Pooling" / "config.json").read_text())
    assert pooling["word_embedding_dimension"] == 16 and pooling["pooling_mode_mean_tokens"]
    ours, theirs = _ours(out), _st_encode(out)
    assert ours.shape == (len(TEXTS), 16)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_the_relational_loss_needs_no_projection_and_moves_the_student(embedder, data, tmp_path):
    from pocketsize.distill import distill

    out = distill(
        embedder, data, "config:layers=1,hidden=16,heads=2,ffn=24,init=random",
        tmp_path / "relational", task="sentence-embedding", losses="relational",
        max_steps=4, learning_rate=1e-2, **QUICK_LOGGED,
    )  # fmt: skip
    record = json.loads((out / "stage.json").read_text())
    assert record["config"]["projections"] == []
    losses = [row["loss_similarity_mse"] for row in record["losses"]]
    assert losses and all(np.isfinite(losses))


def test_mse_without_projection_across_widths_is_refused_before_training(embedder, data, tmp_path):
    from pocketsize.distill import distill

    with pytest.raises(PocketsizeError, match=r"width 16 \(student\) and 32 \(teacher\)"):
        distill(
            embedder, data, "config:layers=1,hidden=16,heads=2", tmp_path / "refused",
            task="sentence-embedding", losses="mse", projection=False, max_steps=1, **QUICK_LOGGED,
        )  # fmt: skip
    assert not (tmp_path / "refused").exists()


# ------------------------------------------------------------------ export


def test_the_onnx_graph_pools_inside_and_loads_with_sentence_transformers_onnx_backend(
    embedder, tmp_path
):
    import onnx

    from pocketsize.export import export, read_record

    onnx_dir = export(embedder, tmp_path / "onnx")
    assert read_record(onnx_dir)["task"] == "sentence-embedding"
    graph = onnx.load(str(onnx_dir / "model.onnx"), load_external_data=False).graph
    assert [o.name for o in graph.output] == ["sentence_embedding", "last_hidden_state"]
    assert (onnx_dir / "modules.json").is_file() and (onnx_dir / "1_Pooling").is_dir()
    want = _st_encode(embedder)
    np.testing.assert_allclose(_st_encode(onnx_dir, backend="onnx"), want, atol=1e-4)
    from pocketsize.distill.loading import load_tokenizer
    from pocketsize.runtime.runners import OnnxRunner

    enc = load_tokenizer(str(embedder))(TEXTS, padding=True, return_tensors="np")
    runner = OnnxRunner(onnx_dir / "model.onnx", ("sentence_embedding",), 1, "onnx")
    got = runner.run({k: v.astype(np.int64) for k, v in enc.items()})["sentence_embedding"]
    np.testing.assert_allclose(got, want, atol=1e-4)


# ------------------------------------------------------------------ measures


def test_neighbour_overlap_spearman_and_cosine_tell_a_copy_from_noise():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 8))
    assert M.neighbour_overlap(x, x).mean() == 1.0
    assert M.similarity_spearman(x, x) == pytest.approx(1.0)
    noise = rng.normal(size=(60, 8))
    assert M.neighbour_overlap(noise, x).mean() < 0.5
    assert abs(M.similarity_spearman(noise, x)) < 0.2
    assert M.cosine_to_reference(x, x).mean() == pytest.approx(1.0)
    assert M.cosine_to_reference(rng.normal(size=(60, 4)), x) is None


def test_downstream_scores_separate_labelled_clusters_from_noise():
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1, 2], 30)
    centres = rng.normal(scale=5, size=(3, 8))
    clustered = centres[labels] + rng.normal(size=(90, 8))
    assert M.classification_hits(clustered, labels).mean() > 0.9
    assert M.clustering_v_measure(clustered, labels) > 0.8
    noise = rng.normal(size=(90, 8))
    assert M.classification_hits(noise, labels).mean() < 0.6
    assert M.clustering_v_measure(noise, labels) < 0.2


def test_the_report_scores_embeddings_on_labelled_text_and_refuses_unlabelled(embedder, data):
    from datasets import Dataset

    from pocketsize.eval import evaluate

    report = evaluate(
        {"teacher": embedder, "again": embedder}, data["test"], task="sentence-embedding",
        reference="teacher", **EVAL_QUICK,
    )  # fmt: skip
    again = report.metrics["variants"]["again"]
    assert again["agreement"] == 1.0 and again["fidelity"]["similarity_spearman"] == 1.0
    assert again["fidelity"]["mean_cosine"] == pytest.approx(1.0)
    assert set(again["metrics"]) >= {"accuracy", "v_measure"}
    header, rows = report.fidelity_rows()
    assert header[2:4] == ["similarity Spearman", "mean cosine to reference"]
    assert "KL" not in header and rows[1][2:4] == ["1.0000", "1.0000"]
    with pytest.raises(PocketsizeError, match="scored on labelled text"):
        evaluate(
            {"teacher": embedder}, Dataset.from_dict({"text": TEXTS}), task="sentence-embedding",
            **EVAL_QUICK,
        )  # fmt: skip


# ------------------------------------------------------------------ pruning


def test_pruning_an_embedder_ranks_parts_without_labels_and_keeps_the_pooling(
    embedder, data, tmp_path
):
    from pocketsize.prune import prune

    out = prune(
        embedder, data, out=tmp_path / "pruned", task="sentence-embedding", heads=0.5, ffn=0.5,
        vocab=True, max_examples=16, verbose=False,
    )  # fmt: skip
    record = json.loads((out / "stage.json").read_text())
    assert record["task"] == "sentence-embedding"
    config = json.loads((out / "config.json").read_text())
    before = json.loads((embedder / "config.json").read_text())
    assert config["intermediate_size"] < before["intermediate_size"]
    assert config["vocab_size"] < before["vocab_size"]
    ours, theirs = _ours(out), _st_encode(out)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    assert not np.allclose(ours, _ours(embedder)[:, : ours.shape[1]], atol=1e-3)


# ------------------------------------------------------------------ the static student


def test_the_static_student_trains_exports_and_evaluates_beside_the_teacher(
    embedder, data, tmp_path
):
    import torch

    from pocketsize.eval import evaluate
    from pocketsize.export import export, read_record
    from pocketsize.formats.module_dir import load_module_dir
    from pocketsize.quantize import quantize

    out = distill(
        embedder, data, "static:dim=8", tmp_path / "static", task="sentence-embedding",
        max_steps=6, **QUICK_LOGGED,
    )  # fmt: skip
    record = json.loads((out / "stage.json").read_text())
    assert record["student"] == "static" and record["config"]["projections"] == [
        "sentence_embedding"
    ]  # 8 -> 32 for the mse loss
    assert record["config"]["learning_rate"] == 5e-3
    model = load_module_dir(out)
    vocab = json.loads((embedder / "config.json").read_text())["vocab_size"]
    assert model.embeddings.weight.shape == (vocab, 8)
    # [CLS] and [SEP] are left out of the mean: a text with or without them embeds alike
    ids = torch.tensor([[5, 6, 7]])
    specials = torch.tensor([[2, 5, 6, 7, 3]])  # make_tokenizer's [CLS] and [SEP]
    torch.testing.assert_close(
        model(specials)["sentence_embedding"], model(ids)["sentence_embedding"]
    )
    onnx_dir = export(out, tmp_path / "static-onnx")
    assert read_record(onnx_dir)["parity"]["ok"]
    int8 = quantize(onnx_dir, out=tmp_path / "static-int8", method="dynamic")
    report = evaluate(
        {"teacher": embedder, "static": out, "onnx": onnx_dir, "int8": int8}, data["test"],
        task="sentence-embedding", reference="teacher", **EVAL_QUICK,
    )  # fmt: skip
    variants = report.metrics["variants"]
    assert variants["onnx"]["fidelity"]["mean_cosine"] is None  # 8 wide against 32
    assert variants["static"]["size_bytes"] < variants["teacher"]["size_bytes"]


def test_static_student_options_are_checked_before_training(embedder, data, tmp_path):
    with pytest.raises(PocketsizeError, match="static student dim=0 is out of range"):
        distill(
            embedder, data, "static:dim=0", tmp_path / "bad", task="sentence-embedding",
            max_steps=1, **QUICK_LOGGED,
        )  # fmt: skip
    with pytest.raises(PocketsizeError, match="dim=64 is wider than the teacher's 32-wide"):
        distill(
            embedder, data, "static:dim=64", tmp_path / "bad", task="sentence-embedding",
            max_steps=1, **QUICK_LOGGED,
        )  # fmt: skip
    with pytest.raises(PocketsizeError, match="student 'static' has no option width"):
        distill(
            embedder, data, "static:width=8", tmp_path / "bad", task="sentence-embedding",
            max_steps=1, **QUICK_LOGGED,
        )  # fmt: skip
    assert not (tmp_path / "bad").exists()


# ------------------------------------------------------------------ the peers in the report


def test_the_peers_are_built_from_the_teacher_and_run_in_the_report(embedder, data, tmp_path):
    """optimum's int8, sentence-transformers' own int8 and model2vec's static model of the same
    teacher, each as its tool makes it, scored in one report beside the teacher."""
    from pocketsize.distill.loading import load_tokenizer
    from pocketsize.eval import evaluate
    from pocketsize.formats.module_dir import load_module_dir
    from pocketsize.quantize.baselines import BASELINES
    from pocketsize.runtime.runners import OnnxRunner
    from pocketsize.tasks import get_task

    task = get_task("sentence-embedding")
    peers = {name: BASELINES[name](embedder, tmp_path / name, task=task) for name in BASELINES}
    # the int8 graphs of optimum and of sentence-transformers, with the pooling those tools run
    # in Python appended: unit vectors close to the teacher's own embeddings

    enc = load_tokenizer(str(embedder))(TEXTS, padding=True, return_tensors="np")
    feed = {k: v.astype(np.int64) for k, v in enc.items()}
    for name in ("optimum-int8", "st-int8"):
        (graph,) = peers[name].glob("*.onnx")
        got = OnnxRunner(graph, ("sentence_embedding",), 1, name).run(feed)["sentence_embedding"]
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
        assert M.cosine_to_reference(got, _ours(embedder)).min() > 0.9  # int8 of the same model
    # model2vec's static model as a StaticEmbedder gives model2vec's own embeddings
    from model2vec.distill import distill as m2v_distill

    static = m2v_distill(model_name=str(embedder), device="cpu")
    ours = load_module_dir(peers["model2vec"])
    tok = load_tokenizer(str(peers["model2vec"]))
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    mine = ours(batch["input_ids"], batch["attention_mask"])["sentence_embedding"].detach().numpy()
    np.testing.assert_allclose(mine, static.encode(TEXTS), atol=2e-3)  # float16 table
    report = evaluate(
        {"teacher": embedder, **peers}, data["test"], task="sentence-embedding",
        reference="teacher", **EVAL_QUICK,
    )  # fmt: skip
    assert set(report.metrics["variants"]) == {"teacher", *BASELINES}


# ------------------------------------------------------------------ MPNet (all-mpnet-base-v2's)


def test_an_mpnet_embedder_truncates_and_prunes_its_mlp_heads_and_width(data, tmp_path):
    """The pruned embedder still reads as sentence-transformers reads it (pooling over the
    narrower width); heads go only with the width they leave."""
    from pocketsize.prune import prune

    teacher = make_tiny_embedder(tmp_path / "mpnet", arch="mpnet")
    student = distill(
        teacher, data, "truncate:1", tmp_path / "student", task="sentence-embedding",
        max_steps=2, **QUICK_LOGGED,
    )  # fmt: skip
    config = json.loads((student / "config.json").read_text())
    assert (config["model_type"], config["num_hidden_layers"]) == ("mpnet", 1)
    np.testing.assert_allclose(_ours(student), _st_encode(student), atol=1e-5)
    pruned = prune(
        student, data, out=tmp_path / "pruned", task="sentence-embedding", ffn=0.5,
        heads=0.5, width=0.5, max_examples=16, verbose=False,
    )  # fmt: skip
    config = json.loads((pruned / "config.json").read_text())
    assert (config["intermediate_size"], config["hidden_size"], config["num_attention_heads"]) == (
        19, 16, 2,
    )  # fmt: skip
    assert _ours(pruned).shape[1] == 16
    np.testing.assert_allclose(_ours(pruned), _st_encode(pruned), atol=1e-5)
    with pytest.raises(PocketsizeError, match="same share as heads="):
        prune(
            student, data, out=tmp_path / "heads", task="sentence-embedding", heads=0.5,
            verbose=False,
        )  # fmt: skip
    assert not (tmp_path / "heads").exists()


def test_the_suite_scores_every_variant_on_more_labelled_sets_and_averages(
    embedder, data, tmp_path
):
    from zoo import make_tiny_bert, write_cls_files

    from pocketsize.eval import Report, evaluate

    one = write_cls_files(tmp_path / "one", n_test=40, seed=3)
    two = write_cls_files(tmp_path / "two", n_test=30, seed=4)
    report = evaluate(
        {"teacher": embedder, "again": embedder}, data["test"], task="sentence-embedding",
        reference="teacher", suite=[str(one), str(two)], suite_examples=25, **EVAL_QUICK,
    )  # fmt: skip
    record = report.metrics["variants"]["again"]
    assert list(record["suite"]) == [str(one), str(two)]
    figures = [v for f in record["suite"].values() for v in f.values()]
    assert len(figures) == 4 and record["suite_mean"] == pytest.approx(np.mean(figures))
    # the same model scores the same on each set: the figures are the embeddings', not noise
    assert record["suite"] == report.metrics["variants"]["teacher"]["suite"]
    report.save(tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text()
    assert "## Suite: more labelled sets" in md and f"{str(two)} v_measure" in md
    assert Report.load(tmp_path / "report").to_markdown() == report.to_markdown()
    classifier = make_tiny_bert(tmp_path / "classifier")
    with pytest.raises(PocketsizeError, match="suite= scores tasks whose models name no labels"):
        evaluate({"c": classifier}, data["test"], suite=[str(one)], **EVAL_QUICK)


def test_text_alone_and_transfer_text_train_an_embedder(embedder, tmp_path):
    from datasets import Dataset, DatasetDict

    texts = [t for t in make_cls_dataset(24, 4, 4)["train"]["text"]]
    data = DatasetDict(train=Dataset.from_dict({"text": texts}))
    out = distill(
        embedder, data, "truncate:0", tmp_path / "text-only", task="sentence-embedding",
        transfer=TEXTS * 3, max_steps=2, **QUICK_LOGGED,
    )  # fmt: skip
    record = json.loads((out / "stage.json").read_text())
    assert record["config"]["transfer_examples"] == len(TEXTS) * 3
    assert record["train_examples"] == len(texts) + len(TEXTS) * 3
    # another dataset's training split, sampled, as a spec (its test split stays unseen)
    out = distill(
        embedder, data, "truncate:0", tmp_path / "spec", task="sentence-embedding",
        transfer="vader-tweets:train:30,vader-amazon:train:10", max_steps=2, **QUICK_LOGGED,
    )  # fmt: skip
    record = json.loads((out / "stage.json").read_text())
    assert record["config"]["transfer_examples"] == 40


def test_unlabelled_validation_text_trains_with_a_note_and_eval_refuses_it_first(
    embedder, tmp_path, capsys
):
    """A plain text file is hash-split into train / validation / test, none labelled: the
    distillation runs (it crashed at its end, scoring the validation split) and says the
    split is not scored; eval refuses the unlabelled split before predicting anything."""
    from datasets import Dataset, DatasetDict

    from pocketsize.eval import evaluate

    texts = [t for t in make_cls_dataset(24, 4, 4)["train"]["text"]]
    data = DatasetDict(
        train=Dataset.from_dict({"text": texts}), validation=Dataset.from_dict({"text": texts[:8]})
    )
    out = distill(
        embedder, data, "truncate:0", tmp_path / "s", task="sentence-embedding", max_steps=2,
        **QUICK_VALIDATED,
    )  # fmt: skip
    assert "the validation split is not scored (sentence-embedding is scored on labelled text" in (
        capsys.readouterr().err
    )
    assert json.loads((out / "stage.json").read_text())["validation"] == {}
    with pytest.raises(PocketsizeError, match="scored on labelled text.*evaluate on a split"):
        evaluate({"s": out}, data["validation"], task="sentence-embedding", **EVAL_QUICK)


def _permuted_embedder(path):
    """A tiny embedder whose tokenizer numbers the same words in another order: another
    model family's vocabulary (MPNet's for a MiniLM student)."""
    import shutil

    from transformers import BertTokenizerFast

    make_tiny_embedder(path, seed=5)
    lines = (path / "vocab.txt").read_text().split()
    specials = [w for w in lines if w.startswith("[")]
    (path / "vocab.txt").write_text("\n".join(specials + lines[len(specials) :][::-1]) + "\n")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (path / name).unlink(missing_ok=True)
    BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True).save_pretrained(path)
    shutil.rmtree(path / "2_Normalize", ignore_errors=True)
    return path


def test_recovery_from_a_teacher_of_another_vocabulary_reads_its_own_token_ids(
    embedder, data, tmp_path
):
    """The recovery after pruning feeds a teacher given by reference its own tokenizer's ids,
    not the pruned student's: the teacher's cached outputs are the ones a distillation from
    that teacher computed (one cache entry), not outputs of the wrong tokens."""
    from pocketsize.assets.cache import cache_dir
    from pocketsize.prune import prune

    teacher = _permuted_embedder(tmp_path / "teacher")
    distill(
        teacher, data, str(embedder), tmp_path / "distilled", task="sentence-embedding",
        max_steps=1, **QUICK_LOGGED,
    )  # fmt: skip
    entries = sorted(p.name for p in (cache_dir() / "teacher-outputs").iterdir())
    assert len(entries) == 1
    prune(
        embedder, data, out=tmp_path / "pruned", task="sentence-embedding", ffn=0.5,
        recover=True, recover_teacher=str(teacher), max_examples=16, verbose=False,
        recover_options={"max_steps": 1, **QUICK_LOGGED},
    )  # fmt: skip
    assert sorted(p.name for p in (cache_dir() / "teacher-outputs").iterdir()) == entries
