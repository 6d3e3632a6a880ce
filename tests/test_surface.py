"""One surface: a stage's options are one typed config, and the Python keywords, the CLI flags
and the recipe keys come from it with the same names and defaults (the contract test walks every
field of every configured verb); bad values are refused before any work; the CLI distils every
task with the task's own default losses."""

from __future__ import annotations

import dataclasses
import inspect
import json

import pytest
from conftest import make_cls_dataset, make_tiny_bert, make_tokenizer, tiny_bert_config

from pocketsize.distill.config import DistillConfig, FinetuneConfig
from pocketsize.errors import PocketsizeError
from pocketsize.eval.config import EvalConfig
from pocketsize.export.config import ExportConfig
from pocketsize.options import flag_of
from pocketsize.prune.config import PruneConfig
from pocketsize.quantize.config import METHODS

pytestmark = pytest.mark.usefixtures("single_thread")

# verb -> (its config, the Python function, the recipe section holding its keys)
# options that make a valid config of each verb (pruning needs something to remove)
BASE = {"finetune": {}, "distill": {}, "prune": {"heads": 0.5, "ffn": 0.5}, "export": {}}
VERBS = {
    "finetune": (FinetuneConfig, "pocketsize.distill:finetune", "teacher.finetune"),
    "distill": (DistillConfig, "pocketsize.distill:distill", "distill"),
    "prune": (PruneConfig, "pocketsize.prune.pruner:prune", "prune"),
    "export": (ExportConfig, "pocketsize.export.onnx_export:export", "export"),
    "eval": (EvalConfig, "pocketsize.eval.harness:evaluate", "eval"),
}
BASE["eval"] = {}
# quantize: one config per method, `--method` / `method:` picks it
for _method, _cls in METHODS.items():
    BASE[f"quantize:{_method}"] = {"method": _method}
    VERBS[f"quantize:{_method}"] = (_cls, "pocketsize.quantize.api:quantize", "quantize")


def _subparser(verb: str):
    from pocketsize.cli import build_parser

    parser = build_parser()
    action = next(a for a in parser._actions if hasattr(a, "choices") and a.choices)
    return action.choices[verb]


def _function(ref: str):
    import importlib

    module, name = ref.split(":")
    return getattr(importlib.import_module(module), name)


def _default(field):
    if field.default is not dataclasses.MISSING:
        return field.default
    return field.default_factory()


def _minimal_recipe(section: str, options: dict) -> dict:
    recipe = {"name": "contract", "data": "rt-polarity", "teacher": {"model": "minilm-l6"}}
    if section == "teacher.finetune":
        recipe["teacher"]["finetune"] = options
        return recipe
    if section == "distill":
        recipe["student"] = {"init": "truncate", "layers": [0]}
    if section == "quantize":
        recipe["export"] = {}
    recipe[section] = options
    return recipe


def _as_text(value) -> list[str]:
    """A value as a user types it after its flag."""
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    if isinstance(value, dict):
        import yaml

        return [yaml.safe_dump(value, default_flow_style=True).strip()]
    return [str(value)]


def _flags(options: dict) -> list[str]:
    return [x for k, v in options.items() for x in ["--" + k.replace("_", "-"), *_as_text(v)]]


