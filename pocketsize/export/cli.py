"""`pocketsize export`: a model directory -> an ONNX directory (optionally with model.ort). The
inputs by hand, every option generated from ExportConfig."""

from __future__ import annotations

from pocketsize.export.config import ExportConfig
from pocketsize.formats.hf_load import add_trust_options
from pocketsize.options import add_arguments, from_args
from pocketsize.tasks.cli_data import add_task_option


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("export", help="export a model to ONNX (parity-checked, optimised)")
    p.add_argument("--model", required=True, help="model directory, catalogue name or hub id")
    p.add_argument("--out", required=True, help="output ONNX directory")
    add_task_option(p, "what the model records")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    add_trust_options(p)
    add_arguments(p, ExportConfig)
    p.set_defaults(func=run_export)


def run_export(args) -> int:
    from pocketsize.export import export, read_record

    out = export(
        args.model,
        args.out,
        config=from_args(ExportConfig, args),
        task=args.task,
        overwrite=args.overwrite,
        trust_module_code=args.trust_module_code,
        trust_remote_code=args.trust_remote_code,
    )
    m = read_record(out)
    opt = m.get("optimization", {})
    print(
        f"exported {args.model} -> {out}/{m.get('file')} ({m.get('exporter')} exporter, "
        f"parity max diff {m.get('parity_max_abs_diff', float('nan')):.2g}, "
        f"optimised: {'yes' if opt.get('applied') else 'no - ' + str(opt.get('reason'))}"
        f"{', mobile: ' + m['mobile']['file'] if 'mobile' in m else ''}"
        f"{', transformers.js: ' + m['transformers_js']['file'] if 'transformers_js' in m else ''})"
    )
    return 0
