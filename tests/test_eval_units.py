"""Bootstrap intervals, fidelity figures and the Pareto front on constructed numbers."""

from __future__ import annotations

import numpy as np
import pytest

from pocketsize.eval import bootstrap
from pocketsize.eval.latency import measure_latency, summarize
from pocketsize.eval.report import mark_pareto
from pocketsize.tasks import fidelity


def test_paired_bootstrap_interval_on_constructed_predictions():
    n = 1000
    ref = np.ones(n)
    ref[:100] = 0  # reference accuracy 0.90
    var = ref.copy()
    var[100:150] = 0  # the variant additionally misses 50 examples: accuracy 0.85
    idx = bootstrap.resample_indices(n, samples=2000, seed=1)
    diff = bootstrap.paired_difference_ci(var, ref, idx)
    assert diff["value"] == pytest.approx(-0.05)
    # the per-example difference is -1 on 5% of the examples: sd of the mean ~ sqrt(.05*.95/n)
    half_width = 1.96 * np.sqrt(0.05 * 0.95 / n)
    assert diff["ci_low"] == pytest.approx(-0.05 - half_width, abs=0.004)
    assert diff["ci_high"] == pytest.approx(-0.05 + half_width, abs=0.004)
    assert diff["significant"]


def test_one_point_difference_on_1100_examples_is_not_significant():
    rng = np.random.default_rng(0)
    n = 1100
    ref = (rng.random(n) < 0.85).astype(float)
    var = ref.copy()
    # 17 wins and 28 losses against the reference: -1 point of accuracy (11 / 1100)
    losses = rng.choice(np.flatnonzero(ref == 1), 28, replace=False)
    wins = rng.choice(np.flatnonzero(ref == 0), 17, replace=False)
    var[losses], var[wins] = 0, 1
    assert var.mean() - ref.mean() == pytest.approx(-11 / n)
    idx = bootstrap.resample_indices(n, seed=0)
    diff = bootstrap.paired_difference_ci(var, ref, idx)
    assert diff["ci_low"] < 0 < diff["ci_high"]
    assert not diff["significant"]


def test_identical_predictions_have_a_zero_width_interval():
    values = np.array([1, 0, 1, 1], dtype=float)
    idx = bootstrap.resample_indices(4, samples=100)
    diff = bootstrap.paired_difference_ci(values, values, idx)
    assert diff == {"value": 0.0, "ci_low": 0.0, "ci_high": 0.0, "significant": False}
    ci = bootstrap.mean_ci(np.ones(4), idx)
    assert ci == {"value": 1.0, "ci_low": 1.0, "ci_high": 1.0}


def test_a_difference_of_ratios_takes_the_empty_value_where_nothing_was_found():
    # entity agreement: 2 x shared / (mine + yours) per sentence; two taggers that both find
    # nothing agree fully (empty=1), one that finds nothing where the other finds 2 does not
    nothing = (np.zeros(3), np.zeros(3))
    half = (np.array([1.0, 0.0, 1.0]), np.array([2.0, 0.0, 2.0]))
    idx = bootstrap.resample_indices(3, samples=200, seed=0)
    diff = bootstrap.paired_ratio_difference_ci(nothing, half, idx, empty=1.0)
    assert diff["value"] == pytest.approx(0.5)
    # resamples of only the middle sentence: both ratios empty, difference 0
    assert diff["ci_low"] == pytest.approx(0.0) and diff["ci_high"] == pytest.approx(0.5)
    same = bootstrap.paired_ratio_difference_ci(nothing, nothing, idx, empty=1.0)
    assert same["value"] == 0.0 and not same["significant"]