@pytest.mark.parametrize("verb", list(VERBS))
def test_every_config_field_is_a_keyword_a_flag_and_a_recipe_key_with_one_default(verb):
    from pocketsize.options import from_args
    from pocketsize.recipe import validate_recipe

    config_cls, function, section = VERBS[verb]
    sub = _subparser(verb.split(":")[0])
    flags = {s: a for a in sub._actions for s in a.option_strings}
    signature = inspect.signature(_function(function)).parameters
    required = {"finetune": ["--model", "m"], "distill": ["--teacher", "t"]}.get(verb, [])
    base = required + ["--model", "m"] * (not required) + ["--out", "o"]
    base += ["--data", "d"] * (verb != "export") + _flags(BASE[verb])
    options = {k: v for k, v in BASE[verb].items() if k != "method"}
    valid = config_cls(**options)
    assert from_args(config_cls, sub.parse_args(base)) == valid
    for field in dataclasses.fields(config_cls):
        default = _default(field)
        # Python: a keyword-only parameter of the verb, with the config's default (quantize's
        # signature shows the first method's default of a field several methods share)
        param = signature[field.name]
        shown = config_cls
        if section == "quantize":
            shown = next(c for c in METHODS.values() if field.name in c.names())
        shown_field = next(f for f in dataclasses.fields(shown) if f.name == field.name)
        assert param.kind is param.KEYWORD_ONLY and param.default == _default(shown_field)
        # CLI: --name-with-dashes, which reads its default's text back to the same config
        flag = flag_of(field)
        assert flag == "--" + field.name.replace("_", "-") and flag in flags, field.name
        if isinstance(default, bool):  # a switch: --name and --no-name
            # (4bit's float embeddings need int8 tables: embedding_bits=4 needs them quantized)
            other = ["--embedding-bits", "8"] * (field.name == "quantize_embeddings")
            for text, value in ((flag, True), (f"--no-{flag[2:]}", False)):
                given = from_args(config_cls, sub.parse_args(base + other + [text]))
                assert getattr(given, field.name) is value, field.name
        elif default is not None and default != []:  # (an empty list has no text to type)
            given = sub.parse_args(base + [flag, *_as_text(default)])
            assert from_args(config_cls, given) == valid, field.name
        # recipe: the same key takes the same default; the seed is the recipe's own
        recipe = _minimal_recipe(section, {**BASE[verb], field.name: default})
        if field.metadata["recipe"]:
            validate_recipe(recipe)
        else:
            with pytest.raises(PocketsizeError, match="set by the recipe itself"):
                validate_recipe(recipe)


@pytest.mark.parametrize(
    "verb, old, new, expected",
    [
        ("distill", ["--lr", "0.001"], "--learning-rate", {"learning_rate": 0.001}),
        ("distill", ["--loss", "kl=1"], "--losses", {"losses": "kl=1"}),
        ("distill", ["--no-cache"], "--cache off", {"cache": "off"}),
        ("prune", ["--vocab-extra", "f.txt"], "--vocab-extra-text", {"vocab_extra_text": "f.txt"}),
        (
            "prune",
            ["--vocab-corpus", "a", "--vocab-corpus", "b"],
            "--vocab-corpora",
            {"vocab_corpora": ["a", "b"]},
        ),
        ("export", ["--no-optimize"], None, {"optimize": False}),  # generated as before
        (
            "quantize:dynamic",
            ["--no-embeddings"],
            "--no-quantize-embeddings",
            {"quantize_embeddings": False},
        ),
        (
            "quantize:dynamic",
            ["--exclude-ops", "Gather", "MatMul"],
            "--exclude-op-types",
            {"exclude_op_types": ["Gather", "MatMul"]},
        ),
    ],
)
def test_old_flag_names_still_work_and_say_what_replaces_them(verb, old, new, expected, capsys):
    from pocketsize.options import from_args

    sub = _subparser(verb.split(":")[0])
    model = "--teacher" if verb == "distill" else "--model"
    needed = ["--vocab"] if verb == "prune" else []  # something to prune
    data = ["--data", "d"] * (verb != "export")
    args = sub.parse_args([model, "t", *data, "--out", "o", *needed, *old])
    config = from_args(VERBS[verb][0], args)
    assert {k: getattr(config, k) for k in expected} == expected
    err = capsys.readouterr().err
    assert f"{old[0]} is deprecated; use {new}" in err if new else "deprecated" not in err


BAD_VALUES = [
    (["--epochs", "0"], "option epochs: must be above 0, not 0.0"),
    (["--epochs", "-1"], "option epochs: must be above 0, not -1.0"),
    (["--batch-size", "0"], "option batch_size: must be at least 1, not 0"),
    (["--learning-rate", "-0.1"], "option learning_rate: must be above 0, not -0.1"),
    (["--warmup-ratio", "1.5"], "option warmup_ratio: must be between 0 and 1, not 1.5"),
    (["--max-steps", "0"], "option max_steps: must be at least 1 (or -1), not 0"),
]


