"""What an embeddings user gets from the two tools they would reach for instead, each made the
way that tool's documentation says, from the same teacher:

st-int8: sentence-transformers' own ONNX path, `SentenceTransformer(dir, backend="onnx")`
  (optimum's export) and `export_dynamic_quantized_onnx_model` with this CPU's preset.
model2vec: model2vec's `distill` of the teacher into a static model (PCA to 256 dimensions,
  SIF weighting, float16 table), the smallest and fastest embedder users know.

Both need the `embeddings` extra (`pip install pocketsize[embeddings]`). Their results are put
in the form the report runs: sentence-transformers' graph gets the pooling that it would run in
Python appended as ONNX nodes (formats/pooling_graph.py); model2vec's table becomes
pocketsize's StaticEmbedder with the same tokens left out of the mean, stored in float16 as
model2vec stores it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from pocketsize.errors import PocketsizeError
from pocketsize.formats.records import stage_output, update_record
from pocketsize.fsutil import check_output_dir

EXTRA = "pip install 'pocketsize[embeddings]'"


def _require(task, name: str, module: str) -> None:
    if "sentence_embedding" not in task.output_names:  # what these tools make
        raise PocketsizeError(
            f"the {name} baseline is a sentence embedder's; drop it for {task.name}"
        )
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise PocketsizeError(f"the {name} baseline needs {module}: {EXTRA}")


def sentence_transformers_int8(model_dir, out, *, task, overwrite: bool = False) -> Path:
    _require(task, "st-int8", "sentence_transformers")
    from sentence_transformers import SentenceTransformer, export_dynamic_quantized_onnx_model

    from pocketsize.formats.side_files import copy_model_side_files
    from pocketsize.quantize.dynamic import detect_target

    out = check_output_dir(out, overwrite)
    target = detect_target()
    with stage_output(out, "baseline", overwrite) as tmp:
        work = tmp / "sentence-transformers"
        model = SentenceTransformer(str(model_dir), backend="onnx", device="cpu")
        model.save(str(work))
        export_dynamic_quantized_onnx_model(model, target, str(work))
        (quantized,) = (work / "onnx").glob(f"model_q*int8_{target}.onnx")  # quint8 on avx2
        shutil.move(str(quantized), tmp / "model_quantized.onnx")
        copy_model_side_files(work, tmp)
        shutil.rmtree(work)
        task.complete_graph(tmp, model_dir)  # the pooling sentence-transformers runs after it
        update_record(
            tmp, format="onnx", file="model_quantized.onnx", task=task.name, baseline="st-int8",
            how=f"sentence-transformers only: backend='onnx', export_dynamic_quantized_onnx_model "
            f"({target}); its Pooling and Normalize appended to the graph",
            source=str(model_dir),
        )  # fmt: skip
    return out


def model2vec_static(model_dir, out, *, task, overwrite: bool = False) -> Path:
    _require(task, "model2vec", "model2vec")
    from model2vec.distill import distill

    from pocketsize.formats.module_dir import save_module_dir

    out = check_output_dir(out, overwrite)
    static = distill(model_name=str(model_dir), device="cpu")
    module, tokenizer = _as_static_embedder(static)
    with stage_output(out, "baseline", overwrite) as tmp:
        save_module_dir(module.half(), tmp, tokenizer, task=task.name)
        update_record(
            tmp, format="pytorch", task=task.name, baseline="model2vec",
            how=f"model2vec only: distill(teacher), {module.config['dim']} dimensions, float16",
            source=str(model_dir),
        )  # fmt: skip
    return out


def _padding_tokenizer(backend):
    """model2vec's tokenizer as a transformers tokenizer that can pad a batch (its own padding
    token, or [PAD] added: the model leaves it out of every mean)."""
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend)
    padding = backend.padding or {}
    known = [t.content for t in backend.get_added_tokens_decoder().values()]
    pad = padding.get("pad_token") or next((t for t in known if t in ("[PAD]", "<pad>")), None)
    tokenizer.pad_token = pad or "[PAD]"
    return tokenizer


def _as_static_embedder(static):
    """model2vec's StaticModel as a StaticEmbedder: its token mapping and SIF weights folded
    into one row per token; its special tokens and [UNK] left out of the mean, as model2vec
    tokenizes without special tokens and drops [UNK]."""
    import torch

    from pocketsize.zoo.static_embedder import StaticEmbedder

    tokenizer = _padding_tokenizer(static.tokenizer)
    vocab = len(tokenizer)  # the ids the tokenizer gives; a padding token added here included
    embedding = np.asarray(static.embedding, dtype=np.float32)
    mapping = static.token_mapping
    ids = np.arange(min(vocab, len(mapping) if mapping is not None else len(embedding)))
    table = np.zeros((vocab, embedding.shape[1]), dtype=np.float32)
    table[ids] = embedding[ids if mapping is None else mapping[ids]]
    if static.weights is not None:
        table[ids] *= np.asarray(static.weights, dtype=np.float32)[ids, None]
    decoder = static.tokenizer.get_added_tokens_decoder()
    skip = {i for i, token in decoder.items() if token.special} | {tokenizer.pad_token_id}
    if static.unk_token_id is not None:
        skip.add(int(static.unk_token_id))
    module = StaticEmbedder(vocab, table.shape[1], bool(static.normalize), sorted(skip))
    with torch.no_grad():
        module.embeddings.weight.copy_(torch.from_numpy(table))
    return module, tokenizer
