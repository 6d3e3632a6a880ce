"""What a training stage writes about itself: its part of stage.json and the model card."""

from __future__ import annotations

from pathlib import Path


def headline(metrics: dict, task) -> dict:
    """The scalar part of a metrics dict (for stage.json and printing)."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}


def write_stage(out_dir: Path, **fields) -> None:
    """The stage's fields into the record `stage_output` began (formats/records.py)."""
    from pocketsize.formats.records import update_record

    update_record(out_dir, **fields)


def write_model_card(out_dir: Path, title: str, lines: list[str]) -> None:
    from pocketsize.fsutil import atomic_write_text

    atomic_write_text(out_dir / "README.md", f"# {title}\n\n" + "\n".join(lines) + "\n")