PRUNE_BAD_VALUES = [
    (["--heads", "0"], "option heads: must be a fraction to remove strictly between 0 and 1"),
    (["--ffn", "1"], "option ffn: must be a fraction to remove strictly between 0 and 1"),
    (["--width", "-0.5"], "option width: must be a fraction to remove strictly between 0 and 1"),
    (["--heads", "0.5", "--batch-size", "0"], "option batch_size: must be at least 1, not 0"),
    (["--heads", "0.5", "--max-examples", "-3"], "option max_examples: must be at least 1"),
]


EXPORT_BAD_VALUES = [
    (["--opset", "5"], "option opset: must be an ONNX opset from 11 to 20, not 5"),
    (["--atol", "-1"], "option atol: must be at least 0, not -1.0"),
    (["--exporter", "tflite"], "option exporter: must be auto or a registered exporter"),
]
QUANTIZE_BAD_VALUES = [
    (["--method", "auto", "--max-drop", "2"], "option max_drop: must be between 0 and 1"),
    (["--method", "auto", "--min-agreement", "0"], "option min_agreement: must be a share"),
    (["--method", "auto", "--max-size-mb", "0"], "option max_size_mb: must be above 0"),
    (["--method", "static", "--calibration-size", "0"], "option calibration_size: must be at"),
    (["--block-size", "24"], "option block_size: must be a power of two from 16"),
    (["--calibration", "entropy"], "option calibration applies to method static / auto, not dy"),
    (["--method", "fp16", "--mobile"], "option mobile applies to method dynamic / 4bit / static"),
]


@pytest.mark.parametrize(
    "verb, flags, message",
    [(verb, *case) for verb in ("finetune", "distill") for case in BAD_VALUES]
    + [("prune", *case) for case in PRUNE_BAD_VALUES]
    + [("export", *case) for case in EXPORT_BAD_VALUES]
    + [("quantize", *case) for case in QUANTIZE_BAD_VALUES],
)
def test_a_zero_a_negative_or_an_out_of_range_share_is_refused_before_any_work(
    verb, flags, message, tmp_path, capsys
):
    from pocketsize.cli import main

    model = ["--teacher"] if verb == "distill" else ["--model"]
    out = tmp_path / "out"
    data = ["--data", "no-such-data"] * (verb != "export")
    argv = [verb, *model, "no-such-model", *data, "--out", str(out), *flags]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"pocketsize: error: {verb} option") and message in err
    assert len(err.splitlines()) == 1 and not out.exists()


def test_python_keywords_and_recipes_get_the_same_checks(tmp_path, capsys):
    from pocketsize.distill import distill, finetune
    from pocketsize.recipe import validate_recipe

    with pytest.raises(PocketsizeError, match=r"^finetune option epochs: must be above 0"):
        finetune("no-such-model", "no-such-data", tmp_path / "o", epochs=-1)
    with pytest.raises(PocketsizeError, match=r"unknown option 'epoch'; did you mean 'epochs'"):
        distill("t", "d", out=tmp_path / "o", epoch=3)
    with pytest.raises(PocketsizeError, match=r"^recipe key distill.warmup_ratio: must be"):
        validate_recipe(_minimal_recipe("distill", {"warmup_ratio": 2}))
    # prune's recovery options are distill's, checked when the recipe is, not after scoring
    recipe = _minimal_recipe("distill", {})
    recipe["prune"] = {"heads": 0.5, "recover": True, "recover_options": {"epoch": 3}}
    with pytest.raises(PocketsizeError, match=r"prune.recover_options.*did you mean 'epochs'"):
        validate_recipe(recipe)
    # and so are they from Python and the CLI (no model or data is read first: neither exists)
    from pocketsize.cli import main
    from pocketsize.prune import prune

    with pytest.raises(PocketsizeError, match=r"^prune option recover_options: .*'epochs'"):
        prune("no-such-model", heads=0.5, recover=True, recover_options={"epoch": 3})
    argv = ["prune", "--model", "no-such-model", "--heads", "0.5", "--recover"]
    assert main([*argv, "--recover-options", "{epoch: 3}", "--out", str(tmp_path / "p")]) == 2
    assert "recover_options: distill() got the unknown option 'epoch'" in capsys.readouterr().err


