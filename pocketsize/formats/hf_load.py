"""The one way pocketsize loads a transformers config, tokenizer or model (a PyTorch
`AutoModelFor...`, optimum's `ORTModelFor...`, optimum's exporter): every load passes
`trust_remote_code` explicitly, False unless the caller passed True, and a local directory that
needs its own code is refused in one line before transformers reads it.

Why one module: transformers leaves `trust_remote_code` unset by default, and then a directory
whose config or tokenizer config names its own code (`auto_map`) makes it ask "Do you wish to
run the custom code? [y/N]" on stdin. `echo y | pocketsize predict ...` ran a file from the
model directory that way, and with no stdin the verb ended in a traceback. A call site that
calls transformers itself can forget the keyword; tests/test_trust.py fails when one does.
"""

from __future__ import annotations

import contextlib

from pocketsize.errors import PocketsizeError
from pocketsize.formats.checkpoint import TRUST_HINT, check_own_code, check_tokenizer_code

TRUST_REMOTE_HELP = (
    "run the code a model directory names for its architecture or tokenizer (auto_map in "
    "config.json or tokenizer_config.json); without it such a model is refused"
)
TRUST_MODULE_HELP = "import a module directory's class from outside pocketsize (runs that code)"


def add_trust_options(parser) -> None:
    """--trust-remote-code and --trust-module-code: every CLI verb that loads a model has both,
    as its Python function has the keywords trust_remote_code and trust_module_code."""
    parser.add_argument("--trust-remote-code", action="store_true", help=TRUST_REMOTE_HELP)
    parser.add_argument("--trust-module-code", action="store_true", help=TRUST_MODULE_HELP)


@contextlib.contextmanager
def _refusal_as_one_line(ref):
    """transformers' own refusal (for a hub id, whose files the checks cannot read here) as the
    same one line the checks give."""
    try:
        yield
    except ValueError as e:
        if "trust_remote_code" not in str(e):
            raise
        raise PocketsizeError(
            f"{ref} needs its own code (auto_map in its config or tokenizer config); {TRUST_HINT}"
        ) from e


def load_config(ref, trust_remote_code: bool = False, **kwargs):
    """`AutoConfig.from_pretrained(ref)`."""
    from transformers import AutoConfig

    check_own_code(ref, trust_remote_code)
    with _refusal_as_one_line(ref):
        return AutoConfig.from_pretrained(str(ref), trust_remote_code=trust_remote_code, **kwargs)


def load_tokenizer(ref, trust_remote_code: bool = False, **kwargs):
    """`AutoTokenizer.from_pretrained(ref)`."""
    from transformers import AutoTokenizer

    check_tokenizer_code(ref, trust_remote_code)
    with _refusal_as_one_line(ref):
        return AutoTokenizer.from_pretrained(
            str(ref), trust_remote_code=trust_remote_code, **kwargs
        )


def load_model(model_class, ref, trust_remote_code: bool = False, **kwargs):
    """`model_class.from_pretrained(ref)`: an AutoModelFor... or optimum ORTModelFor... class."""
    check_own_code(ref, trust_remote_code)
    with _refusal_as_one_line(ref):
        return model_class.from_pretrained(str(ref), trust_remote_code=trust_remote_code, **kwargs)


def optimum_export(model_dir, out, trust_remote_code: bool = False, **kwargs) -> None:
    """optimum's exporter (`main_export`), which loads the model itself."""
    from optimum.exporters.onnx import main_export

    check_own_code(model_dir, trust_remote_code)
    with _refusal_as_one_line(model_dir):
        main_export(str(model_dir), out, trust_remote_code=trust_remote_code, **kwargs)


def refuse_own_code(path, trust_remote_code: bool = False) -> None:
    """Refuse, before any work, a directory whose model or tokenizer needs its own code, for a
    verb that reads it before (or without) loading it: the same checks the loads make."""
    check_own_code(path, trust_remote_code)
    check_tokenizer_code(path, trust_remote_code)
