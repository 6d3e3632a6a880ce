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


KILLED_RUN = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from pocketsize.compress import CompressConfig, TrialLog, candidates, measure_frontier
from pocketsize.compress import trials
from pocketsize.tasks import get_task
from zoo import make_cls_dataset

added = trials.TrialLog.add
def add_then_die(self, entry):
    added(self, entry)
    if len(self.entries) == 2:
        os.kill(os.getpid(), signal.SIGKILL)  # as kill -9 would, mid-search
trials.TrialLog.add = add_then_die
cfg = CompressConfig(**{space!r})
data = make_cls_dataset(n_train=48, n_val=16, n_test=16)
measure_frontier({teacher!r}, data, candidates(cfg, 6), cfg, TrialLog({out!r}),
                 get_task("text-classification"))
"""


def test_a_search_killed_mid_way_continues_where_it_stopped(teacher, data, tmp_path):
    from pathlib import Path

    code = KILLED_RUN.format(
        tests=str(Path(__file__).parent), space=SPACE, teacher=str(teacher), out=str(tmp_path)
    )
    killed = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True)
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    before = [json.loads(line) for line in (tmp_path / "trials.jsonl").read_text().splitlines()]
    assert len(before) == 2
    cfg = CompressConfig(**SPACE)
    found = candidates(cfg, depth=6)
    entries = measure_frontier(
        teacher, data, found, cfg, TrialLog(tmp_path), get_task("text-classification")
    )
    assert entries[:2] == before  # the finished trials are kept, not redone
    names = [
        json.loads(x)["candidate"] for x in (tmp_path / "trials.jsonl").read_text().splitlines()
    ]
    assert sorted(names) == sorted(c.name for c in found)  # each exactly once


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