# --------------------------------------------------------------------------- every task


def _token_classification(root):
    from transformers import BertForTokenClassification
    from zoo import make_ner_dataset

    tok = make_tokenizer(root / "teacher")
    names = ["O", "B-MISC", "I-MISC", "B-PER", "I-PER"]
    config = tiny_bert_config(len(tok), num_labels=5)
    config.id2label, config.label2id = dict(enumerate(names)), {n: i for i, n in enumerate(names)}
    BertForTokenClassification(config).save_pretrained(root / "teacher")
    return root / "teacher", make_ner_dataset(16, 4, 4), ["token_kl", "token_ce"]


def _text_classification(root):
    return make_tiny_bert(root / "teacher"), make_cls_dataset(16, 4, 4), ["kl", "ce"]


def _extractive_qa(root):
    from zoo import make_qa_dataset

    teacher = make_tiny_bert(root / "teacher", task="extractive-qa")
    return teacher, make_qa_dataset(16, 4, 4), ["kl", "ce"]


def _causal_lm(root):
    from zoo import lm_data, make_tiny_gpt2

    return make_tiny_gpt2(root / "teacher"), lm_data(16, 4, 4), ["token_kl", "token_ce"]


def _seq2seq(root):
    from zoo import make_qa_dataset, make_tiny_t5

    return make_tiny_t5(root / "teacher"), make_qa_dataset(16, 4, 4), ["token_kl", "token_ce"]


TASKS = {
    "text-classification": _text_classification,
    "token-classification": _token_classification,
    "extractive-qa": _extractive_qa,
    "causal-lm": _causal_lm,
    "seq2seq": _seq2seq,
}


@pytest.mark.parametrize("task", list(TASKS))
def test_the_cli_distils_every_task_with_the_tasks_own_losses(task, tmp_path, capsys):
    """`--losses` unset means the task's own defaults (the CLI's old kl/ce default crashed a
    token classifier with a target-size error)."""
    from pocketsize.cli import main

    teacher, data, losses = TASKS[task](tmp_path)
    data.save_to_disk(str(tmp_path / "data"))
    out = tmp_path / "student"
    argv = ["distill", "--teacher", str(teacher), "--data", str(tmp_path / "data"),
            "--task", task, "--student", "truncate:0", "--out", str(out),
            "--max-steps", "1", "--batch-size", "4", "--no-evaluate"]  # fmt: skip
    if task == "causal-lm":
        argv += ["--max-length", "32"]
    assert main(argv) == 0, capsys.readouterr().err
    stage = json.loads((out / "stage.json").read_text())
    assert stage["task"] == task and sorted(stage["config"]["losses"]) == sorted(losses)
    assert stage["steps"] == 1


# --------------------------------------------------------------------------- a new pass


def test_a_new_pruning_pass_is_one_class_and_one_config_field(tiny_cls_dir, tmp_path, monkeypatch):
    """Where things go: a pass lives in one place (here, this test) with its option, and the
    driver runs it in its turn and files its record, with no change to the driver."""
    from dataclasses import dataclass

    import torch
    from safetensors.torch import load_file

    from pocketsize.options import option
    from pocketsize.prune import passes
    from pocketsize.prune.pruner import prune

    @dataclass(frozen=True)
    class WithZeroBias(PruneConfig):
        zero_bias: bool = option(False, "zero the classifier's bias")

    class ZeroBias(passes.Pass):
        name = "zero_bias"
        every_process = False

        def apply(self, run):
            with torch.no_grad():
                run.model.classifier.bias.zero_()
            run.record["zero_bias"] = {"zeroed": run.model.classifier.bias.numel()}

    monkeypatch.setattr(passes, "PASSES", list(passes.PASSES))
    passes.register_pass(ZeroBias, before="vocab")
    assert [p.name for p in passes.PASSES][-2:] == ["zero_bias", "vocab"]
    out = prune(tiny_cls_dir, config=WithZeroBias(zero_bias=True), out=tmp_path / "p")
    assert json.loads((out / "stage.json").read_text())["zero_bias"] == {"zeroed": 2}
    assert not load_file(str(out / "model.safetensors"))["classifier.bias"].any()
    with pytest.raises(PocketsizeError, match="nothing to prune"):
        WithZeroBias()


