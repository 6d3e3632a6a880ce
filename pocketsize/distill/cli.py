"""`pocketsize finetune` and `pocketsize distill` (nothing heavy is imported at module level)."""

from __future__ import annotations

import json

from pocketsize.tasks.cli_data import add_columns_option, data_for_stage


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("finetune", help="fine-tune a teacher (a task head on an encoder)")
    p.add_argument("--model", required=True, help="catalogue name, model directory or hub id")
    p.add_argument("--data", required=True, help="dataset name or local files")
    add_columns_option(p)
    p.add_argument("--task", help="task name (default: from the data and the model)")
    p.add_argument("--out", required=True, help="output model directory")
    p.add_argument("--epochs", type=float, default=2)
    _common_options(p, bf16="auto")
    p.set_defaults(func=run_finetune)

    p = subparsers.add_parser("distill", help="distil a teacher into a smaller student")
    p.add_argument("--teacher", required=True, help="fine-tuned model directory, name or hub id")
    p.add_argument(
        "--student",
        default="truncate",
        help="truncate[:0,2,4] | config:layers=3,hidden=192,heads=6 | bilstm | model dir",
    )
    p.add_argument("--data", required=True, help="dataset name or local files")
    add_columns_option(p)
    p.add_argument("--task", help="task name (default: from the teacher and the data)")
    p.add_argument("--out", required=True, help="output student directory")
    p.add_argument("--epochs", type=float, default=3)
    p.add_argument("--loss", default="kl=0.5,ce=0.5", help="weighted losses, e.g. kl=1,hidden=1")
    p.add_argument("--temperature", type=float, default=2.0)
    p.add_argument("--layer-map", default="auto", help="auto | uniform | last:K | 0:1,1:3")
    p.add_argument("--no-projection", action="store_true", help="refuse width projections")
    p.add_argument("--transfer", default=None, help="extra unlabelled text: a file or dataset name")
    p.add_argument("--augment", type=int, default=0, help="augmented copies per training text")
    p.add_argument("--no-cache", action="store_true", help="run the teacher live every step")
    p.add_argument(
        "--cache-top-k",
        type=int,
        default=None,
        metavar="K",
        help="cache a causal LM teacher as its K largest logits per position (top-k token KL)",
    )
    _common_options(
        p,
        lr=None,
        lr_help="learning rate (default: by student type, 2e-4 truncate, 1e-3 bilstm, else 5e-5)",
    )
    p.set_defaults(func=run_distill)


def _common_options(
    p, bf16: str = "off", lr: float | None = 5e-5, lr_help: str = "learning rate (default 5e-5)"
) -> None:
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=lr, help=lr_help)
    p.add_argument("--max-length", type=int, default=None)
    p.add_argument("--max-steps", type=int, default=-1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--bf16",
        choices=["auto", "on", "off"],
        default=bf16,
        help="bfloat16 autocast; auto = on where the CPU/GPU has native bf16 (default: %(default)s)",
    )
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")


def _bf16(value: str):
    return {"auto": "auto", "on": True, "off": False}[value]


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

    out = finetune(
        args.model,
        data_for_stage(args.data, args.columns, args.task),
        args.out,
        task=args.task,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        max_length=args.max_length,
        max_steps=args.max_steps,
        seed=args.seed,
        bf16=_bf16(args.bf16),
        overwrite=args.overwrite,
        resume=args.resume,
    )
    _summary(out)
    return 0


def run_distill(args) -> int:
    from pocketsize.distill import distill
    from pocketsize.errors import PocketsizeError

    if args.no_cache and args.cache_top_k is not None:
        raise PocketsizeError("--no-cache and --cache-top-k contradict each other; drop one")

    out = distill(
        args.teacher,
        data_for_stage(args.data, args.columns, args.task),
        args.student,
        args.out,
        task=args.task,
        losses=args.loss,
        temperature=args.temperature,
        layer_map=args.layer_map,
        projection=not args.no_projection,
        epochs=args.epochs,
        transfer=args.transfer,
        augment=args.augment,
        cache=False if args.no_cache else (True if args.cache_top_k else "auto"),
        **({"cache_top_k": args.cache_top_k} if args.cache_top_k is not None else {}),
        batch_size=args.batch_size,
        learning_rate=args.lr,
        max_length=args.max_length,
        max_steps=args.max_steps,
        seed=args.seed,
        bf16=_bf16(args.bf16),
        overwrite=args.overwrite,
        resume=args.resume,
    )
    _summary(out)
    return 0
