"""One label mapping for a whole report: the data's labels matched by name to the outputs of
one variant (the reference, unless it names none), every other variant's outputs matched to
that variant's by name.

Two variants that predict different label sets cannot share a mapping and are refused; two
that list the same labels in another order are compared output by output after reordering, so
agreement and fidelity compare the same labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pocketsize.errors import PocketsizeError
from pocketsize.tasks.labels import model_labels, unnamed


@dataclass
class AlignedLabels:
    examples: Any  # the split, its labels re-encoded as the anchor variant's output indices
    names: list[str] | None  # the label names, in that index order (None: the task has none)
    orders: dict[str, list[int]] = field(default_factory=dict)  # variant -> its output order
    record: dict | None = None  # metrics.json settings.label_mapping


def align_labels(task, examples, resolved: dict, reference: str, label_map=None) -> AlignedLabels:
    """The split scored against one variant's outputs by name, and each variant's outputs put
    in that variant's order; refuses variants whose label sets differ."""
    data_labels = task.labels(examples, strict=False)
    if data_labels is None:
        return AlignedLabels(examples, None)
    labels = {name: model_labels(v.config) for name, v in resolved.items()}
    anchor = _anchor(labels, reference)
    if anchor is None:  # no variant says what its outputs are: by position, as given
        return AlignedLabels(examples, [str(n) for n in data_labels])
    orders, notes = _orders(labels, anchor)
    examples, mapping = task.align_labels(
        examples, labels[anchor], label_map, f"variant {anchor!r}"
    )
    record = mapping.record()
    record["notes"] = record["notes"] + notes
    return AlignedLabels(examples, mapping.names, orders, record)


def _anchor(labels: dict, reference: str) -> str | None:
    """The variant whose outputs the data is matched to: the reference, unless another one
    names its outputs and the reference does not."""
    named = [n for n, found in labels.items() if found and not unnamed(found)]
    if labels[reference] and (not unnamed(labels[reference]) or not named):
        return reference
    if named:
        return named[0]
    return next((n for n, found in labels.items() if found), None)


def _orders(labels: dict, anchor: str) -> tuple[dict[str, list[int]], list[str]]:
    """Per variant listing the anchor's labels in another order, the order of its outputs that
    lists them as the anchor does; refuses a variant with other labels, naming both sets."""
    anchor_labels = labels[anchor]
    orders, notes = {}, []
    for name, found in labels.items():
        if found is None or found == anchor_labels:
            continue
        named = not unnamed(found) and not unnamed(anchor_labels)
        if len(found) != len(anchor_labels) or (named and set(found) != set(anchor_labels)):
            raise PocketsizeError(
                f"variant {name!r} predicts {len(found)} labels ({', '.join(found)}) but "
                f"variant {anchor!r} predicts {len(anchor_labels)} "
                f"({', '.join(anchor_labels)}); every variant of one report must predict the "
                "same labels: evaluate models trained on the same label set"
            )
        if named:
            orders[name] = [found.index(label) for label in anchor_labels]
            notes.append(
                f"variant {name!r} lists its labels in another order ({', '.join(found)}); its "
                f"outputs are matched to variant {anchor!r}'s by name"
            )
    return orders, notes