def test_a_new_quantization_method_is_one_config_and_one_handler(
    tiny_cls_dir, tmp_path, monkeypatch
):
    """Where things go: a method is a config type (its options) and the handler registered for
    that type; the verb, the CLI's --method and its flags pick it up with no other change."""
    from dataclasses import dataclass

    import numpy as np
    import onnx
    from onnx import numpy_helper

    from pocketsize.cli import main
    from pocketsize.export import export
    from pocketsize.options import option
    from pocketsize.quantize import api, config
    from pocketsize.quantize.config import QuantizeConfig

    @dataclass(frozen=True)
    class RoundConfig(QuantizeConfig):
        """Weights rounded to float16's precision, stored as float32."""

        method = "round16"
        keep_bias: bool = option(False, "leave 1-D initializers (biases) as they are")

    def write(job, cfg, dst):
        model = onnx.load(str(job.onnx_file))
        for init in model.graph.initializer:
            array = numpy_helper.to_array(init)
            if array.dtype == np.float32 and not (cfg.keep_bias and array.ndim == 1):
                init.CopyFrom(
                    numpy_helper.from_array(array.astype(np.float16).astype(np.float32), init.name)
                )
        onnx.save(model, str(dst))
        return {"quantization": {"method": "round16", "keep_bias": cfg.keep_bias}}

    monkeypatch.setitem(config.METHODS, "round16", RoundConfig)  # (taken out afterwards)
    monkeypatch.setitem(api.HANDLERS, RoundConfig, None)
    api.register_handler(RoundConfig, api.onnx_method(write))
    onnx_dir = export(tiny_cls_dir, tmp_path / "onnx", optimize=False)
    out = api.quantize(onnx_dir, method="round16", keep_bias=True, out=tmp_path / "q")
    manifest = json.loads((out / "stage.json").read_text())
    assert manifest["quantization"] == {"method": "round16", "keep_bias": True}
    weights = {
        i.name: numpy_helper.to_array(i)
        for i in onnx.load(str(out / "model_quantized.onnx")).graph.initializer
    }
    matrices = [w for w in weights.values() if w.ndim == 2 and w.dtype == np.float32]
    assert matrices and all((w == w.astype(np.float16).astype(np.float32)).all() for w in matrices)
    # the CLI: --method round16 and its flag are generated; another method's flag is refused
    assert (
        main(
            [
                "quantize",
                "--model",
                str(onnx_dir),
                "--out",
                str(tmp_path / "c"),
                "--method",
                "round16",
                "--keep-bias",
            ]
        )
        == 0
    )
    with pytest.raises(PocketsizeError, match="keep_bias applies to method round16, not dynamic"):
        api.quantize(onnx_dir, keep_bias=True, out=tmp_path / "d")


def test_a_new_exporter_is_one_registered_class_and_auto_falls_back_past_a_failing_one(
    tiny_cls_dir, tmp_path, monkeypatch
):
    from pocketsize.export import exporters, read_record
    from pocketsize.export.onnx_export import export

    class Failing(exporters.Exporter):
        name = "failing"

        def supports(self, source):
            return source.model_type == "bert"

        def write(self, source, dest):
            (dest / "half-written.onnx").write_bytes(b"\0")
            raise RuntimeError("cannot")

    monkeypatch.setattr(exporters, "EXPORTERS", {"torch": exporters.EXPORTERS["torch"]})
    exporters.register_exporter(Failing())
    assert list(exporters.EXPORTERS) == ["failing", "torch"]  # torch.onnx stays the last resort
    out = export(tiny_cls_dir, tmp_path / "auto", optimize=False)
    manifest = read_record(out)
    assert manifest["exporter"] == "torch" and manifest["failing_failed"] == "RuntimeError: cannot"
    assert not (out / "half-written.onnx").exists()
    with pytest.raises(
        PocketsizeError, match=r"failing's exporter failed \(RuntimeError: cannot\)"
    ):
        export(tiny_cls_dir, tmp_path / "asked", exporter="failing")
    assert not (tmp_path / "asked").exists()


