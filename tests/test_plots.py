"""The report's figures: logarithmic cost axes, variant labels that never overlap (checked on
the rendered text boxes), and size / latency / agreement along the pipeline's stages."""

from __future__ import annotations

import itertools

import matplotlib
import pytest

from pocketsize.eval import plots
from pocketsize.eval.report import mark_pareto

matplotlib.use("Agg")


def records():
    """Six variants: four of one size (an ONNX model and its quantized twins share a file size
    to the kB) with close accuracies, latencies from 0.3 to 12 ms."""
    spec = {
        "teacher": (90e6, 12.0, 0.90, 1.0),
        "student": (45e6, 6.0, 0.89, 0.97),
        "onnx": (22e6, 1.2, 0.8850, 0.96),
        "onnx-opt": (22e6, 1.1, 0.8848, 0.96),
        "int8": (22e6, 0.5, 0.8846, 0.95),
        "int8-mobile": (22e6, 0.3, 0.8845, 0.95),
    }
    out = {}
    for name, (size, ms, acc, agreement) in spec.items():
        out[name] = {
            "size_bytes": size,
            "latency_ms": {"1": {"p50": ms}},
            "metric": {"name": "accuracy", "value": acc, "ci_low": acc - 0.01,
                       "ci_high": acc + 0.01},
            "agreement": agreement,
        }  # fmt: skip
    mark_pareto(out)
    return out


def label_boxes(ax):
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    return [t.get_window_extent(renderer) for t in ax.texts]


def test_pareto_axes_are_logarithmic_and_no_two_labels_overlap():
    fig = plots.pareto_figure(records())
    assert len(fig.axes) == 2
    for ax in fig.axes:
        assert ax.get_xscale() == "log"
        boxes = label_boxes(ax)
        assert len(boxes) >= 5  # every variant named (equal points share one label)
        for a, b in itertools.combinations(boxes, 2):
            assert not a.overlaps(b)


def test_labels_placed_naively_would_overlap():
    """What place_labels avoids: the same labels, all at one offset, collide on the size axis."""
    import matplotlib.pyplot as plt

    recs = records()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    xs = [r["size_bytes"] / 1e6 for r in recs.values()]
    ys = [r["metric"]["value"] for r in recs.values()]
    ax.scatter(xs, ys)
    ax.set_xscale("log")
    for x, y, name in zip(xs, ys, recs):
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    boxes = label_boxes(ax)
    assert any(a.overlaps(b) for a, b in itertools.combinations(boxes, 2))
    plt.close(fig)


def test_stage_figure_follows_the_variants_in_order():
    recs = records()
    fig = plots.stages_figure(recs)
    assert len(fig.axes) == 3  # size, latency, agreement
    assert [t.get_text() for t in fig.axes[-1].get_xticklabels()] == list(recs)
    size, latency, agreement = fig.axes
    assert size.get_yscale() == latency.get_yscale() == "log"
    assert [t.get_text() for t in agreement.texts][:2] == ["100.0%", "97.0%"]


@pytest.mark.parametrize("with_latency", [True, False])
def test_report_writes_both_figures(with_latency, tmp_path):
    from pocketsize.eval.report import STAGES_PNG, Report

    recs = records()
    if not with_latency:
        for r in recs.values():
            r["latency_ms"] = {}
    pngs = Report({"variants": recs, "final": "int8"}).render_plots()
    assert {"pareto.png", STAGES_PNG} <= set(pngs)
    assert all(data[:8] == b"\x89PNG\r\n\x1a\n" for data in pngs.values())
