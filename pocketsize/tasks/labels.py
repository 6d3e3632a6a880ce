"""Which model output each of the data's labels is: matched by name, never by position.

A model's `id2label` names its outputs; the data's labels have names too (a ClassLabel's, or
the strings of a file). Scoring by position paired a model that lists the same labels in
another order with the wrong outputs, and a file labelled `0`/`1` with whatever the model
calls its first and second output. So a data label is scored against the output that bears
its name; a label the model does not know is refused by name; numbers against named outputs
need the user's word (`label_map`, `--label-map 0=negative,1=positive`). A model whose outputs
carry only transformers' placeholder names (LABEL_0, LABEL_1, ...) says nothing by name: the
data's numbers are its indices, named labels are taken in order, with a note.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from pocketsize.errors import PocketsizeError

_PLACEHOLDER = re.compile(r"^LABEL_(\d+)$")
FIX = "--label-map DATA=MODEL,... (Python and recipes: label_map=)"
_LISTED = 8  # labels named in a note before "and N more"


def add_label_map_option(parser) -> None:
    """`--label-map` of the verbs that score a model against labelled data (eval, quantize)."""
    parser.add_argument(
        "--label-map",
        metavar="DATA=MODEL,...",
        help="the model's name for each of the data's labels, e.g. 0=negative,1=positive "
        "(labels are matched by name; numbers against named labels need this)",
    )


def model_labels(config: Mapping) -> list[str] | None:
    """A config's output names in output order (`id2label`; placeholders from `num_labels`
    when it has none); None when it says neither."""
    id2label = config.get("id2label")
    if not id2label:
        n = config.get("num_labels")
        return [f"LABEL_{i}" for i in range(n)] if n else None
    return [str(id2label[k]) for k in sorted(id2label, key=int)]


def unnamed(labels: list[str]) -> bool:
    """Only transformers' placeholders (LABEL_0, LABEL_1, ...): the outputs have no names."""
    return all(_PLACEHOLDER.match(name) for name in labels)


def parse_label_map(spec) -> dict[str, str] | None:
    """'0=negative,1=positive' (the CLI's form) or a mapping (Python; a recipe's YAML may give
    number keys) -> {data label: model label}, every name a string."""
    if spec is None or spec == "" or spec == {}:
        return None
    if isinstance(spec, Mapping):
        return {str(k): str(v) for k, v in spec.items()}
    if not isinstance(spec, str):
        raise PocketsizeError(
            f"label_map must be a mapping or 'DATA=MODEL,...', not {type(spec).__name__}; "
            "e.g. label_map={'0': 'negative', '1': 'positive'}"
        )
    pairs: dict[str, str] = {}
    # only the ends of each pair are stripped: a label's own spaces can be mapped
    for item in spec.split(","):
        data, sep, model = item.strip().partition("=")
        if not sep or not data or not model:
            raise PocketsizeError(
                f"--label-map {spec!r}: expected DATA=MODEL pairs separated by commas, e.g. "
                "--label-map 0=negative,1=positive"
            )
        if data in pairs:
            raise PocketsizeError(f"--label-map {spec!r} maps {data!r} twice; map each label once")
        pairs[data] = model
    return pairs


@dataclass
class LabelMapping:
    """The data's labels matched to a model's outputs."""

    data_labels: list[str]  # the data's label names, in the data's own order
    model_labels: list[str]  # the model's output names, in output order
    index: dict[str, int]  # data label -> the index of the model output it is scored against
    by_position: bool = False  # unnamed outputs: the data's labels were taken in order
    label_map: dict[str, str] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def identity(self) -> bool:
        """The data's labels already are the model's output indices, under the names the
        model gives them (or the model gives none): nothing to re-encode."""
        in_order = self.index == {d: i for i, d in enumerate(self.data_labels)}
        same = len(self.data_labels) == len(self.model_labels) and in_order
        named_alike = self.data_labels == self.model_labels or unnamed(self.model_labels)
        return self.by_position or (same and named_alike)

    @property
    def names(self) -> list[str]:
        """The label names in output order as a report shows them: the data's where they were
        kept (the model's are placeholders), else the model's."""
        return self.data_labels if self.identity else self.model_labels

    def record(self) -> dict:
        """What a report keeps of the mapping (metrics.json settings.label_mapping)."""
        return {
            "by": "position" if self.by_position else "name",
            "data_labels": self.data_labels,
            "matched": {d: self.model_labels[i] for d, i in self.index.items()},
            "label_map": self.label_map,
            "notes": self.notes,
        }


