"""`pocketsize compress`: search for the smallest, fastest model that keeps the budget; every
option is generated from CompressConfig."""

from __future__ import annotations

from pocketsize.compress.config import CompressConfig
from pocketsize.options import add_arguments, from_args
from pocketsize.tasks.cli_data import add_columns_option, add_task_option, data_for_stage


def add_commands(subparsers) -> None:
    p = subparsers.add_parser(
        "compress",
        help="search the student, pruning and int8 settings for a size/latency/agreement target",
        description="Build every candidate untrained and time it on this CPU, then distil the "
        "ones within the limits by successive halving; the fastest that keeps the budget (else "
        "the one that agrees most) is OUT/model. A rerun on OUT continues the search.",
    )
    p.add_argument("--teacher", required=True, help="the fine-tuned model to compress")
    p.add_argument("--data", required=True, help="dataset name or directory")
    add_columns_option(p)
    add_task_option(p, "what the teacher records, else the data's columns")
    p.add_argument("--out", required=True, help="the search directory (continued when it exists)")
    add_arguments(p, CompressConfig)
    p.set_defaults(func=run)


def run(args) -> int:
    import json

    from pocketsize.compress import compress

    config = from_args(CompressConfig, args)  # checked before the teacher or the data is read
    data = data_for_stage(args.data, args.columns, args.task)
    model = compress(args.teacher, data, args.out, config=config, task=args.task)
    summary = json.loads((model.parent / "search.json").read_text())
    best, budget = summary["chosen_trial"], summary["budget"]
    kept = "keeps the budget" if budget["met"] else f"misses the budget by {budget['shortfall']}"
    if budget.get("noise_floor") is not None:
        kept += f" (second teacher's agreement, the noise floor: {budget['noise_floor']:.4f})"
    print(
        f"chose {best['candidate']}: agreement {best['agreement']:.4f}, {best['size_mb']} MB, "
        f"{best['latency_ms']} ms at batch {config.latency_batch}; {kept} -> {model}"
    )
    return 0