def test_kl_and_logit_differences_on_constructed_logits():
    ref = np.array([[0.0, 0.0], [np.log(3.0), 0.0]])
    var = np.array([[np.log(3.0), 0.0], [np.log(3.0), 0.0]])
    # row 0: P = (1/2, 1/2), Q = (3/4, 1/4): KL = 1/2 ln(2/3) + 1/2 ln 2 = 1/2 ln(4/3)
    kl = fidelity.kl_divergence(ref, var)
    assert kl[0] == pytest.approx(0.5 * np.log(4 / 3))
    assert kl[1] == pytest.approx(0.0)
    result = fidelity.classification_fidelity(ref, var)
    assert result["kl"] == pytest.approx(0.25 * np.log(4 / 3))
    assert result["max_abs_logit_diff"] == pytest.approx(np.log(3.0))
    assert result["mean_abs_logit_diff"] == pytest.approx(np.log(3.0) / 4)
    # a shift of all logits changes no probability
    assert fidelity.kl_divergence(ref, ref + 7.0) == pytest.approx([0.0, 0.0], abs=1e-12)


def test_span_fidelity_needs_the_same_windows():
    outputs = {"start_logits": np.zeros((2, 3)), "end_logits": np.zeros((2, 3))}
    ref = {"input_ids": [[1, 2, 3], [1, 2]], "outputs": outputs}
    other = {"input_ids": [[1, 2, 4], [1, 2, 5]], "outputs": outputs}  # another segmentation
    assert fidelity.span_fidelity(ref, other) is None
    assert fidelity.span_fidelity(ref, {**ref, "input_ids": [[1, 2, 3]]}) is None
    same = fidelity.span_fidelity(ref, ref)
    assert same["kl"] == 0.0 and same["max_abs_logit_diff"] == 0.0
    # a vocabulary-trimmed model renumbers its ids but keeps every position: comparable
    renumbered = {"input_ids": [[7, 8, 9], [7, 8]], "outputs": outputs}
    assert fidelity.span_fidelity(ref, renumbered)["kl"] == 0.0


def test_pareto_front_on_constructed_points():
    def rec(metric, latency, size):
        return {
            "metric": {"value": metric},
            "latency_ms": {"1": {"p50": latency}},
            "size_bytes": size,
        }

    records = {
        "teacher": rec(0.90, 20.0, 90),
        "student": rec(0.88, 5.0, 30),
        "bad": rec(0.80, 6.0, 40),  # worse and slower than student: dominated
        "int8": rec(0.87, 2.0, 8),
    }
    mark_pareto(records)
    on_latency = {n for n, r in records.items() if r["pareto"]["latency"]}
    assert on_latency == {"teacher", "student", "int8"}
    assert not records["bad"]["pareto"]["size"]


def test_latency_summary_statistics():
    times = np.array([[1.0, 2.0, 3.0, 4.0], [2.0, 3.0, 4.0, 100.0]])
    batches = [{"input_ids": np.zeros((2, 5))}, {"input_ids": np.zeros((2, 7))}] * 2
    s = summarize(times, batch_size=2, batches=batches)
    assert s["p50"] == 3.0
    assert s["p50_spread"] == [2.5, 3.5]
    assert s["calls"] == 8 and s["inputs"] == 8 and s["repeats"] == 2
    assert s["throughput_per_s"] == pytest.approx(2 * 8 / times.sum() * 1000)
    assert s["mean_padded_length"] == 6.0


def test_latency_times_each_variant_in_one_block_per_round_with_rotating_order():
    calls = []

    class Recorder:
        def __init__(self, name):
            self.name = name

        def prepare(self, batch):
            return batch

        def forward(self, batch):
            calls.append(self.name)

    names = ["a", "b", "c"]
    batches = [{"input_ids": np.zeros((1, 4))} for _ in range(4)]
    results = measure_latency(
        {n: Recorder(n) for n in names},
        {n: {1: batches} for n in names},
        repeats=3,
        warmup=2,
        progress=False,
    )
    # per round and variant: 2 warm-up calls then 4 timed ones, never split by another variant
    blocks = [calls[i : i + 6] for i in range(0, len(calls), 6)]
    assert len(blocks) == 9 and all(len(set(b)) == 1 for b in blocks)
    firsts = [blocks[r * 3][0] for r in range(3)]
    assert firsts == ["a", "b", "c"]  # the order rotates, so no variant always goes first
    assert results["b"]["1"]["calls"] == 12 and results["b"]["1"]["repeats"] == 3
