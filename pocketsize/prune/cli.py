"""`pocketsize prune`: layers, heads, FFN neurons, vocabulary and magnitude sparsity from the
shell."""

from __future__ import annotations

from pocketsize.tasks.cli_data import add_columns_option, data_for_stage


def add_commands(subparsers) -> None:
    p = subparsers.add_parser(
        "prune",
        help="remove attention heads, FFN neurons and unused vocabulary; optional sparsity",
        description="Prune a model into a smaller dense model. Fractions are the share REMOVED.",
    )
    p.add_argument("--model", required=True, help="model directory or catalogue name")
    p.add_argument("--data", help="dataset name or directory (needed for importance and --vocab)")
    add_columns_option(p)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--heads", type=float, help="fraction of attention heads to remove, in (0, 1)")
    p.add_argument("--ffn", type=float, help="fraction of FFN neurons to remove, in (0, 1)")
    p.add_argument(
        "--width", type=float, help="fraction of hidden channels to remove (whole heads)"
    )
    p.add_argument("--depth", type=float, help="fraction of layers to remove (decoders), in (0, 1)")
    p.add_argument(
        "--kv-groups",
        action="store_true",
        help="grouped-query decoders: --heads removes whole key/value groups",
    )
    p.add_argument("--vocab", action="store_true", help="trim the vocabulary to the pieces used")
    p.add_argument("--vocab-extra", help="text file (one text a line) whose pieces are also kept")
    p.add_argument(
        "--vocab-corpus",
        action="append",
        default=[],
        help="a dataset (catalogue name, file, hub id) whose text's pieces are also kept "
        "(repeatable)",
    )
    p.add_argument("--vocab-keep", help="file of tokens (one a line) always kept")
    p.add_argument("--sparsity", type=float, help="unstructured magnitude sparsity (no speed-up)")
    p.add_argument("--scope", choices=["layer", "global"], default="layer", help="head ranking")
    p.add_argument("--ffn-score", choices=["activation", "magnitude"], default="activation")
    p.add_argument("--sparsity-scope", choices=["layer", "global"], default="global")
    p.add_argument("--recover", action="store_true", help="distil from the unpruned model after")
    p.add_argument("--task", help="task name (default: inferred from the data)")
    p.add_argument("--max-examples", type=int, default=1024, help="examples to score importance")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, help="token limit (default: the task's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=run)


def run(args) -> int:
    from pocketsize.prune import prune

    out = prune(
        args.model,
        data_for_stage(args.data, args.columns, args.task),
        heads=args.heads,
        ffn=args.ffn,
        width=args.width,
        depth=args.depth,
        kv_groups=args.kv_groups,
        vocab=args.vocab,
        sparsity=args.sparsity,
        scope=args.scope,
        ffn_score=args.ffn_score,
        sparsity_scope=args.sparsity_scope,
        vocab_extra_text=args.vocab_extra,
        vocab_corpora=args.vocab_corpus,
        vocab_keep=args.vocab_keep,
        recover=args.recover,
        task=args.task,
        out=args.out,
        overwrite=args.overwrite,
        max_examples=args.max_examples,
        batch_size=args.batch_size,
        max_length=args.max_length,
        seed=args.seed,
    )
    print(f"pruned model written to {out} (what was removed: {out / 'pruning.json'})")
    return 0
