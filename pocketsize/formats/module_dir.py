"""Non-transformers PyTorch models (the BiLSTM student, user modules): one directory format.

    config.json        {"pocketsize_class": "package.module:Class",
                        "module_config": {...}, "module_init": "kwargs" | "dict",
                        "num_labels": N, "id2label": {...}, "label2id": {...}, ...}
    model.safetensors  the state dict
    tokenizer files    when the model reads token ids

Loading imports the named class, builds it from `module_config` (as keyword arguments, or as
one config dict for classes that take their config that way; decided and recorded at save
time) and loads the tensors: never pickles, never code from the directory itself. pocketsize's
own classes and classes registered with `register_module` load as they are; any other class
only with trust_module_code=True (like transformers' trust_remote_code), since importing a
module named in a file runs its code. Directories of pocketsize 0.1 (`pocketsize_module`, a
registry name; or `pocketsize_class` with the config flat in config.json) still load.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import os
from pathlib import Path
from typing import Any

from pocketsize.errors import PocketsizeError

CLASS_KEY = "pocketsize_class"
LEGACY_REGISTRY_KEY = "pocketsize_module"
# Descriptive keys copied from the module's config to the top level of config.json, where the
# stages read them as they read a transformers config (labels, vocabulary size, model type).
DESCRIPTIVE_KEYS = ("num_labels", "id2label", "label2id", "vocab_size", "model_type")
MODULES: dict[str, type] = {}  # registered classes by name: trusted, and loadable by that name
# pocketsize 0.1 registry names of the built-in example models -> their module
BUILTIN_NAMES = {"digits-cnn": "pocketsize.zoo.digits", "digits-mlp": "pocketsize.zoo.digits"}


def register_module(name: str | None = None, cls: type | None = None):
    """Register an nn.Module class (usable as a class decorator): its directories then load
    without trust_module_code. The class keeps its constructor arguments in `self.config`."""

    def add(c):
        MODULES[name or class_path(c)] = c
        c.pocketsize_name = name or class_path(c)
        return c

    return add(cls) if cls is not None else add


def class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def is_module_dir(path) -> bool:
    if not isinstance(path, (str, os.PathLike)):
        return False
    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    try:
        keys = json.loads(config.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(keys, dict) and (CLASS_KEY in keys or LEGACY_REGISTRY_KEY in keys)


def module_config(model) -> dict[str, Any]:
    """The constructor configuration a module keeps in `self.config` (a dict or a dataclass)."""
    config = getattr(model, "config", None)
    if dataclasses.is_dataclass(config):
        return dataclasses.asdict(config)
    if hasattr(config, "to_dict"):
        return dict(config.to_dict())
    return dict(config) if isinstance(config, dict) else {}


def init_style(cls: type, config: dict) -> str:
    """How `cls` is rebuilt from `config`: "kwargs" (cls(**config)) or "dict" (cls(config)).

    Raises when neither binds, so a model that could not be loaded again is refused before
    anything is trained or written.
    """
    if "<locals>" in cls.__qualname__:
        raise PocketsizeError(
            f"{cls.__qualname__} is defined inside a function, so it cannot be imported again; "
            "define the class at module level"
        )
    signature = inspect.signature(cls)
    for style, args, kwargs in (("kwargs", (), config), ("dict", (config,), {})):
        try:
            signature.bind(*args, **kwargs)
            return style
        except TypeError:
            continue
    raise PocketsizeError(
        f"{cls.__name__} is not a registered module that pocketsize can rebuild: keep its "
        "constructor arguments in self.config (a dict) and register the class with "
        "@register_module"
    )


def save_module_dir(
    model, out_dir, tokenizer=None, labels: list[str] | None = None, task: str | None = None
) -> Path:
    """Write config.json (class, constructor configuration, labels, the task it was trained
    for) + model.safetensors (+ the tokenizer's files)."""
    from safetensors.torch import save_model

    cls = type(model)
    config = module_config(model)
    record: dict[str, Any] = {
        CLASS_KEY: class_path(cls),
        "module_config": config,
        "module_init": init_style(cls, config),
    }
    record.update({k: config[k] for k in DESCRIPTIVE_KEYS if k in config})
    if task is not None:
        record["task"] = task
    if labels is not None:
        record["id2label"] = {str(i): str(n) for i, n in enumerate(labels)}
        record["label2id"] = {str(n): i for i, n in enumerate(labels)}
        record["num_labels"] = len(labels)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    save_model(model, str(out_dir / "model.safetensors"))
    if tokenizer is not None:
        tokenizer.save_pretrained(out_dir)
    return out_dir


def load_module_dir(path, trust_module_code: bool = False):
    """Rebuild the module a directory names and load its safetensors weights (eval mode)."""
    from safetensors.torch import load_model
    from torch import nn

    path = Path(path)
    if not is_module_dir(path):
        raise PocketsizeError(
            f"{path} is not a pocketsize module directory (no config.json with {CLASS_KEY}); "
            "save the model with save_module_dir"
        )
    record = json.loads((path / "config.json").read_text())
    cls, config, style = _class_and_config(path, record, trust_module_code)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise PocketsizeError(
            f"{path}: {record.get(CLASS_KEY)} is not a torch.nn.Module class; refusing to call it"
        )
    try:
        model = cls(**config) if style == "kwargs" else cls(config)
        load_model(model, str(path / "model.safetensors"))
    except (TypeError, RuntimeError, ValueError) as e:
        raise PocketsizeError(
            f"cannot rebuild {cls.__name__} from {path} ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:160]}); the weights or the config do not match the class"
        ) from None
    return model.eval()


def _class_and_config(path: Path, record: dict, trust: bool) -> tuple[type, dict, str]:
    if LEGACY_REGISTRY_KEY in record:  # pocketsize 0.1: a registry name
        name = record[LEGACY_REGISTRY_KEY]
        if name in BUILTIN_NAMES and name not in MODULES:
            importlib.import_module(BUILTIN_NAMES[name])
        if name not in MODULES:
            raise PocketsizeError(
                f"{path} holds a {name!r} module but no class is registered under that name "
                f"(known: {', '.join(sorted(MODULES))}); import the code that registers it first"
            )
        return MODULES[name], record.get("module_config", {}), "kwargs"
    target = record[CLASS_KEY]
    module_name, _, qualname = target.partition(":")
    registered = any(class_path(c) == target for c in MODULES.values())
    trusted = trust or registered
    if not (trusted or _is_own(module_name)):
        # importing a module runs its code: refused before the import
        raise _untrusted(path, target)
    try:
        cls = importlib.import_module(module_name)
        for part in qualname.split("."):
            cls = getattr(cls, part)
    except (ImportError, AttributeError) as e:
        raise PocketsizeError(
            f"cannot import {target} to load {path}; install the package that defines it"
        ) from e
    # An attribute path can leave pocketsize ("pocketsize.distill.bilstm:nn.Linear" is
    # torch's Linear): what counts is the module the class itself is defined in.
    defined_in = getattr(cls, "__module__", None) or ""
    if not (trusted or _is_own(defined_in) or cls in MODULES.values()):
        raise _untrusted(path, f"{target}, defined in {defined_in},")
    if "module_config" in record:
        return cls, record["module_config"], record.get("module_init", "kwargs")
    # pocketsize 0.1: the constructor's config dict flat in config.json
    return cls, {k: v for k, v in record.items() if k != CLASS_KEY}, "dict"


def _is_own(module_name: str) -> bool:
    return module_name == "pocketsize" or module_name.startswith("pocketsize.")


def _untrusted(path: Path, what: str) -> PocketsizeError:
    return PocketsizeError(
        f"{path} names the class {what} outside pocketsize; pass trust_module_code=True "
        "(CLI: --trust-module-code) to import it if you trust that code"
    )


def saved_task(config: dict) -> str | None:
    """The task a module directory's config.json records (pocketsize 0.1 recorded none: its
    registry modules were array classifiers, its other modules text classifiers)."""
    if config.get("task"):
        return config["task"]
    if LEGACY_REGISTRY_KEY in config:
        return "array-classification"
    if CLASS_KEY in config and config.get("id2label"):
        return "text-classification"
    return None
