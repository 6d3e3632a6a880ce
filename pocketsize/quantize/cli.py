"""`pocketsize quantize`: an ONNX (or PyTorch) model directory -> a quantized directory. The
inputs by hand, every option generated from the methods' configs (quantize/config.py): a flag
of another method than --method's is refused in one line."""

from __future__ import annotations

from pocketsize.formats.hf_load import add_trust_options
from pocketsize.options import add_arguments
from pocketsize.quantize.config import METHODS
from pocketsize.tasks.cli_data import add_columns_option, add_task_option, data_for_stage


def add_commands(subparsers) -> None:
    p = subparsers.add_parser(
        "quantize", help="quantize an ONNX model (dynamic, 4bit, static, auto) or cast (fp16, bf16)"
    )
    p.add_argument(
        "--model",
        required=True,
        help="ONNX directory or .onnx file (int8 and 4-bit: export a PyTorch directory first; "
        "fp16 / bf16 cast a PyTorch directory)",
    )
    p.add_argument("--data", default=None, help="dataset name or path (read by static and auto)")
    add_columns_option(p)
    p.add_argument("--method", default="dynamic", choices=list(METHODS), help="(default: dynamic)")
    p.add_argument("--out", default=None, help="output directory (default: <model>-int8)")
    add_task_option(p, "what the model records")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    add_trust_options(p)
    add_arguments(p, *METHODS.values())
    p.set_defaults(func=run_quantize)


def run_quantize(args) -> int:
    from pocketsize.formats.records import read_record
    from pocketsize.quantize import quantize
    from pocketsize.quantize.config import build_config

    names = {n for cls in METHODS.values() for n in cls.names()}
    given = {name: getattr(args, name) for name in names if hasattr(args, name)}
    config = build_config(args.method, None, given)  # checked before the data is read
    out = quantize(
        args.model,
        data_for_stage(args.data, args.columns),
        config=config,
        out=args.out,
        task=args.task,
        overwrite=args.overwrite,
        trust_remote_code=args.trust_remote_code,
        trust_module_code=args.trust_module_code,
    )
    manifest = read_record(out)
    line = f"quantized {args.model} -> {out}/{manifest['file']} ({manifest.get('quantization', {}).get('method', args.method)})"
    budget = manifest.get("accuracy_budget")
    if budget:
        status = (
            "within budget"
            if budget["budget_met"]
            else "MISSES "
            + ", ".join(f"{k} by {v:.4f}" for k, v in budget["missed"].items())
            + " (the nearest configuration found is kept)"
        )
        line += (
            f"; {budget['metric']} {budget['float_metric']:.4f} -> {budget['quantized_metric']:.4f} "
            f"(drop {budget['drop']:.4f}, max {budget['max_drop']}: {status}; trials in {budget['trials_log']})"
            f"; agreement with the float model {budget['agreement']:.2%}"
        )
    print(line)
    return 0
