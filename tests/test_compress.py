"""Compress to a target, first part: the candidates, the size/latency frontier measured on
untrained candidates (real truncation, pruning, export, int8 and ONNX Runtime timing on a
tiny BERT), and the trial log a rerun continues, after a kill -9 too."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from zoo import make_cls_dataset, make_tiny_bert

from pocketsize.compress import CompressConfig, TrialLog, candidates, measure_frontier
from pocketsize.errors import PocketsizeError
from pocketsize.tasks import get_task

SPACE = {"layers": [1, 3], "heads": [0.0], "ffn": [0.0, 0.5], "embedding_bits": [8]}


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("t") / "teacher", num_hidden_layers=6)


@pytest.fixture(scope="module")
def data():
    return make_cls_dataset(n_train=48, n_val=16, n_test=16)


def test_the_space_is_every_combination_spread_over_the_teacher():
    cfg = CompressConfig(layers=[3, 2], heads=[0.5, 0.0], ffn=[0.75], embedding_bits=[4, 8])
    found = candidates(cfg, depth=6)
    assert len(found) == 2 * 2 * 1 * 1 * 2
    assert len({c.name for c in found}) == len(found)
    three = next(c for c in found if c.layers == 3)
    assert three.kept_layers(6) == [0, 2, 4]  # DistilBERT's choice
    assert three.name.startswith("L3-") and "f0.75" in three.name


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"min_agreement": 0.9, "max_drop": 0.01}, "min_agreement or max_drop, not both"),
        ({"ffn": [0.5, 1.0]}, "option ffn: must be shares from 0"),
        ({"layers": []}, "option layers: must be layer counts"),
        ({"embedding_bits": [2]}, "option embedding_bits: must be embedding bits"),
        ({"max_size_mb": 0}, "option max_size_mb: must be above 0"),
        ({"heads": ["half"]}, "option heads: expected a list of floats"),
        ({"recover_options": {"epochs": 2}}, "option recover_options: drop epochs; the rungs"),
        ({"distill_options": "{epochs: 1"}, "option distill_options: cannot read"),
    ],
)
def test_bad_options_are_refused_in_one_line(options, message):
    with pytest.raises(PocketsizeError, match=message):
        CompressConfig.build(**options)


def test_more_layers_than_the_teacher_has_are_named():
    with pytest.raises(PocketsizeError, match=r"layers: \[8\] is more than the teacher's 6"):
        candidates(CompressConfig(layers=[2, 8]), depth=6)


def test_the_frontier_measures_every_candidate_and_a_rerun_reads_it_back(teacher, data, tmp_path):
    task = get_task("text-classification")
    limit = CompressConfig(**SPACE)
    found = candidates(limit, depth=6)
    log = TrialLog(tmp_path)
    entries = measure_frontier(teacher, data, found, limit, log, task)
    by_name = {e["candidate"]: e for e in entries}
    assert list(by_name) == [c.name for c in found]
    assert all(e["latency_ms"] > 0 and e["size_mb"] > 0 for e in entries)
    one, three = by_name["L1-h0-f0-w0-e8"], by_name["L3-h0-f0-w0-e8"]
    assert one["params"] < three["params"] and one["size_mb"] < three["size_mb"]
    assert by_name["L3-h0-f0.5-w0-e8"]["params"] < three["params"]
    # a size limit between the two depths: only the shallow candidates are within it
    cut = CompressConfig(**SPACE, max_size_mb=(one["size_mb"] + three["size_mb"]) / 2)
    again = measure_frontier(teacher, data, found, cut, TrialLog(tmp_path), task)
    assert again == entries  # read back, not rebuilt
    assert len((tmp_path / "trials.jsonl").read_text().splitlines()) == len(found)
    from pocketsize.compress import within_limits

    assert [within_limits(e, cut) for e in again] == [c.layers == 1 for c in found]
    # timed at another batch size, the candidates are measured again (and logged beside)
    batch2 = CompressConfig(**SPACE, latency_batch=2)
    two = measure_frontier(teacher, data, found[:1], batch2, TrialLog(tmp_path), task)
    assert two[0]["latency_batch"] == 2 and two[0] != entries[0]
    assert len((tmp_path / "trials.jsonl").read_text().splitlines()) == len(found) + 1


def test_a_latency_limit_of_a_model_is_timed_beside_every_candidate(teacher, data, tmp_path):
    """max_latency_of: the model is timed in the same measurement as each candidate (two
    timings minutes apart differ by up to 30% on a shared machine), and the limit is its
    latency there: the 6-layer teacher in float is slower than every 1-layer int8 candidate."""
    from pocketsize.compress import compress, within_limits
    from pocketsize.export import export

    task = get_task("text-classification")
    slow = export(teacher, tmp_path / "teacher-onnx", task=task.name)
    cfg = CompressConfig(**{**SPACE, "layers": [1]}, max_latency_of=str(slow))
    entries = measure_frontier(teacher, data, candidates(cfg, 6), cfg, TrialLog(tmp_path), task)
    assert all(e["max_latency_of"] == str(slow) for e in entries)
    assert all(e["latency_ms"] < e["max_latency_of_ms"] for e in entries), entries
    assert all(within_limits(e, cfg) for e in entries)
    unpaired = CompressConfig(**{**SPACE, "layers": [1]})
    again = measure_frontier(teacher, data, candidates(cfg, 6), unpaired, TrialLog(tmp_path), task)
    assert all("max_latency_of_ms" not in e for e in again)  # another limit: measured again
    with pytest.raises(PocketsizeError, match=r"max_latency_of: .* is not an ONNX model dir"):
        compress(teacher, data, tmp_path / "s", **SPACE, max_latency_of=str(teacher))
    with pytest.raises(PocketsizeError, match=r"no candidate is within max_size_mb=0.001 and "
                       r"max_latency_of=.*teacher-onnx: the smallest"):  # fmt: skip
        compress(teacher, data, tmp_path / "s", **{**SPACE, "layers": [1]}, max_size_mb=0.001,
                 max_latency_of=str(slow))  # fmt: skip


def test_a_candidate_the_teacher_cannot_take_is_logged_with_why_and_the_rest_measured(
    teacher, data, tmp_path
):
    """Half the width leaves room for 2 of the tiny teacher's 4 heads: the candidate that keeps
    them all cannot be built (the main job's space has such pairs); the search goes on."""
    from pocketsize.compress import within_limits

    space = CompressConfig(layers=[1], heads=[0.0, 0.5], ffn=[0.0], width=[0.5], embedding_bits=[8])
    found = candidates(space, depth=6)
    entries = measure_frontier(teacher, data, found, space, TrialLog(tmp_path), get_task(
        "text-classification"))  # fmt: skip
    refused, built = entries
    assert (
        refused["candidate"].startswith("L1-h0-") and "remove heads too" in refused["unbuildable"]
    )
    assert built["latency_ms"] > 0 and "unbuildable" not in built
    assert [within_limits(e, space) for e in entries] == [False, True]
    logged = [json.loads(line) for line in (tmp_path / "trials.jsonl").read_text().splitlines()]
    assert logged == entries  # a rerun does not try it again


SEARCH = {**SPACE, "epochs": 0.5, "rungs": 2, "eta": 2, "distill_options": {"batch_size": 16}}

KILLED_RUN = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from pocketsize.compress import compress, trials
from zoo import make_cls_dataset

added = trials.TrialLog.add
def add_then_die(self, entry):
    added(self, entry)
    if entry["phase"] == "train":
        os.kill(os.getpid(), signal.SIGKILL)  # as kill -9 would: after the first trained trial
    return entry
trials.TrialLog.add = add_then_die
compress({teacher!r}, make_cls_dataset(n_train=48, n_val=16, n_test=16), {out!r}, **{search!r})
"""


def _log(out) -> list[dict]:
    return [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]


def test_the_search_keeps_the_limits_logs_every_trial_and_continues_after_kill(
    teacher, data, tmp_path
):
    from pathlib import Path

    from pocketsize.compress import compress

    out = tmp_path / "search"
    code = KILLED_RUN.format(
        tests=str(Path(__file__).parent), teacher=str(teacher), out=str(out), search=SEARCH
    )
    killed = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True)
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    before = _log(out)
    assert [e["phase"] for e in before] == ["frontier"] * 4 + ["train"]
    # a size limit that only the 1-layer candidates keep
    sizes = {e["candidate"]: e["size_mb"] for e in before[:4]}
    limit = (sizes["L1-h0-f0-w0-e8"] + sizes["L3-h0-f0-w0-e8"]) / 2
    with pytest.raises(PocketsizeError, match="holds the search of another teacher"):
        compress(make_tiny_bert(tmp_path / "other", num_hidden_layers=6), data, out, **SEARCH)
    model = compress(teacher, data, out, **SEARCH, max_size_mb=limit)
    after = _log(out)
    assert after[:5] == before  # nothing measured or trained twice
    trained = [e for e in after if e["phase"] == "train"]
    keys = [(e["candidate"], e["epochs"]) for e in trained]
    assert len(keys) == len(set(keys))
    assert all(e["size_mb"] <= limit and e["layers"] == 1 for e in trained[1:])
    rung0 = [e for e in trained if e["epochs"] == 0.25]
    rung1 = [e for e in trained if e["epochs"] == 0.5]
    # the best half goes on, and any trial that agrees as much as the last of them
    cut = sorted((e["agreement"] for e in rung0), reverse=True)[max(1, -(-len(rung0) // 2)) - 1]
    assert {e["candidate"] for e in rung1} == {
        e["candidate"] for e in rung0 if e["agreement"] >= cut
    }
    summary = json.loads((out / "search.json").read_text())
    assert summary["chosen"] in {e["candidate"] for e in rung1}
    assert summary["budget"] == {"met": True, "noise_floor": None}  # no budget, no 2nd teacher
    assert (model / "model_quantized.onnx").is_file() and model == out / "model"
    assert (out / "frontier.png").read_bytes()[:4] == b"\x89PNG"
    again = compress(teacher, data, out, **SEARCH, max_size_mb=limit)
    assert _log(out) == after and again == model  # a finished search reruns from its log


def test_the_choice_follows_the_budget_asked():
    """Limits alone: the trial that agrees most within them (the main job's search chose the
    fastest before, a trade nobody asked for); with an agreement budget, the fastest that
    keeps it; when none does, the one that agrees most, with the shortfall."""
    from pocketsize.compress.search import choose

    def trial(name, epochs, agreement, latency):
        return {"candidate": name, "epochs": epochs, "agreement": agreement,
                "latency_ms": latency, "size_mb": 3.0, "metric": agreement}  # fmt: skip

    done = [trial("fast", 3, 0.87, 0.5), trial("close", 3, 0.88, 0.6), trial("short", 1, 0.9, 0.1)]
    assert choose(done, CompressConfig(), 0.84) == (done[1], {"met": True})
    assert choose(done, CompressConfig(min_agreement=0.86), 0.84) == (done[0], {"met": True})
    best, budget = choose(done, CompressConfig(min_agreement=0.9), 0.84)
    assert best is done[1] and budget == {"met": False, "shortfall": 0.02}


def test_a_rung_that_cannot_tell_candidates_apart_promotes_them_all():
    """Students that all predict one class agree alike: none is cut by its speed alone."""
    from pocketsize.compress.search import promoted

    def trial(name, agreement, latency):
        return {"candidate": name, "agreement": agreement, "latency_ms": latency, "size_mb": 1.0}

    collapsed = [trial(f"L1-{i}", 0.4796, 0.17 + i / 100) for i in range(6)]
    assert promoted(collapsed, 3) == {f"L1-{i}" for i in range(6)}
    apart = [trial("a", 0.87, 0.5), trial("b", 0.86, 0.4), trial("c", 0.86, 0.3),
             trial("d", 0.85, 0.2), trial("e", 0.80, 0.1), trial("f", 0.79, 0.1)]  # fmt: skip
    assert promoted(apart, 3) == {"a", "b", "c"}  # 2 kept, and c ties with b
    assert promoted(apart, 2) == {"a", "b", "c"}
    assert promoted(apart[:1] + apart[3:], 3) == {"a", "d"}


def test_no_candidate_within_the_limits_is_one_line(teacher, data, tmp_path):
    from pocketsize.compress import compress

    with pytest.raises(
        PocketsizeError, match=r"no candidate is within max_size_mb=0.001.*the smallest, L1-"
    ):
        compress(teacher, data, tmp_path / "s", **SEARCH, max_size_mb=0.001)


def test_the_cli_runs_a_search_and_says_what_it_chose(teacher, tmp_path, capsys):
    from zoo import write_cls_files

    from pocketsize.cli import main

    files = write_cls_files(tmp_path / "data", n_train=48, n_val=16, n_test=16)
    second = make_tiny_bert(tmp_path / "second", seed=1, num_hidden_layers=6)
    argv = [
        "compress", "--teacher", str(teacher), "--data", str(files), "--out", str(tmp_path / "s"),
        "--second-teacher", str(second),
        "--layers", "1", "--heads", "0", "--ffn", "0", "--embedding-bits", "8", "--epochs", "0.5",
        "--rungs", "1", "--min-agreement", "0.99",
    ]  # fmt: skip
    assert main(argv) == 0
    said = capsys.readouterr().out
    budget = json.loads((tmp_path / "s" / "search.json").read_text())["budget"]
    assert 0 <= budget["noise_floor"] <= 1  # the second teacher's agreement with the first
    assert "chose L1-h0-f0-w0-e8" in said and (
        "keeps the budget" in said or "misses the budget by" in said
    )


def test_a_line_cut_off_mid_write_is_dropped_with_a_note(tmp_path, capsys):
    log = TrialLog(tmp_path)
    log.add({"candidate": "a", "phase": "frontier", "size_mb": 1.0})
    with open(tmp_path / "trials.jsonl", "a") as f:
        f.write('{"candidate": "b", "pha')  # the power went here
    again = TrialLog(tmp_path)
    assert [e["candidate"] for e in again.entries] == ["a"]
    assert "line 2 is cut off" in capsys.readouterr().err
    again.add({"candidate": "b", "phase": "frontier", "size_mb": 2.0})
    assert [e["candidate"] for e in TrialLog(tmp_path).entries] == ["a", "b"]


def test_a_rerun_with_other_training_options_trains_again(tmp_path):
    """The log keys a trained trial on everything its training read: the same options read
    it back, another learning rate (or vocabulary, or scoring set) trains it again."""
    import time

    from pocketsize.compress.search import successive_halving, trial_settings
    from pocketsize.compress.space import Candidate

    alive = [Candidate(1, 0.0, 0.0, 0.0, 8), Candidate(2, 0.0, 0.0, 0.0, 8)]
    trained = []

    def train(cfg):
        def one(candidate, epochs):
            trained.append((candidate.name, cfg.distill_options.get("learning_rate")))
            return {"candidate": candidate.name, "phase": "train", **trial_settings(cfg, epochs),
                    "agreement": 0.5 + candidate.layers / 10, "latency_ms": 1.0, "size_mb": 1.0}  # fmt: skip

        return one

    def search(**options):
        cfg = CompressConfig(rungs=1, epochs=1, **options)
        return successive_halving(alive, cfg, train(cfg), TrialLog(tmp_path), time.time() + 60)

    first = search(distill_options={"learning_rate": 1e-4, "losses": {"kl": 1.0}})
    assert search(distill_options={"learning_rate": 1e-4, "losses": {"kl": 1.0}}) == first
    assert len(trained) == 2  # read back, not trained again
    search(distill_options={"learning_rate": 2e-4, "losses": {"kl": 1.0}})
    search(distill_options={"learning_rate": 1e-4, "losses": {"kl": 1.0}}, vocab=False)
    assert [lr for _, lr in trained] == [1e-4, 1e-4, 2e-4, 2e-4, 1e-4, 1e-4]


def test_recover_options_train_the_recovery_and_distill_options_the_student(
    teacher, data, tmp_path, monkeypatch
):
    """The hand-made chain recovers with other losses than it distils (the teacher alone, no
    labels); a trial's recovery takes recover_options, its distillation distill_options."""
    import pocketsize.prune as prune_module
    from pocketsize.compress import compress

    real_prune, recoveries = prune_module.prune, []

    def prune_and_record(*args, **options):  # the real pruning, its recovery options noted
        recoveries.append(options.get("recover_options"))
        return real_prune(*args, **options)

    monkeypatch.setattr(prune_module, "prune", prune_and_record)
    space = {"layers": [1], "heads": [0.0], "ffn": [0.5], "embedding_bits": [8]}
    options = {"losses": {"kl": 1.0}, "batch_size": 16}
    compress(
        teacher, data, tmp_path / "s", **space, epochs=0.25, rungs=1,
        distill_options={"batch_size": 16}, recover_options=options,
    )  # fmt: skip
    assert recoveries == [None, {**options, "epochs": 0.25}]  # the frontier's build, the trial
    logged = _log(tmp_path / "s")[-1]
    assert logged["recover_options"] == options and logged["distill_options"] == {"batch_size": 16}
