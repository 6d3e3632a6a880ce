"""The report's figures, from the variant records of metrics.json: the metric against latency
and size (the Pareto front), size / latency / agreement along the pipeline's stages, and a
confusion matrix.

Costs span orders of magnitude (a 0.3 ms int8 model beside a 12 ms teacher), so the cost axes
are logarithmic. Variant names are placed so that no two labels overlap: matplotlib has no
label placement of its own, and the usual library for it (adjustText) is one more dependency
for ten lines of greedy search.
"""

from __future__ import annotations

# label offsets (points) tried in order, right/up first: a label takes the first whose box
# overlaps no label already placed
OFFSETS = [(4, 4), (4, -12), (-4, 4), (-4, -12)] + [
    (dx, dy) for k in range(1, 8) for dy in (4 + 11 * k, -12 - 11 * k) for dx in (4, -4)
]


def p50(record: dict, batch_size: str = "1") -> float | None:
    stats = (record.get("latency_ms") or {}).get(batch_size)
    return stats["p50"] if stats else None


def place_labels(ax, points: list[tuple[float, float, str]]) -> list:
    """Annotate each (x, y, text) at the first offset whose box overlaps none placed before."""
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    placed, boxes = [], []
    for x, y, text in sorted(points, key=lambda p: (p[0], -p[1])):
        for dx, dy in OFFSETS:
            label = ax.annotate(
                text, (x, y), textcoords="offset points", xytext=(dx, dy), fontsize=8,
                ha="left" if dx >= 0 else "right",
            )  # fmt: skip
            box = label.get_window_extent(renderer).expanded(1.05, 1.1)
            if not any(box.overlaps(b) for b in boxes):
                break
            label.remove()
        else:  # nowhere free: keep the last try rather than drop the name
            label = ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy),
                                fontsize=8)  # fmt: skip
            box = label.get_window_extent(renderer)
        placed.append(label)
        boxes.append(box)
    return placed


def log_axis(axis) -> None:
    """A log scale with plain tick labels at 1, 2 and 5 of each decade (0.5, 1, 2, 5, 10 ms)."""
    from matplotlib import ticker

    axis.axes.set_xscale("log") if axis.axis_name == "x" else axis.axes.set_yscale("log")
    axis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(ticker.NullFormatter())


def pareto_figure(variants: dict):
    import matplotlib.pyplot as plt

    has_latency = any(p50(r) is not None for r in variants.values())
    axes_spec = [("size", "size on disk (MB, log scale)", lambda r: r["size_bytes"] / 1e6)]
    if has_latency:
        axes_spec.insert(0, ("latency", "latency at batch 1, p50 (ms, log scale)", p50))
    fig, axes = plt.subplots(1, len(axes_spec), figsize=(6 * len(axes_spec), 4.5))
    axes = [axes] if len(axes_spec) == 1 else list(axes)
    metric_name = next(iter(variants.values()))["metric"]["name"]
    for ax, (key, xlabel, x_of) in zip(axes, axes_spec):
        points = [(x_of(r), r["metric"]["value"], n, r) for n, r in variants.items()]
        points = [p for p in points if p[0] is not None and p[0] > 0]
        front = sorted((p for p in points if p[3]["pareto"][key]), key=lambda p: p[0])
        # the metric's 95% bootstrap interval as error bars: overlapping bars = within noise
        for x, y, _, r in points:
            lo, hi = r["metric"].get("ci_low", y), r["metric"].get("ci_high", y)
            ax.errorbar(x, y, yerr=[[y - lo], [hi - y]], color="#bbb", capsize=3, zorder=1)
        ax.scatter([p[0] for p in points], [p[1] for p in points], color="#666", zorder=2)
        ax.plot([p[0] for p in front], [p[1] for p in front], "o-", color="#d62728", zorder=3,
                label="Pareto front")  # fmt: skip
        log_axis(ax.xaxis)
        ax.margins(x=0.25, y=0.2)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(metric_name)
        ax.grid(alpha=0.3, which="both")
        ax.legend(loc="lower right", fontsize=8)
        shared: dict[tuple, list[str]] = {}  # variants at the same point share one label
        for x, y, name, _ in points:
            shared.setdefault((round(x, 6), round(y, 6)), []).append(name)
        fig.tight_layout()
        place_labels(ax, [(x, y, ", ".join(names)) for (x, y), names in shared.items()])
    fig.suptitle(f"{metric_name} (95% CI) vs cost: up and left is better")
    fig.tight_layout()
    return fig


def stages_figure(variants: dict):
    """Size, latency and agreement of each variant in the order given (the pipeline's order:
    teacher, student, pruned, ONNX, int8), so a step that costs agreement stands out."""
    import matplotlib.pyplot as plt

    names = list(variants)
    panels = [("size on disk (MB)", [variants[n]["size_bytes"] / 1e6 for n in names], True)]
    latency = [p50(variants[n]) for n in names]
    if any(v is not None for v in latency):
        panels.append(("latency at batch 1, p50 (ms)", latency, True))
    panels.append(("agreement with the reference", [variants[n]["agreement"] for n in names],
                   False))  # fmt: skip
    size = (max(6, 1.1 * len(names) + 2), 2.4 * len(panels))
    fig, axes = plt.subplots(len(panels), 1, figsize=size, sharex=True)
    axes = [axes] if len(panels) == 1 else list(axes)
    xs = list(range(len(names)))
    for ax, (label, values, log) in zip(axes, panels):
        shown = [(x, v) for x, v in zip(xs, values) if v is not None]
        ax.plot([x for x, _ in shown], [v for _, v in shown], "o-", color="#1f77b4")
        for x, v in shown:
            text = f"{v:.1%}" if not log else (f"{v:.3g}")
            ax.annotate(text, (x, v), textcoords="offset points", xytext=(0, 6), ha="center",
                        fontsize=8)  # fmt: skip
        if log:
            log_axis(ax.yaxis)
        ax.set_ylabel(label, fontsize=9)
        ax.margins(y=0.3)
        ax.grid(alpha=0.3, which="both")
    axes[-1].set_xticks(xs, names, rotation=20, ha="right")
    fig.suptitle("along the pipeline: what each step costs and keeps")
    fig.tight_layout()
    return fig


def confusion_figure(name: str, cm: dict):
    import matplotlib.pyplot as plt
    import numpy as np

    matrix, labels = np.asarray(cm["matrix"]), cm["labels"]
    size = max(4.0, 0.5 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    if len(labels) <= 20:
        for (i, j), v in np.ndenumerate(matrix):
            color = "white" if v > matrix.max() / 2 else "black"
            ax.text(j, i, str(v), ha="center", va="center", color=color, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion matrix: {name}")
    fig.tight_layout()
    return fig


def png(fig) -> bytes:
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
