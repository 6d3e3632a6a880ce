"""The report: metrics.json (schema in SCHEMA.md beside this file), report.md, report.html, plots.

`Report(metrics)` wraps the metrics.json dictionary; everything else is rendered from it, so a
saved report can be re-rendered with `Report.load(dir)`.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from pocketsize.eval.plots import p50
from pocketsize.eval.search_section import SEARCH_PNG, search_lines, search_rows
from pocketsize.eval.suite import suite_rows
from pocketsize.fsutil import atomic_dir, write_json

SCHEMA_VERSION = "1.7"
PARETO_PNG = "pareto.png"
STAGES_PNG = "stages.png"
CONFUSION_PNG = "confusion_matrix.png"


def mark_pareto(records: dict[str, dict]) -> None:
    """Set record["pareto"] = {"latency": bool, "size": bool}: on the metric-vs-cost front."""

    def front(cost_of) -> set[str]:
        points = {n: (r["metric"]["value"], cost_of(r)) for n, r in records.items()}
        points = {n: p for n, p in points.items() if p[1] is not None}
        return {
            n
            for n, (m, c) in points.items()
            if not any(
                (m2 >= m and c2 <= c) and (m2 > m or c2 < c)
                for n2, (m2, c2) in points.items()
                if n2 != n
            )
        }

    by_latency = front(lambda r: p50(r, "1"))
    by_size = front(lambda r: r.get("size_bytes"))
    for name, record in records.items():
        record["pareto"] = {"latency": name in by_latency, "size": name in by_size}


def _mb(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e3:.0f} kB" if n < 1e6 else f"{n / 1e6:.1f} MB"


def _diff(diff: dict | None, fmt: str) -> str:
    """A paired difference with its interval; * = significant, n.s. = within noise."""
    if not diff:
        return "-"
    mark = " *" if diff["significant"] else " (n.s.)"
    low, high = fmt.format(diff["ci_low"]), fmt.format(diff["ci_high"])
    return f"{fmt.format(diff['value'])} [{low}, {high}]{mark}"


def _num(x, fmt: str = "{:.3f}") -> str:
    return "-" if x is None else fmt.format(x)


LOGIT_FIDELITY = [
    ("kl", "KL", "{:.2e}"),
    ("max_abs_logit_diff", "max |Δlogit|", "{:.2e}"),
    ("mean_abs_logit_diff", "mean |Δlogit|", "{:.2e}"),
]
EMBEDDING_FIDELITY = [
    ("similarity_spearman", "similarity Spearman", "{:.4f}"),
    ("mean_cosine", "mean cosine to reference", "{:.4f}"),
]


class Report:
    """The result of evaluate(): `.metrics` (the metrics.json dict), `.save(dir)`, `.table()`."""

    def __init__(self, metrics: dict[str, Any]):
        self.metrics = metrics

    @classmethod
    def load(cls, directory) -> Report:
        return cls(json.loads((Path(directory) / "metrics.json").read_text()))

    @property
    def variants(self) -> dict[str, dict]:
        return self.metrics["variants"]

    @property
    def reference(self) -> str:
        return self.metrics["reference"]

    def __getitem__(self, name: str) -> dict:
        return self.variants[name]

    def __repr__(self) -> str:
        return self.table()

    def best_compressed(self) -> str:
        """The final variant when there is one, else the best non-reference metric (then size)."""
        if self.metrics.get("final"):
            return self.metrics["final"]
        others = [n for n in self.variants if n != self.reference] or [self.reference]
        return max(
            others,
            key=lambda n: (self.variants[n]["metric"]["value"], -self.variants[n]["size_bytes"]),
        )

    # ---- tables ----

    def table_rows(self) -> tuple[list[str], list[list[str]]]:
        batch_sizes = [str(b) for b in self.metrics["settings"]["batch_sizes"]]
        metric_name = next(iter(self.variants.values()))["metric"]["name"]
        header = ["variant", "size", "size ratio", "params"]
        header += [f"latency b{b} p50 (p95)" for b in batch_sizes]
        header += ["speed-up", metric_name, "Δ vs ref (95% CI)", "retention", "agreement"]
        rows = []
        for name, r in self.variants.items():
            label = name + (" (ref)" if name == self.reference else "")
            label += " (final)" if name == self.metrics.get("final") else ""
            row = [label, _mb(r["size_bytes"]), _num(r.get("size_ratio"), "{:.2f}x")]
            row.append("-" if r.get("params") is None else f"{r['params'] / 1e6:.2f} M")
            for b in batch_sizes:
                stats = (r.get("latency_ms") or {}).get(b)
                row.append(f"{stats['p50']:.2f} ms ({stats['p95']:.2f})" if stats else "-")
            row.append(_num(r.get("speedup"), "{:.2f}x"))
            row.append(_num(r["metric"]["value"], "{:.4f}"))
            row.append("-" if name == self.reference else _diff(r["metric_diff"], "{:+.4f}"))
            row.append(_num(r.get("retention"), "{:.2%}"))
            row.append(_num(r["agreement"], "{:.2%}"))
            rows.append(row)
        return header, rows

    def fidelity_columns(self) -> list[tuple[str, str, str]]:
        """The fidelity figures the task's runs have: the distributions' (KL, logit
        differences), and a sentence embedder's (similarity Spearman, mean cosine)."""
        records = [r["fidelity"] for r in self.variants.values()]
        extra = [c for c in EMBEDDING_FIDELITY if any(f.get(c[0]) is not None for f in records)]
        logits = any("kl" in f for f in records) or not extra
        return (LOGIT_FIDELITY if logits else []) + extra

    def fidelity_rows(self) -> tuple[list[str], list[list[str]]]:
        columns = self.fidelity_columns()
        header = ["variant", "agreement (95% CI)", *(title for _, title, _ in columns)]
        levels = any(r.get("agreement_levels") for r in self.variants.values())
        header += ["agreement by level"] if levels else []
        beside_final = any(r.get("agreement_vs_final") for r in self.variants.values())
        header += ["agreement Δ vs final (95% CI)"] if beside_final else []
        header += ["disagreements", "peak memory (model)", "throughput b-max"]
        rows = []
        for name, r in self.variants.items():
            f = r["fidelity"]
            lo, hi = r["agreement_ci"]
            mem = r.get("memory") or {}
            tp = r.get("throughput_per_s") or {}
            rows.append(
                [
                    name,
                    f"{r['agreement']:.2%} [{lo:.2%}, {hi:.2%}]",
                    *(_num(f.get(key), fmt) for key, _, fmt in columns),
                    *([_levels(r)] if levels else []),
                    *([_diff(r.get("agreement_vs_final"), "{:+.2%}")] if beside_final else []),
                    str(r["disagreements_total"]),
                    (
                        f"{_mb(mem['peak_rss_bytes'])} ({_mb(mem['model_peak_bytes'])})"
                        if "peak_rss_bytes" in mem
                        else mem.get("error", "-")
                    ),
                    f"{tp[max(tp, key=int)]:.1f}/s" if tp else "-",
                ]
            )
        return header, rows

    def table(self) -> str:
        """The headline table as markdown (what the CLI prints)."""
        return _md_table(*self.table_rows())

    # ---- documents ----

    def _notes(self) -> list[str]:
        m, s = self.metrics, self.metrics["settings"]
        lat = s["latency"]
        notes = [
            f"Task {m['task']}, {s['examples']} examples"
            + (
                " (every row of the data)"
                if s.get("split") == "all"
                else f" of the {s['split']!r} split"
                if s.get("split")
                else ""
            )
            + f"; reference {m['reference']!r}"
            + (f"; final {m['final']!r}" if m.get("final") else "")
            + ".",
            "Retention = metric / reference metric. Δ vs ref: paired bootstrap "
            f"({s['bootstrap']['samples']} resamples) 95% interval of the metric difference; "
            "* = significant, n.s. = within noise.",
        ]
        for name, cut in (s.get("truncated_inputs") or {}).items():
            notes.append(
                f"{cut['examples']} of the texts reach the {cut['max_length']}-token limit of "
                f"variant {name!r}; longer ones are truncated to it, as the deployed model would "
                "see them."
            )
        if s.get("agreement"):
            notes.append(f"Agreement: {s['agreement']}.")
        if any(r.get("agreement_vs_final") for r in self.variants.values()):
            notes.append(
                "Agreement Δ vs final: the variant's agreement minus the final's, over the same "
                "resamples (does another model agree with the reference more than the shipped "
                "one, or only within noise)."
            )
        notes += [f"Labels: {n}." for n in (s.get("label_mapping") or {}).get("notes", [])]
        notes += self._device_notes()
        if lat["measured"]:
            notes.append(
                f"Latency: {lat['inputs_timed']} real test inputs timed per batch size, "
                f"{lat['repeats']} rounds of one block per variant (order rotating), each after "
                f"{lat['warmup_calls']} warm-up calls; "
                f"{s['threads']} thread(s) for PyTorch and ONNX Runtime alike; "
                f"{lat['timed']}. Speed-up = reference p50 / variant p50 at batch 1."
            )
        else:
            notes.append("Latency was not measured.")
        notes.append(
            "Size = the files a user ships (weights or the one model file, config, tokenizer; "
            "with tokenizer.json, not the slow tokenizer's vocab.txt)."
        )
        notes += self._baseline_notes()
        return notes

    def _baseline_notes(self) -> list[str]:
        """The final variant against each baseline (another tool's result), as ratios."""
        final = self.metrics.get("final")
        if not final:
            return []
        notes = []
        f = self.variants[final]
        for name in self.metrics.get("baselines") or []:
            b = self.variants[name]
            parts = [
                f"{b['latency_ms'][k]['p50'] / f['latency_ms'][k]['p50']:.2f}x faster at batch {k}"
                for k in f.get("latency_ms") or {}
                if k in (b.get("latency_ms") or {})
            ]
            parts.append(f"{b['size_bytes'] / f['size_bytes']:.2f}x smaller")
            parts.append(
                f"agreement with {self.reference!r} {f['agreement']:.2%} against {b['agreement']:.2%}"
            )
            notes.append(f"Final {final!r} against baseline {name!r}: " + ", ".join(parts) + ".")
        return notes

    def _device_notes(self) -> list[str]:
        """Where the variants ran, when not all on the CPU or not where they were asked to."""
        placed = self.metrics["settings"].get("device") or {}
        runs_on = {n: r.get("runs_on") for n, r in self.variants.items() if r.get("runs_on")}
        notes = list(placed.get("notes") or [])
        if any(where not in ("cpu", "CPUExecutionProvider") for where in runs_on.values()):
            gpu = (self.metrics["machine"].get("gpu") or {}).get("name")
            notes.insert(
                0,
                "Ran on: "
                + ", ".join(f"{n} {where}" for n, where in runs_on.items())
                + (f" (GPU: {gpu})" if gpu else "")
                + "; latency on the GPU includes copying each call's outputs back to the host.",
            )
        return notes

    def _machine_lines(self) -> list[str]:
        mach, ver = self.metrics["machine"], self.metrics["versions"]
        lines = [
            f"Machine: {mach.get('cpu')}"
            + (f" (family/model {fm})" if (fm := mach.get("cpu_family_model")) else "")
            + f", {mach.get('usable_cores')} usable cores "
            f"({', '.join(mach.get('cpu_flags') or [])}), {mach.get('platform')}, "
            f"Python {mach.get('python')}.",
            "Versions: " + ", ".join(f"{k} {v}" for k, v in ver.items() if v) + ".",
        ]
        if gpu := mach.get("gpu"):
            lines.insert(
                1,
                f"GPU: {gpu['name']} ({gpu['memory_bytes'] / 2**30:.0f} GiB, compute capability "
                f"{gpu['capability']}, CUDA {gpu['torch_cuda']} in torch, "
                f"bf16 {'yes' if gpu['bf16'] else 'no'}).",
            )
        return lines

    def _disagreement_samples(self, n: int = 5) -> dict[str, list[dict]]:
        return {
            name: r["disagreements"][:n]
            for name, r in self.variants.items()
            if name != self.reference and r["disagreements"]
        }

    def _per_class_rows(self, name: str):
        """Per class (or entity type): the variant's precision, recall and F1, beside the
        reference's F1."""
        per_class = self.variants[name].get("per_class")
        if not per_class:
            return None
        reference = self.variants[self.reference].get("per_class") or {}
        beside = name != self.reference and bool(reference)
        header = ["class", "precision", "recall", "f1"]
        header += [f"f1 of {self.reference}"] if beside else []
        rows = []
        for c, v in per_class.items():
            row = [c, f"{v['precision']:.3f}", f"{v['recall']:.3f}", f"{v['f1']:.3f}"]
            if beside:
                row.append(_num((reference.get(c) or {}).get("f1")))
            rows.append(row + [str(v["support"])])
        return header + ["support"], rows

    def to_markdown(self, images: bool = True) -> str:
        best = self.best_compressed()
        out = [f"# pocketsize report: {self.metrics['task']}", ""]
        out += [_md_table(*self.table_rows()), ""]
        out += [f"- {n}" for n in self._notes()]
        out += ["", "## Fidelity to the reference and memory", ""]
        out += [_md_table(*self.fidelity_rows()), ""]
        suite = suite_rows(self.variants)
        if suite:
            out += ["## Suite: more labelled sets", "", _md_table(*suite), ""]
        search = self.metrics.get("search")
        if search:
            out += ["## Search: compress to a target (validation split)", ""]
            out += [f"- {line}" for line in search_lines(search)]
            out += ["", _md_table(*search_rows(search)), ""]
            if images:
                out += [f"![the search's frontier and trials]({SEARCH_PNG})", ""]
        if images:
            out += ["## Trade-off", "", f"![accuracy vs latency and size]({PARETO_PNG})", ""]
            out += [f"![size, latency and agreement along the stages]({STAGES_PNG})", ""]
        per_class = self._per_class_rows(best)
        if per_class:
            out += [f"## Per-class metrics of {best!r}", "", _md_table(*per_class), ""]
            if images and self.variants[best].get("confusion_matrix"):
                out += [f"![confusion matrix of {best}]({CONFUSION_PNG})", ""]
        samples = self._disagreement_samples()
        if samples:
            out += ["## Where variants disagree with the reference (first 5 each)", ""]
            for name, entries in samples.items():
                out.append(f"**{name}** ({self.variants[name]['disagreements_total']} in all)")
                out.append("")
                for e in entries:
                    out.append(f"- {_describe(e)}")
                out.append("")
        out += ["## Machine", ""] + [f"- {line}" for line in self._machine_lines()]
        return "\n".join(out) + "\n"

    def to_html(self, pngs: dict[str, bytes] | None = None) -> str:
        """Self-contained: the plots are inline data URIs."""
        pngs = pngs if pngs is not None else self.render_plots()
        best = self.best_compressed()
        parts = [
            "<!doctype html><html><head><meta charset='utf-8'>",
            f"<title>pocketsize report: {html.escape(self.metrics['task'])}</title>",
            "<style>body{font-family:sans-serif;margin:2em;max-width:80em}"
            "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
            "padding:.3em .6em;text-align:right}td:first-child,th:first-child{text-align:left}"
            "img{max-width:100%}</style></head><body>",
            f"<h1>pocketsize report: {html.escape(self.metrics['task'])}</h1>",
            _html_table(*self.table_rows()),
            "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in self._notes()) + "</ul>",
            "<h2>Fidelity to the reference and memory</h2>",
            _html_table(*self.fidelity_rows()),
        ]
        suite = suite_rows(self.variants)
        if suite:
            parts += ["<h2>Suite: more labelled sets</h2>", _html_table(*suite)]
        search = self.metrics.get("search")
        if search:
            parts.append("<h2>Search: compress to a target (validation split)</h2><ul>")
            parts += [f"<li>{html.escape(line)}</li>" for line in search_lines(search)]
            parts += ["</ul>", _html_table(*search_rows(search))]
            if SEARCH_PNG in pngs:
                parts.append(_html_img(pngs[SEARCH_PNG], "the search's frontier and trials"))
        if PARETO_PNG in pngs:
            parts += ["<h2>Trade-off</h2>", _html_img(pngs[PARETO_PNG], "trade-off")]
        if STAGES_PNG in pngs:
            parts.append(_html_img(pngs[STAGES_PNG], "size, latency and agreement by stage"))
        per_class = self._per_class_rows(best)
        if per_class:
            parts += [f"<h2>Per-class metrics of {html.escape(best)}</h2>", _html_table(*per_class)]
            if CONFUSION_PNG in pngs:
                parts.append(_html_img(pngs[CONFUSION_PNG], "confusion matrix"))
        samples = self._disagreement_samples()
        if samples:
            parts.append("<h2>Where variants disagree with the reference (first 5 each)</h2>")
            for name, entries in samples.items():
                total = self.variants[name]["disagreements_total"]
                parts.append(f"<h3>{html.escape(name)} ({total} in all)</h3><ul>")
                parts += [f"<li>{html.escape(_describe(e))}</li>" for e in entries]
                parts.append("</ul>")
        parts += ["<h2>Machine</h2><ul>"]
        parts += [f"<li>{html.escape(line)}</li>" for line in self._machine_lines()]
        parts += ["</ul></body></html>"]
        return "\n".join(parts) + "\n"

    # ---- plots ----

    def render_plots(self) -> dict[str, bytes]:
        import matplotlib

        from pocketsize.eval import plots

        matplotlib.use("Agg")
        pngs = {
            PARETO_PNG: plots.png(plots.pareto_figure(self.variants)),
            STAGES_PNG: plots.png(plots.stages_figure(self.variants)),
        }
        best = self.best_compressed()
        cm = self.variants[best].get("confusion_matrix")
        if cm:
            pngs[CONFUSION_PNG] = plots.png(plots.confusion_figure(best, cm))
        if self.metrics.get("search"):
            from pocketsize.eval.search_plot import frontier_png

            pngs[SEARCH_PNG] = frontier_png(self.metrics["search"])
        return pngs

    # ---- saving ----

    def save(self, out, overwrite: bool = False) -> Path:
        """Write metrics.json, report.md, report.html and the PNGs into `out`, atomically."""
        pngs = self.render_plots()
        with atomic_dir(out, overwrite) as tmp:
            write_json(tmp / "metrics.json", self.metrics)
            for name, data in pngs.items():
                (tmp / name).write_bytes(data)
            (tmp / "report.md").write_text(self.to_markdown(), encoding="utf-8")
            (tmp / "report.html").write_text(self.to_html(pngs), encoding="utf-8")
        return Path(out)


def _levels(record: dict) -> str:
    """Agreement at each level the task reports, e.g. "entity 91.2%, token 98.7%"."""
    levels = record.get("agreement_levels") or {}
    return ", ".join(f"{k} {v:.2%}" for k, v in levels.items()) or "-"


def _describe(entry: dict) -> str:
    shown = {k: v for k, v in entry.items() if k not in ("prediction", "reference_prediction")}
    text = "; ".join(f"{k}: {_short(v)}" for k, v in shown.items())
    return (
        f"{text} | reference: {_short(entry['reference_prediction'])} | "
        f"variant: {_short(entry['prediction'])}"
    )


def _short(value, limit: int = 160) -> str:
    s = str(value)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    def esc(cell: str) -> str:
        return str(cell).replace("|", "\\|")

    lines = ["| " + " | ".join(map(esc, header)) + " |"]
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    lines += ["| " + " | ".join(map(esc, row)) + " |" for row in rows]
    return "\n".join(lines)


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html_img(data: bytes, alt: str) -> str:
    return f"<img alt='{alt}' src='data:image/png;base64,{base64.b64encode(data).decode()}'>"
