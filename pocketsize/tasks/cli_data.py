"""The data option shared by every CLI verb that reads a dataset, `--columns`, and what the
verb hands its stage once it is given.

Without it a verb passes its `--data` reference through, so the stage loads it as the API
does; with it the verb loads the data here, mapped (for a task that reads text alone, a causal
LM's, without labels), and passes the loaded dataset on.
"""

from __future__ import annotations

from pocketsize.errors import PocketsizeError

COLUMNS_HELP = (
    "map pocketsize's column roles to the data's columns, e.g. text=review,label=stars "
    "(roles: text, text_pair, label)"
)


def add_columns_option(parser) -> None:
    parser.add_argument("--columns", metavar="ROLE=COLUMN,...", help=COLUMNS_HELP)


def add_task_option(parser, default: str) -> None:
    """--task, its help naming every registered task; `default` says where the task comes from
    when the flag is left out (tasks.resolve_task's order)."""
    from pocketsize.tasks import task_names

    parser.add_argument(
        "--task", help=f"one of {', '.join(task_names())} (default: {default})", metavar="TASK"
    )


def parse_columns(spec: str | None) -> dict | None:
    """'text=review,label=stars' -> {'text': 'review', 'label': 'stars'}."""
    if not spec:
        return None
    mapping: dict[str, str] = {}
    for part in spec.split(","):
        role, sep, column = (x.strip() for x in part.partition("="))
        if not sep or not role or not column:
            raise PocketsizeError(
                f"--columns {spec!r}: expected ROLE=COLUMN pairs separated by commas, e.g. "
                "--columns text=review,label=stars"
            )
        if role in mapping:
            raise PocketsizeError(f"--columns {spec!r} maps {role!r} twice; map each role once")
        mapping[role] = column
    return mapping


def data_for_stage(data: str | None, columns: str | None, task: str | None = None):
    """The `--data` reference as given, or the dataset loaded here: with `--columns`, or for a
    `--task` that reads no labels (a causal LM's text, which the stage would read as labelled)."""
    from pocketsize.tasks.base import get_task

    mapping = parse_columns(columns)
    labelled = get_task(task).reads_labels if task else True
    if mapping is None and labelled:
        return data
    if data is None:
        if mapping is None:
            return data
        raise PocketsizeError("--columns maps the columns of --data; give --data too")
    from pocketsize.data import load_dataset

    return load_dataset(data, columns=mapping, labelled=labelled)
