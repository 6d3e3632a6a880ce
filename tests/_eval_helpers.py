"""Helpers for the eval tests: tiny ONNX exports (independent of pocketsize.export)."""

from __future__ import annotations

import shutil
from pathlib import Path

SIDE_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)


def copy_side_files(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in SIDE_FILES:
        if (src / name).is_file():
            shutil.copy(src / name, dst / name)


def make_trained_looking_bert(path: Path, task: str = "text-classification", seed: int = 0):
    """make_tiny_bert with every weight jittered: a fresh init has identical all-zero biases and
    all-one LayerNorm weights, which the ONNX exporter stores once, unlike any trained model."""
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoModelForSequenceClassification
    from zoo import make_tiny_bert

    make_tiny_bert(path, task, seed)
    auto = (
        AutoModelForQuestionAnswering
        if task == "extractive-qa"
        else AutoModelForSequenceClassification
    )
    model = auto.from_pretrained(path)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.02)
    model.save_pretrained(path)
    return path


def export_onnx(model_dir: Path, out: Path, task: str = "text-classification") -> Path:
    """An optimum-style ONNX dir (model.onnx + config + tokenizer) via the TorchScript exporter."""
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoModelForSequenceClassification

    auto = (
        AutoModelForQuestionAnswering
        if task == "extractive-qa"
        else AutoModelForSequenceClassification
    )
    model = auto.from_pretrained(model_dir).eval()
    model.config.return_dict = False
    outputs = ["start_logits", "end_logits"] if task == "extractive-qa" else ["logits"]
    names = ["input_ids", "attention_mask", "token_type_ids"]
    dummy = tuple(torch.ones(2, 8, dtype=torch.long) for _ in names)
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes.update(
        {n: {0: "batch"} | ({1: "sequence"} if task == "extractive-qa" else {}) for n in outputs}
    )
    copy_side_files(model_dir, out)
    torch.onnx.export(
        model,
        dummy,
        str(out / "model.onnx"),
        input_names=names,
        output_names=outputs,
        dynamic_axes=axes,
        opset_version=17,
        dynamo=False,
    )
    return out


def quantize_onnx(onnx_dir: Path, out: Path) -> Path:
    """ORT dynamic int8 into out/model_quantized.onnx (the name optimum's quantizer uses)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    copy_side_files(onnx_dir, out)
    quantize_dynamic(
        str(onnx_dir / "model.onnx"), str(out / "model_quantized.onnx"), weight_type=QuantType.QInt8
    )
    return out


def convert_to_ort(onnx_file: Path, out: Path) -> Path:
    """The ORT mobile format, written by an InferenceSession (what the converter tool does)."""
    import onnxruntime as ort

    copy_side_files(onnx_file.parent, out)
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(out / "model.ort")
    options.add_session_config_entry("session.save_model_format", "ORT")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    ort.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])
    return out / "model.ort"
