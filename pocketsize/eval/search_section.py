"""The report's section on a search (compress to a target), from the summary a run puts in
metrics.json under `search`: what was asked, what was chosen, and every trained trial beside
the reference points, all measured on the validation split with the search's own timing."""

from __future__ import annotations

SEARCH_PNG = "search.png"


def search_lines(search: dict) -> list[str]:
    """Sentences: the limits, the choice and whether it keeps the budget, the noise floor."""
    cfg, budget, chosen = search["config"], search["budget"], search["chosen_trial"]
    limits = [f"{key} {cfg[key]:g}" for key in ("min_agreement", "max_drop", "max_size_mb",
              "max_latency_ms") if cfg.get(key) is not None]  # fmt: skip
    if cfg.get("max_latency_of"):
        limits.append(f"no slower than {cfg['max_latency_of']}, timed beside each candidate")
    kept = "keeps the budget" if budget.get("met") else f"misses it by {budget.get('shortfall')}"
    lines = [
        f"Searched {len(search['frontier'])} candidates in {search['seconds'] / 60:.1f} min "
        f"({', '.join(limits) or 'no limits'}; latency at batch {cfg['latency_batch']}); "
        f"{len(search['trials'])} trials trained.",
        f"Chosen: {chosen['candidate']} after {chosen['epochs']:.3g} epochs, agreement "
        f"{chosen['agreement']:.2%}; it {kept}.",
    ]
    refused = [e for e in search["frontier"] if "unbuildable" in e]
    if refused:
        names = ", ".join(e["candidate"] for e in refused)
        lines.append(
            f"{len(refused)} candidates could not be built ({names}); the first said: "
            f"{refused[0]['unbuildable']}"
        )
    if budget.get("noise_floor") is not None:
        lines.append(
            f"A second fine-tuning of the teacher agrees with it on {budget['noise_floor']:.2%} "
            "of the validation split (the noise floor)."
        )
    for name, why in (search.get("skipped_references") or {}).items():
        lines.append(f"{name} is not drawn: {why}.")
    return lines


def search_rows(search: dict) -> tuple[list[str], list[list[str]]]:
    """Every trained trial, most agreement first, then the reference points."""
    header = ["model", "epochs", "agreement", "metric", "size MB", "latency ms", "train s"]
    chosen = search["chosen_trial"]
    trials = sorted(search["trials"], key=lambda t: (-t["epochs"], -t["agreement"]))
    rows = []
    for t in trials:
        mark = " (chosen)" if t is chosen or t == chosen else ""
        rows.append(
            [t["candidate"] + mark, f"{t['epochs']:.3g}", f"{t['agreement']:.2%}",
             f"{t['metric']:.4f}", f"{t['size_mb']:.2f}", f"{t['latency_ms']:.3f}",
             f"{t['seconds']:.0f}"]
        )  # fmt: skip
    for r in search.get("references") or []:
        rows.append(
            ["reference: " + r["name"], "-", f"{r['agreement']:.2%}", f"{r['metric']:.4f}",
             f"{r['size_mb']:.2f}", f"{r['latency_ms']:.3f}", "-"]
        )  # fmt: skip
    return header, rows
