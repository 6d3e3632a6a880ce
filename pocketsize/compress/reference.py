"""What every trial is scored against: the teacher's predictions on the validation split.

The teacher is exported once (parity-checked, into the search directory, so a rerun reuses
it) and run through the one scoring path every stage shares, as the candidates are: the
agreement of a candidate is the task's headline agreement with these predictions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class Reference:
    task: object
    split: object
    predictions: list
    metric: float

    @classmethod
    def of(cls, teacher: Path, data, task, onnx_dir: Path) -> Reference:
        from pocketsize.export import export

        if not (onnx_dir / "stage.json").is_file():
            export(teacher, onnx_dir, task=task.name, overwrite=True)
        split = scoring_split(data)
        scored = _scored(task, split, onnx_dir)
        return cls(
            task, split, scored.predictions(scored.per_batch), scored.primary(scored.per_batch)
        )

    def score(self, model_dir: Path) -> tuple[float, float]:
        """(agreement with the teacher, task metric) of an ONNX model directory."""
        scored = _scored(self.task, self.split, model_dir)
        return scored.agreement(scored.per_batch, self.predictions), scored.primary(
            scored.per_batch
        )


def scoring_split(data):
    """The split candidates are timed and scored on: validation (train when there is none)."""
    return data["validation"] if "validation" in data else data["train"]


def _scored(task, split, model_dir: Path):
    from pocketsize.assets import load_tokenizer
    from pocketsize.formats.onnx_dir import model_file
    from pocketsize.quantize.scoring import TaskData, ort_session

    data = TaskData(task, load_tokenizer(str(model_dir)), split)
    data.per_batch = data.run(ort_session(model_file(Path(model_dir))))
    return data
