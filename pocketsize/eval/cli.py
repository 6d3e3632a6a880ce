"""`pocketsize eval` (the variants, data and output by hand, every option generated from
EvalConfig) and `pocketsize predict`. Nothing heavy is imported at module level."""

from __future__ import annotations

import argparse
import json
import sys

from pocketsize.errors import PocketsizeError
from pocketsize.eval.config import EvalConfig
from pocketsize.formats.hf_load import add_trust_options
from pocketsize.options import add_arguments, from_args
from pocketsize.tasks.cli_data import add_columns_option, add_task_option, parse_columns


def add_commands(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="measure model variants against a reference; write metrics.json and a report",
        description="Evaluate variants side by side: metric, agreement, size, latency, memory.",
    )
    p.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="NAME=PATH",
        help="a variant: a save_pretrained dir, an ONNX dir, or an .onnx/.ort file (repeat)",
    )
    p.add_argument("--data", required=True, help="dataset name, hub id or local files")
    add_columns_option(p)
    add_task_option(p, "what the variants record, else the data's columns")
    p.add_argument("--final", help="the variant a recipe ships, marked in the report")
    p.add_argument("--out", required=True, help="output directory for the report")
    p.add_argument("--overwrite", action="store_true", help="replace an existing report")
    add_trust_options(p)
    add_arguments(p, EvalConfig)
    p.set_defaults(func=run_eval)

    q = sub.add_parser(
        "predict",
        help="run any variant on some text",
        description="Classify text (or answer --question about it) with a model directory.",
    )
    q.add_argument("--model", required=True, help="a save_pretrained dir, ONNX dir or file")
    q.add_argument("text", nargs="+", help="the text(s); for QA, the context")
    q.add_argument("--question", help="extractive QA: the question to answer from the text")
    q.add_argument(
        "--aggregation",
        choices=["none", "simple", "first", "average", "max"],
        help="token classification: how word pieces group into entities (transformers' "
        "aggregation_strategy; default: one entry per piece)",
    )
    add_task_option(q, "what the model records")
    q.add_argument("--threads", type=int)
    add_trust_options(q)
    q.set_defaults(func=run_predict)


def parse_models(specs: list[str]) -> dict[str, str]:
    models = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise PocketsizeError(
                f"--model {spec!r}: expected NAME=PATH, e.g. --model int8=out/int8"
            )
        if name in models:
            raise PocketsizeError(f"--model {name!r} given twice; give each variant its own name")
        models[name] = path
    return models


def run_eval(args: argparse.Namespace) -> int:
    from pocketsize.fsutil import check_output_dir

    models = parse_models(args.model)
    config = from_args(EvalConfig, args)  # checked before the data is read
    check_output_dir(args.out, args.overwrite)
    from pocketsize.data import load_dataset
    from pocketsize.eval import evaluate
    from pocketsize.tasks import get_task

    options = {
        "columns": parse_columns(args.columns),
        "labelled": get_task(args.task).reads_labels if args.task else True,
    }
    if config.split == "all":  # every row of the files as given (e.g. a 3-row CSV)
        options["split"] = "all"
    data = load_dataset(args.data, **options)
    report = evaluate(
        models,
        data,
        config=config,
        final=args.final,
        task=args.task,
        trust_module_code=args.trust_module_code,
        trust_remote_code=args.trust_remote_code,
    )
    out = report.save(args.out, overwrite=args.overwrite)
    print(report.table())
    for note in (report.metrics["settings"].get("label_mapping") or {}).get("notes", []):
        print(f"note: {note}")
    for name, cut in report.metrics["settings"]["truncated_inputs"].items():
        print(f"note: {cut['examples']} texts reach the {cut['max_length']}-token limit of "
              f"variant {name!r}; longer ones were truncated to it")  # fmt: skip
    print(f"\nreport written to {out}/ (report.md, report.html, metrics.json, plots)")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from pocketsize.eval import load_pipeline
    from pocketsize.eval.predict import model_task

    task = model_task(args.model, args.task)
    _check_question(task, args.question, args.text)
    extra = {"aggregation_strategy": args.aggregation} if args.aggregation else {}
    pipe = load_pipeline(
        args.model,
        task=task,
        threads=args.threads,
        trust_remote_code=args.trust_remote_code,
        trust_module_code=args.trust_module_code,
        **extra,
    )
    limit = pipe.tokenizer.model_max_length
    for i, text in enumerate(args.text, 1):
        _note_length(i, text, pipe.tokenizer, limit, task)
        if task.asks_question:
            result = pipe(question=args.question, context=text)
        else:
            result = pipe(text)
        # pipelines give numpy scores (token classification), which json cannot write
        print(json.dumps(result, ensure_ascii=False, default=float))
    return 0


def _check_question(task, question, texts) -> None:
    """A question goes to a question-answering model, and such a model needs one (and a
    context to answer from): refused before the model is loaded."""
    if question is not None and not task.asks_question:
        raise PocketsizeError(
            f"--question is for extractive-qa models; this is a {task.name} model: drop --question"
        )
    if not task.asks_question:
        return
    if question is None or not question.strip():
        given = "an empty --question" if question is not None else "no --question"
        raise PocketsizeError(
            f"an extractive-qa model answers a question about the text; {given} was given: "
            'pass --question "..."'
        )
    empty = [i for i, text in enumerate(texts, 1) if not text.strip()]
    if empty:
        raise PocketsizeError(
            f"text {empty[0]} is empty: an extractive-qa model answers from the text; pass "
            "the context as the text"
        )


def _note_length(i: int, text: str, tokenizer, limit: int, task) -> None:
    if not text.strip():
        print(f"note: text {i} is empty; the model answers for no words at all", file=sys.stderr)
    elif not task.asks_question and len(tokenizer(text)["input_ids"]) > limit:
        print(f"note: text {i} is longer than the model's {limit} tokens; it reads the "
              "first ones", file=sys.stderr)  # fmt: skip
