"""`pocketsize quantize`: an ONNX (or PyTorch) model directory -> an int8 ONNX directory."""

from __future__ import annotations

from pocketsize.formats.hf_load import add_trust_options
from pocketsize.tasks.cli_data import add_columns_option, data_for_stage
from pocketsize.tasks.labels import add_label_map_option, parse_label_map


def add_commands(subparsers) -> None:
    p = subparsers.add_parser(
        "quantize", help="int8-quantize an ONNX model (dynamic, static, auto)"
    )
    p.add_argument(
        "--model",
        required=True,
        help="ONNX directory or .onnx file (int8 and 4-bit: export a PyTorch directory first; "
        "fp16 / bf16 cast a PyTorch directory)",
    )
    p.add_argument("--data", default=None, help="dataset name or path (needed by static and auto)")
    add_columns_option(p)
    p.add_argument("--method", default="dynamic", help="dynamic | static | auto | fp16 | bf16")
    p.add_argument(
        "--max-drop", type=float, default=0.01, help="auto: largest allowed absolute metric drop"
    )
    p.add_argument(
        "--max-size-mb",
        type=float,
        help="auto: largest allowed model file in MB (a configuration keeping big nodes in "
        "float is out of budget)",
    )
    p.add_argument(
        "--min-agreement",
        type=float,
        help="auto: least share of validation examples predicted as the float model does",
    )
    p.add_argument("--out", default=None, help="output directory (default: <model>-int8)")
    p.add_argument(
        "--target", default="auto", help="CPU preset: auto, avx2, avx512, avx512_vnni, arm64"
    )
    p.add_argument("--no-per-channel", action="store_true", help="per-tensor weight scales")
    p.add_argument("--no-embeddings", action="store_true", help="keep embeddings (Gather) in float")
    p.add_argument(
        "--embedding-bits", type=int, default=8, help="8 (int8) or 4 (block-quantized tables)"
    )
    p.add_argument("--matmul-bits", type=int, default=8, help="8 (int8) or 4 (MatMulNBits)")
    p.add_argument("--block-size", type=int, default=32, help="4-bit: values per scale")
    p.add_argument("--exclude-nodes", nargs="*", default=[], help="node names kept in float")
    p.add_argument("--exclude-ops", nargs="*", default=[], help="operator types kept in float")
    p.add_argument("--calibration", default="minmax", help="static: minmax | entropy | percentile")
    p.add_argument("--calibration-size", type=int, default=256)
    p.add_argument(
        "--eval-size", type=int, default=None, help="auto: examples of the validation split used"
    )
    add_label_map_option(p)
    p.add_argument("--mobile", action="store_true", help="also write the ORT mobile format (.ort)")
    p.add_argument(
        "--transformers-js",
        action="store_true",
        help="also lay the model out as transformers.js loads it (onnx/model_quantized.onnx)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    add_trust_options(p)
    p.set_defaults(func=run_quantize)


def run_quantize(args) -> int:
    import json
    from pathlib import Path

    from pocketsize.quantize import quantize

    label_map = parse_label_map(args.label_map)
    out = quantize(
        args.model,
        data_for_stage(args.data, args.columns),
        method=args.method,
        out=args.out,
        max_drop=args.max_drop,
        max_size_mb=args.max_size_mb,
        min_agreement=args.min_agreement,
        target=args.target,
        per_channel=not args.no_per_channel,
        quantize_embeddings=not args.no_embeddings,
        exclude_nodes=args.exclude_nodes,
        exclude_op_types=args.exclude_ops,
        embedding_bits=args.embedding_bits,
        matmul_bits=args.matmul_bits,
        block_size=args.block_size,
        calibration=args.calibration,
        calibration_size=args.calibration_size,
        eval_size=args.eval_size,
        label_map=label_map,
        mobile=args.mobile,
        transformers_js=args.transformers_js,
        overwrite=args.overwrite,
        trust_remote_code=args.trust_remote_code,
        trust_module_code=args.trust_module_code,
    )
    manifest = json.loads((Path(out) / "pocketsize.json").read_text())
    line = f"quantized {args.model} -> {out}/{manifest['file']} ({manifest.get('quantization', {}).get('method', args.method)})"
    budget = manifest.get("accuracy_budget")
    if budget:
        status = (
            "within budget"
            if budget["budget_met"]
            else f"MISSES the budget by {budget['miss_by']:.4f}"
        )
        line += (
            f"; {budget['metric']} {budget['float_metric']:.4f} -> {budget['quantized_metric']:.4f} "
            f"(drop {budget['drop']:.4f}, max {budget['max_drop']}: {status}; trials in {budget['trials_log']})"
            f"; agreement with the float model {budget['agreement']:.2%}"
        )
    print(line)
    return 0
