"""`pocketsize prune`: layers, heads, FFN neurons, hidden width, vocabulary and magnitude
sparsity from the shell; every option is generated from PruneConfig."""

from __future__ import annotations

from pocketsize.formats.hf_load import add_trust_options
from pocketsize.options import add_arguments, from_args
from pocketsize.prune.config import PruneConfig
from pocketsize.tasks.cli_data import add_columns_option, add_task_option, data_for_stage


def add_commands(subparsers) -> None:
    p = subparsers.add_parser(
        "prune",
        help="remove layers, attention heads, FFN neurons, hidden width and unused vocabulary",
        description="Prune a model into a smaller dense model. Fractions are the share REMOVED.",
    )
    p.add_argument("--model", required=True, help="model directory or catalogue name")
    p.add_argument("--data", help="dataset name or directory (needed for importance and --vocab)")
    add_columns_option(p)
    add_task_option(p, "what the model records, else the data's columns")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_trust_options(p)
    add_arguments(p, PruneConfig)
    p.set_defaults(func=run)


def run(args) -> int:
    from pocketsize.prune import prune

    config = from_args(PruneConfig, args)  # checked before the model or the data is read
    out = prune(
        args.model,
        data_for_stage(args.data, args.columns, args.task),
        config=config,
        task=args.task,
        out=args.out,
        overwrite=args.overwrite,
        trust_remote_code=args.trust_remote_code,
        trust_module_code=args.trust_module_code,
    )
    print(f"pruned model written to {out} (what was removed: {out / 'stage.json'})")
    return 0
