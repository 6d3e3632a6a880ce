"""One surface for `evaluate`: its options are EvalConfig's fields, and the Python keywords and
the `pocketsize eval` flags come from it with the same names and defaults; bad values are
refused in one line before any work; the CLI's older `--batch-sizes 1,32` still works."""

from __future__ import annotations

import dataclasses
import inspect
import json

import pytest
from conftest import make_cls_dataset

from pocketsize.errors import PocketsizeError
from pocketsize.eval.config import EvalConfig
from pocketsize.options import _shown, flag_of, from_args

pytestmark = pytest.mark.usefixtures("single_thread")

# what every `pocketsize eval` needs besides its options (nothing here is read before a refusal)
REQUIRED = ["--model", "m=no-such-model", "--data", "no-such-data", "--out", "o"]
# the verb's own keywords: what is evaluated and how the run behaves, no EvalConfig field
VERB_KEYWORDS = {"config", "task", "final", "progress", "trust_module_code", "trust_remote_code"}


def _subparser():
    from pocketsize.cli import build_parser

    parser = build_parser()
    action = next(a for a in parser._actions if hasattr(a, "choices") and a.choices)
    return action.choices["eval"]


def _default(field):
    if field.default is not dataclasses.MISSING:
        return field.default
    return field.default_factory()


def _as_text(value) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [str(value)]


def test_every_field_is_a_keyword_only_parameter_and_a_flag_with_one_default():
    from pocketsize.eval import evaluate

    params = inspect.signature(evaluate).parameters
    sub = _subparser()
    flags = {s: a for a in sub._actions for s in a.option_strings}
    assert from_args(EvalConfig, sub.parse_args(REQUIRED)) == EvalConfig()
    for field in dataclasses.fields(EvalConfig):
        default = _default(field)
        # Python: a keyword-only parameter of evaluate, with the config's default
        param = params[field.name]
        assert param.kind is param.KEYWORD_ONLY and param.default == default, field.name
        # CLI: --name-with-dashes, whose help shows the default
        flag = flag_of(field)
        assert flag == "--" + field.name.replace("_", "-") and flag in flags, field.name
        shown = flags[flag].help
        if "(default:" in field.metadata["help"]:  # a help that explains its default
            assert "(default: " in shown, field.name
        else:
            assert f"(default: {_shown(default)})" in shown, field.name
        # ... and whose default, typed back, is the same config
        if isinstance(default, bool):
            for text, value in ((flag, True), (f"--no-{flag[2:]}", False)):
                given = from_args(EvalConfig, sub.parse_args(REQUIRED + [text]))
                assert getattr(given, field.name) is value, field.name
        elif default not in (None, []):
            given = sub.parse_args(REQUIRED + [flag, *_as_text(default)])
            assert from_args(EvalConfig, given) == EvalConfig(), field.name
    # the verb's own keywords are no config field, and take no flag of the config's group
    assert VERB_KEYWORDS <= set(params) and not VERB_KEYWORDS & set(EvalConfig.names())
    positional = [n for n, p in params.items() if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert positional == ["variants", "dataset"]
    assert set(params) == {"variants", "dataset"} | VERB_KEYWORDS | set(EvalConfig.names())


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--batch-sizes", "0"], "eval option batch_sizes: must be one or more sizes, each at least 1, not [0]"),
        (["--batch-sizes", "1,0"], "eval option batch_sizes: must be one or more sizes, each at least 1, not [1, 0]"),
        (["--batch-sizes", "1,x"], "eval option batch_sizes: expected whole numbers"),
        (["--repeats", "0"], "eval option repeats: must be at least 1, not 0"),
        (["--threads", "0"], "eval option threads: must be at least 1, not 0"),
        (["--latency-examples", "0"], "eval option latency_examples: must be at least 1, not 0"),
        (["--max-examples", "-2"], "eval option max_examples: must be at least 1, not -2"),
        (["--bootstrap-samples", "0"], "eval option bootstrap_samples: must be at least 1"),
        (["--eval-batch-size", "0"], "eval option eval_batch_size: must be at least 1, not 0"),
        (["--warmup", "-1"], "eval option warmup: must be at least 0, not -1"),
        (["--max-length", "0"], "eval option max_length: must be at least 1, not 0"),
        (["--label-map", "0:negative"], "--label-map '0:negative': expected DATA=MODEL pairs"),
    ],
)  # fmt: skip
def test_a_bad_value_is_refused_by_the_cli_in_one_line_before_any_work(
    flags, message, tmp_path, capsys, monkeypatch
):
    import pocketsize.data
    from pocketsize.cli import main

    def no_work(*args, **kwargs):
        raise AssertionError("the data was read before the options were checked")

    monkeypatch.setattr(pocketsize.data, "load_dataset", no_work)
    out = tmp_path / "out"
    argv = ["eval", "--model", "m=no-such-model", "--data", "no-such-data", "--out", str(out)]
    assert main(argv + flags) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pocketsize: error: ") and message in err, err
    assert len(err.splitlines()) == 1 and not out.exists()


