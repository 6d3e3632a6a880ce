"""Recipes: validation before any work, the chain of stages, skipping and resuming.

The chain runs on a tiny random BERT and tiny local data files; one e2e test runs the real
sentiment recipe shortened with --set overrides on the packaged model and data.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import make_tiny_bert, write_cls_files
from zoo import tiny_recipe

from pocketsize.errors import PocketsizeError
from pocketsize.recipe import load_recipe, run_recipe

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe")
    teacher = make_tiny_bert(root / "teacher-base", max_position_embeddings=64)
    data_dir = write_cls_files(root / "data", n_train=96, n_val=48, n_test=40)
    return root, teacher, data_dir


def test_recipe_runs_every_stage_then_skips_them(tiny_setup, tmp_path):
    root, teacher, data_dir = tiny_setup
    run_dir = tmp_path / "run"
    lines: list[str] = []
    report = run_recipe(tiny_recipe(teacher, data_dir), run_dir=run_dir, log=lines.append)

    verbs = {"teacher": "finetune", "student": "distill", "pruned": "prune", "onnx": "export"}
    verbs.update({"int8": "quantize", "optimum-int8": "baseline"})
    for stage, verb in verbs.items():
        record = json.loads((run_dir / stage / "stage.json").read_text())
        # the verb's own record, extended by the run (never replaced)
        assert (record["schema"], record["stage"], record["recipe"]["seed"]) == (1, verb, 1)
        assert record["recipe"]["fingerprint"] and record["task"] == "text-classification"
        assert (run_dir / stage / "README.md").read_text().startswith("#")
        old = ("pruning.json", "pocketsize.json", "parity.json")
        assert not [n for n in old if (run_dir / stage / n).exists()], "one record per stage"
    assert list((run_dir / "int8").glob("*.ort")), "mobile twin of the int8 model missing"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["reference"] == "teacher" and metrics["final"] == "int8"
    assert list(metrics["variants"]) == [
        "teacher", "student", "pruned", "onnx", "int8", "optimum-int8"
    ]  # fmt: skip
    baseline = json.loads((run_dir / "optimum-int8" / "stage.json").read_text())
    assert baseline["how"].startswith("optimum only")
    assert "Final 'int8' against baseline 'optimum-int8': " in (run_dir / "report.md").read_text()
    assert (run_dir / "report.md").exists() and (run_dir / "report.html").exists()
    assert report.metrics["final"] == "int8"
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".")], "leftover partials"

    lines.clear()
    run_recipe(tiny_recipe(teacher, data_dir), run_dir=run_dir, log=lines.append)
    skipped = [line for line in lines if "skipped" in line]
    assert len(skipped) == 6, lines

    # A changed distillation redoes the student and what follows, never the teacher.
    lines.clear()
    changed = tiny_recipe(teacher, data_dir, distill={"max_steps": 2, "batch_size": 16})
    run_recipe(changed, run_dir=run_dir, log=lines.append)
    assert any("[teacher]" in line and "skipped" in line for line in lines)
    assert any(line == "[student] running" for line in lines)
    assert any(line == "[int8] running" for line in lines)
    assert any("[optimum-int8]" in line and "skipped" in line for line in lines)


SEARCH = {
    "layers": [1], "heads": [0.0], "ffn": [0.0, 0.5], "embedding_bits": [8], "epochs": 0.5,
    "rungs": 2, "eta": 2, "distill_options": {"batch_size": 16},
}  # fmt: skip


def test_a_search_stage_beside_the_chain_and_alone(tiny_setup, tmp_path):
    root, teacher, data_dir = tiny_setup
    # the search within the hand-made final model's size (an unpruned layer: the search's
    # candidates with half the FFN are smaller), and a second teacher as the noise floor
    search = {**SEARCH, "max_size_mb": "final"}
    prune = {"vocab": True, "min_examples": 16}
    recipe = tiny_recipe(teacher, data_dir, search=search, prune=prune)
    recipe["teacher"] = {**recipe["teacher"], "second_seed": 2}
    # a model as it ships (PyTorch) is in the report, not on the search's figure
    recipe["eval"]["baselines"] = ["optimum-int8", str(teacher)]
    run_dir, lines = tmp_path / "run", []
    report = run_recipe(recipe, run_dir=run_dir, log=lines.append)
    assert list(report.metrics["variants"]) == [
        "teacher", "student", "pruned", "onnx", "int8", "search", "second-teacher",
        "optimum-int8", str(teacher),
    ]  # fmt: skip
    assert report.metrics["final"] == "int8"  # the hand-made chain stays the final model
    searched = json.loads((run_dir / "search" / "search.json").read_text())
    assert searched["chosen"].startswith("L1-") and len(searched["frontier"]) == 2
    # the second teacher (the recipe's fine-tuning, seed 2) is the noise floor
    second = json.loads((run_dir / "second-teacher" / "stage.json").read_text())
    assert second["stage"] == "finetune" and second["config"]["seed"] == 2
    assert 0 <= searched["budget"]["noise_floor"] <= 1
    # the final model and optimum's int8 measured beside the trials, in the report
    summary = report.metrics["search"]
    points = {r["name"]: r for r in summary["references"]}
    assert sorted(points) == ["int8 (final)", "optimum-int8"], summary["references"]
    assert list(summary["skipped_references"]) == [str(teacher)]
    for name, point in points.items():
        assert 0 <= point["agreement"] <= 1 and point["latency_ms"] > 0
        shipped = report.metrics["variants"][name.split()[0]]["size_bytes"] / 1e6
        assert point["size_mb"] == pytest.approx(shipped, abs=1e-3), name
    final = points["int8 (final)"]
    assert searched["config"]["max_size_mb"] == final["size_mb"]
    assert all(t["size_mb"] <= final["size_mb"] for t in searched["trials"])
    text = (run_dir / "report.md").read_text()
    assert "## Search: compress to a target" in text and "| reference: int8 (final) |" in text
    assert (run_dir / "search.png").read_bytes().startswith(b"\x89PNG")
    assert (run_dir / "search" / "trials.jsonl").is_file()
    assert json.loads((run_dir / "search" / "stage.json").read_text())["recipe"]["seed"] == 1
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".")], "leftover partials"
    lines.clear()
    run_recipe(recipe, run_dir=run_dir, log=lines.append)
    assert any("[search]" in line and "skipped" in line for line in lines)
    # a recipe whose only stage is the search: the searched model is the final one
    alone = {k: v for k, v in recipe.items() if k not in ("student", "distill", "prune",
                                                          "export", "quantize")}  # fmt: skip
    with pytest.raises(PocketsizeError, match="search.max_size_mb: final takes the chain's"):
        run_recipe(alone, run_dir=tmp_path / "x")
    alone["search"] = SEARCH
    report = run_recipe(alone, run_dir=tmp_path / "alone", log=lines.append)
    assert report.metrics["final"] == "search"
    with pytest.raises(PocketsizeError, match="recipe key search.seed is set by the recipe"):
        run_recipe({**alone, "search": {**SEARCH, "seed": 3}}, run_dir=tmp_path / "x")


def test_recovery_toward_the_recipe_teacher(tiny_setup, tmp_path):
    root, teacher, data_dir = tiny_setup
    run_dir = tmp_path / "run"
    prune = {
        "heads": 0.5, "min_examples": 16, "recover": True, "recover_teacher": "teacher",
        "recover_options": {"max_steps": 2, "batch_size": 16},
    }  # fmt: skip
    recipe = tiny_recipe(teacher, data_dir, prune=prune, eval={"latency": False, "memory": False})
    for key in ("export", "quantize"):
        recipe.pop(key)
    run_recipe(recipe, run_dir=run_dir, log=lambda _: None)
    record = json.loads((run_dir / "pruned" / "stage.json").read_text())
    assert record["recovery"]["teacher"] == str(run_dir / "teacher")
    # the stage's fingerprint holds the name, not the path: a moved run directory still skips
    moved = tmp_path / "moved"
    run_dir.rename(moved)
    lines: list[str] = []
    run_recipe(recipe, run_dir=moved, log=lines.append)
    assert any("[pruned]" in line and "skipped" in line for line in lines), lines


def test_more_students_beside_the_chain_are_variants_of_one_report(tiny_setup, tmp_path):
    """`students:` distils another student of the same teacher, with the recipe's distill
    under its own keys, and runs only the later stages it names; a rerun skips it, and a
    change to it redoes it alone."""
    root, teacher, data_dir = tiny_setup
    run_dir = tmp_path / "run"
    students = {"wide": {"student": {"init": "truncate", "layers": [0, 1]},
                         "distill": {"max_steps": 2}, "export": {}}}  # fmt: skip
    recipe = tiny_recipe(teacher, data_dir, students=students)
    recipe["eval"] = {**recipe["eval"], "baselines": []}
    run_recipe(recipe, run_dir=run_dir, log=lambda _: None)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert list(metrics["variants"]) == ["teacher", "student", "pruned", "onnx", "int8", "wide", "wide-onnx"]  # fmt: skip
    assert metrics["final"] == "int8"
    record = json.loads((run_dir / "wide" / "stage.json").read_text())
    assert record["stage"] == "distill" and record["config"]["max_steps"] == 2
    assert record["config"]["batch_size"] == 16  # the recipe's distill, under the entry's keys
    assert json.loads((run_dir / "wide" / "config.json").read_text())["num_hidden_layers"] == 2
    assert record["recipe"]["inputs"]["teacher"]["path"] == str(run_dir / "teacher")
    onnx_record = json.loads((run_dir / "wide-onnx" / "stage.json").read_text())
    assert onnx_record["recipe"]["inputs"]["wide"]["path"] == str(run_dir / "wide")
    assert not (run_dir / "wide-int8").exists() and not (run_dir / "wide-pruned").exists()

    lines: list[str] = []
    students["wide"]["distill"] = {"max_steps": 3}
    run_recipe(recipe, run_dir=run_dir, log=lines.append)
    ran = [line for line in lines if line.endswith("running")]
    assert ran == ["[wide] running", "[wide-onnx] running"], ran


def test_interrupted_stage_leaves_no_half_output_and_resumes(tiny_setup, tmp_path):
    from transformers import TrainerCallback

    root, teacher, data_dir = tiny_setup
    run_dir = tmp_path / "run"

    class KillAtStep2(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 2:
                raise KeyboardInterrupt

    recipe = tiny_recipe(
        teacher,
        data_dir,
        distill={"max_steps": 4, "batch_size": 16, "save_steps": 1},
        prune=None,
        export=None,
        quantize=None,
    )
    for key in ("prune", "export", "quantize"):
        recipe.pop(key)
    killing = {**recipe, "distill": {**recipe["distill"], "callbacks": [KillAtStep2()]}}
    with pytest.raises(KeyboardInterrupt):
        run_recipe(killing, run_dir=run_dir, log=lambda _: None)
    assert (run_dir / "teacher" / "stage.json").exists()
    assert not (run_dir / "student").exists(), "an interrupted stage must not appear finished"
    checkpoints = list(run_dir.glob("..student.partial.checkpoints/checkpoint-*"))
    assert checkpoints, "the killed Trainer stage should leave checkpoints to resume from"

    lines: list[str] = []
    run_recipe(recipe, run_dir=run_dir, log=lines.append)
    assert any("[teacher]" in line and "skipped" in line for line in lines)
    record = json.loads((run_dir / "student" / "stage.json").read_text())
    assert record["stage"] == "distill" and record["recipe"]["fingerprint"]
    assert record["resumed_from"], "the rerun should continue from the checkpoint"
    assert not list(run_dir.glob("..student.partial*")), "checkpoints of a finished stage remain"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"epochs": 3}, "recipe key 'epochs' is unknown"),
        ({"name": None}, "missing the required key 'name'"),
        (
            {"distill": {"epochz": 1}},
            "distill.epochz is unknown; did you mean 'epochs'\\? allowed keys:",
        ),
        ({"distill": {"epochs": "two"}}, "distill.epochs: expected float"),  # 0.5 epochs is fine
        (
            {"distill": {"bf16": 1}},
            "distill.bf16: expected 'auto' or 'on' or 'off'",
        ),  # or true/false
        ({"distill": {"out": "x"}}, "set by the recipe itself"),
        ({"student": None}, "has `distill` but no `student`"),
        ({"export": None}, "quantize needs the export stage"),
        ({"teacher": {"model": "m", "epochs": 1}}, "teacher.epochs is unknown"),
        ({"task": "summarise"}, "unknown task 'summarise'"),
        ({"eval": {"reference": "int9"}}, "eval.reference: 'int9' is not a stage"),
        ({"eval": {"baselines": ["onnx-int3"]}}, "'onnx-int3' is neither a baseline tool"),
        ({"eval": {"baselines": ["int3:minilm-l6"]}}, "unknown baseline tool 'int3'"),
        ({"eval": {"baselines": "optimum-int8"}}, "eval.baselines: expected a list"),
        ({"eval": {"label_map": "0:negative"}}, "eval.label_map: --label-map '0:negative'"),
        ({"name": "a/b"}, "must use only letters"),
        ({"student": {"init": "truncate", "layerz": [0]}}, "no option layerz"),
        (
            {"teacher": {"model": "m", "finetune": {}, "second_seed": 1}},
            "teacher.second_seed is the run's seed \\(1\\): the second teacher would be",
        ),
        ({"teacher": {"model": "m", "second_seed": 3}}, "second_seed fine-tunes the teacher"),
        ({"search": {"max_latency_ms": "fast"}}, "search.max_latency_ms: expected float"),
        ({"search": {"max_size_mb": -1}}, "search.max_size_mb: must be above 0"),
        ({"students": {"six": {"distill": {}}}}, "students.six needs `student`"),
        (
            {"students": {"six": {"student": {"init": "truncate"}, "eval": {}}}},
            "students.six.eval is unknown; allowed keys: student, distill, prune",
        ),
        (
            {"students": {"onnx": {"student": {"init": "truncate"}}}},
            "students.onnx: its stages onnx would take the name of another stage",
        ),
        (
            {"students": {"six": {"student": {"init": "truncate"}, "quantize": {}}}},
            "students.six: recipe stage quantize needs the export stage",
        ),
        (
            {"students": {"six": {"student": {"init": "truncate"}, "distill": {"epochz": 1}}}},
            "students.six: recipe key distill.epochz is unknown",
        ),
        ({"students": {"a/b": {"student": {"init": "truncate"}}}}, "use only letters"),
        ({"students": ["six"]}, "recipe key students: expected a mapping"),
    ],
)
def test_recipe_validation_names_key_value_and_fix(tiny_setup, change, message):
    root, teacher, data_dir = tiny_setup
    recipe = tiny_recipe(teacher, data_dir)
    for key, value in change.items():
        if value is None:
            recipe.pop(key)
        else:
            recipe[key] = value
    if "name" in change and change["name"] is None:
        recipe["name"] = None
    with pytest.raises(PocketsizeError, match=message):
        load_recipe(recipe)


def test_overrides_and_run_dir_of_another_recipe(tiny_setup, tmp_path):
    root, teacher, data_dir = tiny_setup
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe(teacher, data_dir)))
    recipe = load_recipe(path, ["distill.max_steps=7", "quantize.mobile=false"])
    assert recipe["distill"]["max_steps"] == 7 and recipe["quantize"]["mobile"] is False
    # an option of another quantization method is named with the method that takes it
    with pytest.raises(PocketsizeError, match="quantize.max_drop applies to method auto, not dy"):
        load_recipe(path, ["quantize.max_drop=0.02"])
    recipe = load_recipe(path, ["quantize.method=auto", "quantize.max_drop=0.02"])
    assert recipe["quantize"] == {"method": "auto", "mobile": True, "max_drop": 0.02}
    with pytest.raises(PocketsizeError, match="key.sub=value"):
        load_recipe(path, ["distill.max_steps"])

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "recipe.yaml").write_text(yaml.safe_dump({"name": "other"}))
    (run_dir / "keep.txt").write_text("finished work")
    with pytest.raises(PocketsizeError, match="belongs to recipe 'other'"):
        run_recipe(path, run_dir=run_dir, log=lambda _: None)
    assert (run_dir / "keep.txt").read_text() == "finished work"


def test_a_second_run_on_a_busy_run_directory_is_refused_at_once(tiny_setup, tmp_path):
    """Two `pocketsize run` on one --run-dir crashed mid-distillation, both writing the same
    partial stages; now the second is refused before any work, and the first is untouched."""
    import subprocess
    import sys

    from pocketsize.fsutil import locked_dir

    root, teacher, data_dir = tiny_setup
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe(teacher, data_dir)))
    run_dir = tmp_path / "run"
    with locked_dir(run_dir, "held"):  # as a first run holds it
        with pytest.raises(PocketsizeError, match="is in use by another pocketsize run.*--run-dir"):
            run_recipe(path, run_dir=run_dir, log=lambda _: None)
        # and from another process, through the CLI: one line, exit 2
        cli = [sys.executable, "-m", "pocketsize", "run", str(path), "--run-dir", str(run_dir)]
        done = subprocess.run(cli, capture_output=True, text=True, timeout=300)
        assert done.returncode == 2 and "is in use by another pocketsize run" in done.stderr
        assert "Traceback" not in done.stderr
    assert list(run_dir.iterdir()) == [], "the refused runs wrote nothing"


def test_shipped_recipes_are_valid():
    for path in sorted((REPO / "recipes").glob("*.yaml")):
        load_recipe(path)


def test_the_search_recipe_is_the_main_job_plus_a_search():
    """recipes/sentiment-search.yaml restates the main job's chain: it may add the search and
    the second teacher, never drift from the chain the search is measured against."""
    main = load_recipe(REPO / "recipes" / "sentiment.yaml")
    searched = load_recipe(REPO / "recipes" / "sentiment-search.yaml")
    assert searched.pop("search")["max_latency_ms"] == "final"
    assert searched["teacher"].pop("second_seed") not in (42, 1, 2)
    assert {**searched, "name": "sentiment"} == main


@pytest.mark.e2e
def test_sentiment_recipe_shortened_on_the_real_model(tmp_path):
    """The main job's recipe, end to end on minilm-l6 and rt-polarity, cut to a few steps."""
    overrides = [
        "teacher.finetune.max_steps=6",
        "distill.max_steps=4",
        "prune.recover=false",
        "prune.recover_teacher=null",
        "prune.max_examples=64",
        "quantize.method=dynamic",  # auto's budget keys go (null: unset)
        "quantize.max_drop=null",
        "quantize.max_size_mb=null",
        "eval.max_examples=96",
        "eval.latency_examples=16",
        "eval.repeats=1",
        "eval.memory=false",
    ]
    run_recipe(REPO / "recipes" / "sentiment.yaml", tmp_path / "run", overrides, log=print)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["final"] == "int8"
    sizes = {name: v["size_bytes"] for name, v in metrics["variants"].items()}
    assert sizes["int8"] * 5 < sizes["teacher"], sizes
    assert metrics["baselines"] == ["optimum-int8"] and sizes["optimum-int8"] > sizes["int8"]
    pruned = json.loads((tmp_path / "run" / "pruned" / "stage.json").read_text())
    assert pruned["width"]["hidden_size_after"] == 256