def map_labels(data_labels, model_labels, label_map=None, who: str = "the model") -> LabelMapping:
    """Match each data label to the model output of the same name (or the one `label_map`
    names); refuse, in one line naming them, the labels the model does not predict."""
    data_labels, model_labels = [str(n) for n in data_labels], [str(n) for n in model_labels]
    label_map = parse_label_map(label_map)
    _check_targets(label_map or {}, model_labels, who)
    if unnamed(model_labels) and not label_map and not all(d.isdigit() for d in data_labels):
        return _in_order(data_labels, model_labels, who)
    target = {d: _target(d, label_map or {}, model_labels) for d in data_labels}
    unknown = [d for d in data_labels if target[d] not in model_labels]
    if unknown:
        raise PocketsizeError(_unknown_message(unknown, data_labels, model_labels, who))
    index = {d: model_labels.index(target[d]) for d in data_labels}
    mapping = LabelMapping(data_labels, model_labels, index, label_map=label_map)
    absent = [m for i, m in enumerate(model_labels) if i not in index.values()]
    if absent:
        mapping.notes.append(
            f"the data holds {len(model_labels) - len(absent)} of the {len(model_labels)} "
            f"labels {who} predicts: no example is labelled {_listed(absent)}, so per-class "
            "figures show it with no examples and a prediction of it counts as an error"
        )
    return mapping


def _target(data_label: str, label_map: dict, model_labels: list[str]) -> str:
    if data_label in label_map:
        return label_map[data_label]
    if unnamed(model_labels) and data_label.isdigit():
        return f"LABEL_{int(data_label)}"  # transformers' own convention: LABEL_i is output i
    return data_label


def _check_targets(label_map: dict, model_labels: list[str], who: str) -> None:
    for data, model in label_map.items():
        if model not in model_labels:
            raise PocketsizeError(
                f"label_map maps {data!r} to {model!r}, which {who} does not predict (it "
                f"predicts {', '.join(model_labels)}); map each data label to one of those"
            )


def _in_order(data_labels: list[str], model_labels: list[str], who: str) -> LabelMapping:
    """Named data labels against unnamed outputs: in order, if the counts agree."""
    if len(data_labels) != len(model_labels):
        raise PocketsizeError(
            f"{who} has {len(model_labels)} unnamed labels ({', '.join(model_labels)}) but the "
            f"data has {len(data_labels)} ({', '.join(data_labels)}); evaluate a model fine-tuned "
            f"on this label set, or say which output each label is with {FIX}"
        )
    index = {d: i for i, d in enumerate(data_labels)}
    pairs = ", ".join(f"{d}={m}" for d, m in zip(data_labels, model_labels))
    note = (
        f"{who} names its outputs only {', '.join(model_labels)}: the data's labels are taken "
        f"in that order ({pairs}); if that is wrong, map them with {FIX}"
    )
    return LabelMapping(data_labels, model_labels, index, by_position=True, notes=[note])


def _unknown_message(unknown, data_labels, model_labels, who: str) -> str:
    near = {d: m for d in unknown for m in model_labels if _loose(d) == _loose(m)}
    if near:
        differ = "differ" if len(near) > 1 else "differs"
        return (
            f"the data's {_named(near)} {differ} only in case or spacing from "
            f"{', '.join(map(repr, near.values()))}, which {who} predicts; fix it in the data, "
            f"or map it: --label-map {_cli_pairs(near)} (Python and recipes: label_map=)"
        )
    numbers = all(d.isdigit() for d in data_labels)
    if numbers and not unnamed(model_labels) and not any(m.isdigit() for m in model_labels):
        pairs = _cli_pairs(dict.fromkeys(data_labels, "NAME"))
        return (
            f"the data's labels are numbers ({', '.join(data_labels)}) but {who} predicts "
            f"names ({', '.join(model_labels)}); say which name each number stands for with "
            f"--label-map {pairs} (Python and recipes: label_map=)"
        )
    are = "are" if len(unknown) > 1 else "is"
    return (
        f"the data's {_named(unknown)} {are} not among the labels {who} predicts "
        f"({', '.join(model_labels)}); evaluate a model trained on them, drop those rows, or "
        f"map them with --label-map {_cli_pairs(dict.fromkeys(unknown, 'NAME'))} (Python and "
        "recipes: label_map=)"
    )


def _named(labels) -> str:
    """Labels as an error names them: label 'x', or labels 'x', 'y'."""
    return ("labels " if len(labels) > 1 else "label ") + ", ".join(map(repr, labels))


def _cli_pairs(pairs: dict) -> str:
    """{'positive ': 'positive'} as --label-map takes it, quoted when a label holds a space."""
    text = ",".join(f"{d}={m}" for d, m in pairs.items())
    return f"'{text}'" if any(c.isspace() for c in text) else text


def _loose(name: str) -> str:
    """A label as case and spacing leave it ('Positive ' and 'positive' are one label)."""
    return " ".join(name.split()).casefold()


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:_LISTED])
    return shown + (f" and {len(names) - _LISTED} more" if len(names) > _LISTED else "")