@pytest.mark.parametrize(
    "options, message",
    [
        ({"batch_sizes": [0]}, r"^eval option batch_sizes: must be one or more sizes"),
        ({"batch_sizes": ()}, r"^eval option batch_sizes: must be one or more sizes"),
        ({"repeats": 0}, r"^eval option repeats: must be at least 1, not 0 \(--repeats"),
        ({"threads": 0}, r"^eval option threads: must be at least 1, not 0"),
        ({"device": "gpu"}, r"^eval option device: expected 'cpu' or 'cuda' or 'auto'"),
        ({"latency": "no"}, r"^eval option latency: expected bool, got 'no'"),
        ({"repeat": 3}, r"unknown option 'repeat'; did you mean 'repeats'"),
        ({"config": "fast"}, r"config= takes a EvalConfig, not str"),
    ],
)
def test_a_bad_value_is_refused_by_python_before_any_work(options, message):
    from pocketsize.eval import evaluate

    # neither the model nor the data exists: reading either would fail with another message
    with pytest.raises(PocketsizeError, match=message) as e:
        evaluate({"m": "no-such-model"}, "no-such-data", **options)
    assert "\n" not in str(e.value)


def test_batch_sizes_take_a_list_or_the_older_comma_form():
    sub = _subparser()
    for typed in (["1", "32"], ["1,32"], ["1,", "32"]):
        args = sub.parse_args(REQUIRED + ["--batch-sizes", *typed])
        assert from_args(EvalConfig, args).batch_sizes == [1, 32], typed
    args = sub.parse_args(REQUIRED + ["--batch-sizes", "1,4", "16"])
    assert from_args(EvalConfig, args).batch_sizes == [1, 4, 16]
    for given in ((1, 32), [1, 32], "1,32", ["1", "32"]):
        assert EvalConfig(batch_sizes=given).batch_sizes == [1, 32], given
    assert EvalConfig.build(EvalConfig(repeats=5), batch_sizes=8) == EvalConfig(
        repeats=5, batch_sizes=[8]
    )
    # a label map typed on the CLI and one given from Python are the same option
    args = sub.parse_args(REQUIRED + ["--label-map", "0=negative,1=positive"])
    assert from_args(EvalConfig, args) == EvalConfig(label_map={0: "negative", 1: "positive"})


def test_a_tiny_evaluation_through_the_cli_writes_metrics_with_the_options_given(
    tiny_cls_dir, tmp_path, capsys
):
    from pocketsize.cli import main

    data = tmp_path / "data"
    make_cls_dataset(n_train=8, n_val=4, n_test=12).save_to_disk(str(data))
    out = tmp_path / "report"
    argv = ["eval", "--model", f"a={tiny_cls_dir}", "--model", f"b={tiny_cls_dir}",
            "--data", str(data), "--out", str(out), "--reference", "b", "--threads", "1",
            "--batch-sizes", "2,1", "--latency-examples", "4", "--repeats", "1", "--warmup", "0",
            "--no-memory", "--bootstrap-samples", "50", "--seed", "3", "--eval-batch-size", "4",
            "--max-examples", "10", "--max-length", "16"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    settings = metrics["settings"]
    assert metrics["reference"] == "b" and metrics["final"] is None
    assert settings["examples"] == 10 and settings["split"] == "test"
    assert settings["batch_sizes"] == [1, 2] and settings["threads"] == 1
    assert settings["eval_batch_size"] == 4 and settings["max_length"] == 16
    assert settings["latency"]["measured"] and settings["latency"]["repeats"] == 1
    assert settings["latency"]["warmup_calls"] == 0 and settings["latency"]["inputs_timed"] == 4
    assert settings["bootstrap"] == {"samples": 50, "confidence": 0.95, "seed": 3}
    assert not settings["memory"]["measured"] and "memory" not in metrics["variants"]["a"]
    assert set(metrics["variants"]["a"]["latency_ms"]) == {"1", "2"}
    # the same model twice: full agreement
    assert metrics["variants"]["a"]["agreement"] == 1.0
