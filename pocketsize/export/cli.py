"""`pocketsize export`: a model directory -> an ONNX directory (optionally with model.ort)."""

from __future__ import annotations

from pocketsize.formats.hf_load import add_trust_options


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("export", help="export a model to ONNX (parity-checked, optimised)")
    p.add_argument("--model", required=True, help="model directory, catalogue name or hub id")
    p.add_argument("--out", required=True, help="output ONNX directory")
    p.add_argument(
        "--task", default=None, help="text-classification or extractive-qa (default: from config)"
    )
    p.add_argument("--exporter", default="auto", choices=["auto", "optimum", "torch"])
    p.add_argument("--no-optimize", action="store_true", help="skip ONNX Runtime graph fusions")
    p.add_argument("--mobile", action="store_true", help="also write the ORT mobile format (.ort)")
    p.add_argument(
        "--transformers-js",
        action="store_true",
        help="also lay the model out as transformers.js loads it (onnx/model.onnx), for Node "
        "and the browser",
    )
    p.add_argument("--opset", type=int, default=None)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    add_trust_options(p)
    p.set_defaults(func=run_export)


def run_export(args) -> int:
    from pocketsize.export import export, read_manifest

    out = export(
        args.model,
        args.out,
        task=args.task,
        exporter=args.exporter,
        optimize=not args.no_optimize,
        mobile=args.mobile,
        transformers_js=args.transformers_js,
        opset=args.opset,
        overwrite=args.overwrite,
        trust_module_code=args.trust_module_code,
        trust_remote_code=args.trust_remote_code,
    )
    m = read_manifest(out)
    opt = m.get("optimization", {})
    print(
        f"exported {args.model} -> {out}/{m.get('file')} ({m.get('exporter')} exporter, "
        f"parity max diff {m.get('parity_max_abs_diff', float('nan')):.2g}, "
        f"optimised: {'yes' if opt.get('applied') else 'no - ' + str(opt.get('reason'))}"
        f"{', mobile: ' + m['mobile']['file'] if 'mobile' in m else ''}"
        f"{', transformers.js: ' + m['transformers_js']['file'] if 'transformers_js' in m else ''})"
    )
    return 0
