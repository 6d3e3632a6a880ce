"""The search's figure (compress to a target): every candidate's size and latency (the frontier,
measured before any training, with the limits), and agreement with the teacher against latency
and against size for every trained trial, the longer-trained darker, the chosen one starred.
Reference points (`references` in the summary: the hand-made chain's final model, another
tool's int8 of the teacher), measured as the candidates were, are drawn as labelled diamonds.

It lives in eval because the run's report draws it too, from the summary in metrics.json."""

from __future__ import annotations

import statistics

from pocketsize.eval.plots import log_axis, png

REFERENCE_COLOURS = ["#ff7f0e", "#2ca02c", "#8c564b", "#e377c2", "#17becf"]


def frontier_png(summary: dict) -> bytes:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    _cost_panel(axes[0], summary)
    for ax, key, label in (
        (axes[1], "latency_ms", "latency (ms, log scale)"),
        (axes[2], "size_mb", "shipped size (MB, log scale)"),
    ):
        _agreement_panel(ax, summary, key, label)
    batch = summary["config"]["latency_batch"]
    fig.suptitle(
        f"compress: {len(summary['frontier'])} candidates, latency at batch {batch}, "
        "agreement on the validation split"
    )
    fig.tight_layout()
    return png(fig)


def _cost_panel(ax, summary: dict) -> None:
    cfg = summary["config"]
    points = [p for p in summary["frontier"] if "latency_ms" in p]  # not the unbuildable
    ax.scatter([p["latency_ms"] for p in points], [p["size_mb"] for p in points], color="#888",
               label="candidate (untrained)")  # fmt: skip
    _references(ax, summary, "latency_ms", "size_mb")
    if cfg.get("max_latency_ms"):
        ax.axvline(cfg["max_latency_ms"], color="#d62728", ls="--", label="max_latency_ms")
    beside = [p["max_latency_of_ms"] for p in points if "max_latency_of_ms" in p]
    if beside:  # the limit moved with the machine: its median over the candidates' timings
        ax.axvline(statistics.median(beside), color="#d62728", ls=":", label="max_latency_of")
    if cfg.get("max_size_mb"):
        ax.axhline(cfg["max_size_mb"], color="#1f77b4", ls="--", label="max_size_mb")
    log_axis(ax.xaxis)
    log_axis(ax.yaxis)
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("shipped size (MB, log scale)")
    ax.set_title("every candidate, untrained")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)


def _agreement_panel(ax, summary: dict, key: str, label: str) -> None:
    trials = summary["trials"]
    longest = max(t["epochs"] for t in trials)
    for trial in trials:
        shade = 0.35 + 0.65 * trial["epochs"] / longest
        ax.scatter(trial[key], trial["agreement"], color=(0.2, 0.3, 0.6, shade))
    chosen = summary["chosen_trial"]
    ax.scatter(chosen[key], chosen["agreement"], marker="*", s=250, color="#d62728",
               label=f"chosen: {chosen['candidate']}")  # fmt: skip
    _references(ax, summary, key, "agreement")
    noise = summary["budget"].get("noise_floor")
    if noise is not None:
        ax.axhline(noise, color="#9467bd", ls=":", label="second teacher (noise floor)")
    if summary["config"].get("min_agreement") is not None:
        ax.axhline(summary["config"]["min_agreement"], color="#2ca02c", ls="--",
                   label="min_agreement")  # fmt: skip
    log_axis(ax.xaxis)
    ax.set_xlabel(label)
    ax.set_ylabel("agreement with the teacher (validation)")
    ax.set_title("trained trials (darker: trained longer)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")


def _references(ax, summary: dict, x: str, y: str) -> None:
    for colour, point in zip(REFERENCE_COLOURS * 4, summary.get("references") or []):
        ax.scatter(point[x], point[y], marker="D", s=70, color=colour, edgecolor="black",
                   label=point["name"])  # fmt: skip
