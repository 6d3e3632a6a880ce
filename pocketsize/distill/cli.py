"""`pocketsize finetune` and `pocketsize distill`: the inputs by hand, every option generated
from FinetuneConfig / DistillConfig (nothing heavy is imported at module level)."""

from __future__ import annotations

import json

from pocketsize.distill.config import DistillConfig, FinetuneConfig
from pocketsize.formats.hf_load import add_trust_options
from pocketsize.options import add_arguments, from_args
from pocketsize.tasks.cli_data import add_columns_option, add_task_option, data_for_stage


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("finetune", help="fine-tune a teacher (a task head on an encoder)")
    p.add_argument("--model", required=True, help="catalogue name, model directory or hub id")
    _inputs(p, task_help="what the model records, else the data's columns")
    p.add_argument("--out", required=True, help="output model directory")
    add_arguments(p, FinetuneConfig)
    p.set_defaults(func=run_finetune)

    p = subparsers.add_parser("distill", help="distil a teacher into a smaller student")
    p.add_argument("--teacher", required=True, help="fine-tuned model directory, name or hub id")
    p.add_argument(
        "--student",
        default="truncate",
        help="truncate[:0,2,4] | config:layers=3,hidden=192,heads=6 | bilstm | model dir",
    )
    _inputs(p, task_help="what the teacher records, else the data's columns")
    p.add_argument("--out", required=True, help="output student directory")
    add_arguments(p, DistillConfig)
    p.set_defaults(func=run_distill)


def _inputs(p, task_help: str) -> None:
    p.add_argument("--data", required=True, help="dataset name or local files")
    add_columns_option(p)
    add_task_option(p, task_help)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    add_trust_options(p)


def _summary(out) -> None:
    stage = json.loads((out / "stage.json").read_text())
    print(f"wrote {out}")
    print(f"  steps {stage['steps']}, train loss {stage['train_loss']:.4f}")
    if stage.get("validation"):
        print(f"  validation {stage['validation']}")
    if stage.get("teacher_validation"):
        print(f"  teacher validation {stage['teacher_validation']}")


def run_finetune(args) -> int:
    from pocketsize.distill import finetune

    config = from_args(FinetuneConfig, args)  # checked before the data is read
    out = finetune(
        args.model,
        data_for_stage(args.data, args.columns, args.task),
        args.out,
        config=config,
        task=args.task,
        overwrite=args.overwrite,
        resume=args.resume,
        trust_remote_code=args.trust_remote_code,
        trust_module_code=args.trust_module_code,
    )
    _summary(out)
    return 0


def run_distill(args) -> int:
    from pocketsize.distill import distill

    config = from_args(DistillConfig, args)
    out = distill(
        args.teacher,
        data_for_stage(args.data, args.columns, args.task),
        args.student,
        args.out,
        config=config,
        task=args.task,
        overwrite=args.overwrite,
        resume=args.resume,
        trust_remote_code=args.trust_remote_code,
        trust_module_code=args.trust_module_code,
    )
    _summary(out)
    return 0
