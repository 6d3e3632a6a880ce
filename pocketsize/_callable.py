"""Let `ps.prune(...)` work whether or not `pocketsize.prune` the package was imported.

Importing a submodule binds `pocketsize.<stage>` to the package, which would shadow the lazily
exported function of the same name (`ps.distill`, `ps.prune`, `ps.export`, `ps.quantize`).
Each stage package therefore makes itself callable, forwarding to its verb.
"""

from __future__ import annotations

import inspect
import sys
import types
from collections.abc import Callable


def make_package_callable(package: str, verb: Callable) -> None:
    class _CallablePackage(types.ModuleType):
        def __call__(self, *args, **kwargs):
            return verb(*args, **kwargs)

    module = sys.modules[package]
    module.__class__ = _CallablePackage
    module.__signature__ = inspect.signature(verb)