def test_a_new_runtime_is_one_registered_class(tiny_cls_dir, tiny_cls_data, tmp_path, monkeypatch):
    """A toy inference engine (a bag of embeddings in a .npz file) evaluated beside PyTorch:
    one Runtime class, registered; eval, the size figures and the report ask the registry."""
    import numpy as np
    import torch

    from pocketsize.eval import evaluate
    from pocketsize.formats.model_dir import load_model_dir
    from pocketsize.formats.side_files import copy_model_side_files
    from pocketsize.runtime import registry

    teacher = load_model_dir(tiny_cls_dir, _auto_classifier())
    table = teacher.get_input_embeddings().weight.detach().numpy()
    head = torch.nn.init.normal_(
        torch.empty(table.shape[1], 2), generator=torch.Generator()
    ).numpy()
    toy = tmp_path / "toy"
    toy.mkdir()
    np.savez(toy / "model.npz", table=table, head=head)
    copy_model_side_files(tiny_cls_dir, toy)  # config (labels) and tokenizer

    class BagRunner:
        runs_on = "numpy"

        def __init__(self, path):
            weights = np.load(path)
            self.table, self.head = weights["table"], weights["head"]

        def prepare(self, batch):
            return batch

        def forward(self, batch):
            mask = batch["attention_mask"][..., None]
            mean = (self.table[batch["input_ids"]] * mask).sum(1) / mask.sum(1)
            return {"logits": mean @ self.head}

        def run(self, batch):
            return self.forward(batch)

    class NumpyRuntime(registry.Runtime):
        kind = "npz"

        def detect(self, path):
            return path.is_dir() and (path / "model.npz").is_file()

        def runner(self, variant, task, threads, placement=None):
            return BagRunner(variant.path / "model.npz")

        def weight_files(self, variant):
            return [variant.path / "model.npz"]

        def param_count(self, variant, model=None):
            return int(table.size + head.size)

    monkeypatch.setattr(registry, "RUNTIMES", dict(registry.RUNTIMES))
    registry.register_runtime(NumpyRuntime())
    report = evaluate(
        {"teacher": tiny_cls_dir, "toy": toy}, tiny_cls_data, split="test", latency=False,
        memory=False,
    )  # fmt: skip
    figures = report.metrics["variants"]["toy"]
    assert (figures["kind"], figures["runs_on"], figures["params"]) == (
        "npz", "numpy", table.size + head.size,
    )  # fmt: skip
    assert figures["size_bytes"] >= (toy / "model.npz").stat().st_size
    assert 0 <= figures["agreement"] <= 1 and "accuracy" in figures["metrics"]


def _auto_classifier():
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification


def test_the_task_is_resolved_in_one_order_and_never_guessed(tmp_path):
    """Given > the model's record > the data's columns; a model and data that disagree, or
    nothing that says, is refused in one line (prune used to take a text classifier)."""
    from pocketsize.prune.pruner import prune
    from pocketsize.tasks import resolve_task

    qa_dir = make_tiny_bert(tmp_path / "qa", task="extractive-qa")
    with pytest.raises(PocketsizeError, match="the model is for extractive-qa but the data is"):
        resolve_task(model=qa_dir, data=make_cls_dataset())
    cls_dir = make_tiny_bert(tmp_path / "cls")
    assert resolve_task("extractive-qa", model=cls_dir).name == "extractive-qa"
    assert resolve_task(model=cls_dir).name == "text-classification"
    assert resolve_task(data=make_cls_dataset()).name == "text-classification"
    config = json.loads((cls_dir / "config.json").read_text())
    config["architectures"] = ["BertModel"]  # a base encoder: no head, no recorded task
    (cls_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(PocketsizeError, match="cannot tell the task.*pass task="):
        resolve_task(model=cls_dir)
    with pytest.raises(PocketsizeError, match="cannot tell the task.*pass task="):
        prune(cls_dir, ffn=0.5, ffn_score="magnitude", out=tmp_path / "p")
    assert not (tmp_path / "p").exists()
