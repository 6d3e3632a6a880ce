"""Typed stage configs: one frozen dataclass per stage, from which the Python keywords, the CLI
flags and the recipe keys are all made, with one name, one default, one range check and one
help text.

    @dataclass(frozen=True)
    class DistillConfig(TrainingConfig):
        temperature: float = option(2.0, "softmax temperature of the soft targets", above(0))

A config checks itself when it is built (types, ranges, contradictions), so a bad value is
refused in one line before any work, wherever it came from: `Config.build(**keywords)` for the
Python verbs, `Config.from_mapping(section, where)` for a recipe, `add_arguments(parser, Config)`
and `from_args(Config, args)` for the CLI.

Why dataclasses and a small argparse generator instead of a library: pydantic is not among
pocketsize's dependencies and its multi-line errors would be rewritten into one line anyway;
transformers' HfArgumentParser does the same field -> flag mapping but importing it costs ~5 s
(it imports torch; `pocketsize --help` would pay that on every call) and it writes the resolved
type into the dataclass's own Field objects; tyro and jsonargparse want to own the whole parser,
while pocketsize's CLI has verbs (run, fetch, predict) that are no stage config. What is left by
hand is the ~40 lines of `add_arguments`.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import sys
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from pocketsize.errors import PocketsizeError

# --------------------------------------------------------------------------- declaring options


@dataclass(frozen=True)
class Check:
    """A range check: `test(value)` is true for a good value; `says` completes "must be ..."."""

    test: Callable[[Any], bool]
    says: str


def at_least(low) -> Check:
    return Check(lambda v: v >= low, f"at least {low}")


def above(low) -> Check:
    return Check(lambda v: v > low, f"above {low}")


def share(closed: bool = True) -> Check:
    """A fraction of something: 0..1, or 0..1 with 1 excluded (removing everything)."""
    if closed:
        return Check(lambda v: 0 <= v <= 1, "between 0 and 1")
    return Check(lambda v: 0 <= v < 1, "at least 0 and below 1")


def whole_or(value) -> Check:
    """A count that may also be one named value (-1 for "not set", as the Trainer writes it)."""
    return Check(lambda v: v == value or v >= 1, f"at least 1 (or {value})")


def option(
    default,
    help: str,
    check: Check | None = None,
    *,
    cli: str | None = None,
    old_flags: Mapping[str, Any] | None = None,
    old_keys: tuple[str, ...] = (),
    metavar: str | None = None,
    coerce: Callable[[Any], Any] | None = None,
    recipe: bool = True,
):
    """A config field. cli: the flag when it is not --<name-with-dashes>; old_flags: deprecated
    flags, each -> None (takes a value) or the constant it stores; old_keys: deprecated keyword
    and recipe names; coerce: turns accepted spellings (True for "on") into the stored one;
    recipe=False: the recipe supplies the value itself (the seed)."""
    metadata = dict(
        help=help,
        check=check,
        cli=cli,
        old_flags=dict(old_flags or {}),
        old_keys=old_keys,
        metavar=metavar,
        coerce=coerce,
        recipe=recipe,
    )
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def on_off(value):
    """bf16-style switches: True / False / "auto" from Python, on / off / auto from a CLI."""
    return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value


# --------------------------------------------------------------------------- the config base


@dataclass(frozen=True)
class Config:
    """Base of every stage config. `verb` names the stage in errors and in the CLI."""

    verb: ClassVar[str] = "config"

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            coerce = field.metadata.get("coerce")
            if coerce is not None:
                try:
                    value = coerce(value)
                except OptionError:
                    raise
                except PocketsizeError as e:  # named by its option (a recipe: by its key)
                    raise OptionError(self.verb, field, str(e)) from None
                object.__setattr__(self, field.name, value)
            _check_value(self, field, value)
        self.check()

    def check(self) -> None:
        """Checks across fields (contradictions); a subclass adds its own."""

    # -- building
    @classmethod
    def build(cls, config: Config | None = None, **keywords):
        """The config from a base config (or the defaults) and keyword overrides."""
        if config is not None and not isinstance(config, cls):
            raise PocketsizeError(
                f"{cls.verb}: config= takes a {cls.__name__}, not {type(config).__name__}"
            )
        keywords = cls._renamed(keywords, lambda old, new: f"{cls.verb}({old}=...)")
        cls._refuse_unknown(
            keywords, lambda key: f"{cls.verb}() got the unknown option {key!r}", "options"
        )
        if config is None:
            return cls(**keywords)
        return dataclasses.replace(config, **keywords) if keywords else config

    @classmethod
    def from_mapping(cls, mapping: Mapping, where: str, supplied: tuple[str, ...] = ()):
        """A recipe section -> the config; `supplied` keys are the recipe's own (the seed)."""
        if not isinstance(mapping, Mapping):
            raise PocketsizeError(
                f"recipe key {where}: expected a mapping of options, got {mapping!r}"
            )
        for key in mapping:
            if key in supplied:
                raise PocketsizeError(
                    f"recipe key {where}.{key} is set by the recipe itself; remove it"
                )
        values = cls._renamed(dict(mapping), lambda old, new: f"recipe key {where}.{old}")
        cls._refuse_unknown(
            values, lambda key: f"recipe key {where}.{key} is unknown", "allowed keys"
        )
        try:
            return cls(**values)
        except OptionError as e:
            raise PocketsizeError(f"recipe key {where}.{e.name}: {e.problem}") from None
        except PocketsizeError as e:
            raise PocketsizeError(f"recipe key {where}: {e}") from None

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.names()}

    @classmethod
    def _renamed(cls, values: dict, said: Callable[[str, str], str]) -> dict:
        for field in dataclasses.fields(cls):
            for old in field.metadata.get("old_keys", ()):
                if old in values:
                    print(
                        f"pocketsize: {said(old, field.name)} is deprecated; use {field.name}",
                        file=sys.stderr,
                    )
                    values[field.name] = values.pop(old)
        return values

    @classmethod
    def _refuse_unknown(cls, values: dict, said: Callable[[str], str], listing: str) -> None:
        for key in values:
            if key not in cls.names():
                close = difflib.get_close_matches(key, cls.names(), n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise PocketsizeError(
                    f"{said(key)}; {hint}{listing}: {', '.join(sorted(cls.names()))}"
                )


@functools.cache
def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


class OptionError(PocketsizeError):
    """A value a config refuses; a recipe names it by its key, the CLI and Python by option."""

    def __init__(self, verb: str, field: dataclasses.Field, problem: str):
        self.name, self.problem = field.name, problem
        super().__init__(
            f"{verb} option {field.name}: {problem} ({flag_of(field)} / {field.name}=)"
        )


def _check_value(config: Config, field: dataclasses.Field, value) -> None:
    annotation = _hints(type(config))[field.name]
    if not _conforms(value, annotation):
        raise OptionError(config.verb, field, f"expected {_describe(annotation)}, got {value!r}")
    check = field.metadata.get("check")
    if check is not None and value is not None and not check.test(value):
        raise OptionError(config.verb, field, f"must be {check.says}, not {value!r}")


def _conforms(value, annotation) -> bool:
    """Whether `value` is of the (plain) annotation; True for a recipe is no int, 3 is a float."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return True
    if annotation is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, a) for a in typing.get_args(annotation))
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if origin is not None:
        return isinstance(value, origin)
    if isinstance(value, bool):
        return annotation is bool
    if annotation is float:
        return isinstance(value, (int, float))
    return isinstance(value, annotation)


def _describe(annotation) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " or ".join(repr(a) for a in typing.get_args(annotation))
    if origin is not None and typing.get_args(annotation) and origin is not list:
        if origin is not dict:
            return " or ".join(_describe(a) for a in typing.get_args(annotation))
    return "None" if annotation is type(None) else getattr(annotation, "__name__", str(annotation))


# --------------------------------------------------------------------------- the CLI


def flag_of(field: dataclasses.Field) -> str:
    return field.metadata.get("cli") or "--" + field.name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser, *classes: type[Config], skip=()) -> None:
    """One flag per field of `classes` (and its deprecated spellings); several classes (quantize's
    methods) share one flag per field name, whose help says which of them take it. Defaults stay
    the config's: a flag not given is left out of the namespace, so `from_args` builds from the
    given flags only."""
    names = ", ".join(cls.__name__ for cls in classes)
    group = parser.add_argument_group(f"{classes[0].verb} options ({names})")
    for field in _union_fields(classes):
        if field.name in skip:
            continue
        annotation = _hints(next(c for c in classes if field.name in c.names()))[field.name]
        kind = _cli_type(annotation)
        kw = dict(dest=field.name, default=argparse.SUPPRESS, help=_help(field, classes))
        many = _is_list(annotation)
        if kind is bool:
            group.add_argument(flag_of(field), action=argparse.BooleanOptionalAction, **kw)
        elif many:  # --name A B, repeatable
            metavar = field.metadata.get("metavar") or "TEXT"
            group.add_argument(flag_of(field), nargs="+", action="extend", metavar=metavar, **kw)
        else:
            choices = _choices(annotation)
            kw.update(type=kind, metavar=field.metadata.get("metavar") or _metavar(kind, choices))
            group.add_argument(flag_of(field), choices=choices, **kw)
        for old, constant in field.metadata["old_flags"].items():
            group.add_argument(
                old,
                dest=field.name,
                default=argparse.SUPPRESS,
                help=argparse.SUPPRESS,
                action=_deprecated(flag_of(field), constant, many),
                nargs=0 if constant is not None else ("+" if many else None),
                type=None if constant is not None else kind,
            )


def _help(field: dataclasses.Field, classes) -> str:
    """The field's help with its default; with several classes, which take it and the
    defaults that differ (e.g. "(default: 8; 4bit: 4)")."""
    help = field.metadata["help"]
    takers = [c for c in classes if field.name in c.names()]
    defaults = {_label(c): _default_of(_field(c, field.name)) for c in takers}
    first = next(iter(defaults.values()))
    if "(default:" not in help:  # a help that explains its default says it itself
        others = "".join(f"; {k}: {_shown(v)}" for k, v in defaults.items() if v != first)
        help = f"{help} (default: {_shown(first)}{others})"
    if len(takers) < len(classes):
        help = f"[{', '.join(_label(c) for c in takers)}] {help}"
    return help.replace("%", "%%")


def _label(cls) -> str:
    return getattr(cls, "method", "") or cls.__name__


def _field(cls, name: str) -> dataclasses.Field:
    return next(f for f in dataclasses.fields(cls) if f.name == name)


def from_args(cls: type[Config], args: argparse.Namespace, base: Config | None = None, **extra):
    """The config from the flags the user gave (others keep the config's defaults)."""
    given = {name: getattr(args, name) for name in cls.names() if hasattr(args, name)}
    return cls.build(base, **given, **extra)


def _deprecated(new_flag: str, constant, many: bool = False):
    class Deprecated(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):
            said = {None: new_flag, True: new_flag, False: f"--no-{new_flag[2:]}"}.get(
                constant, f"{new_flag} {constant}"
            )
            print(f"pocketsize: {option_string} is deprecated; use {said}", file=sys.stderr)
            value = values if constant is None else constant
            if many:  # a repeatable flag: each use adds to the list
                value = list(getattr(namespace, self.dest, [])) + list(value)
            setattr(namespace, self.dest, value)

    return Deprecated


def _is_list(annotation) -> bool:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        plain = [a for a in typing.get_args(annotation) if a is not type(None)]
        return len(plain) == 1 and _is_list(plain[0])
    origin = typing.get_origin(annotation) or annotation
    return origin in (list, tuple)


def _cli_type(annotation):
    """What a flag's text is read as: the first plain type of the annotation (str for a
    Literal, a list, a mapping or anything else: those are parsed by the config's coerce)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return type(typing.get_args(annotation)[0])
    if origin is None:
        return annotation if annotation in (bool, int, float, str) else str
    plain = [a for a in typing.get_args(annotation) if a is not type(None)]
    if len(plain) == 1:
        return _cli_type(plain[0])
    return float if set(plain) == {int, float} else str


def _choices(annotation):
    """A Literal's values; with None (`Literal[...] | None`), the values it is not None."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        literal = [a for a in typing.get_args(annotation) if typing.get_origin(a) is typing.Literal]
        return _choices(literal[0]) if literal else None
    if typing.get_origin(annotation) is typing.Literal:
        return list(typing.get_args(annotation))
    return None


def _metavar(kind, choices) -> str:
    if choices:
        return "{" + ",".join(map(str, choices)) + "}"
    return {int: "N", float: "X"}.get(kind, "TEXT")


def _shown(default) -> str:
    if isinstance(default, (list, tuple)):
        return " ".join(map(str, default)) or "none"
    if isinstance(default, dict):
        return ",".join(f"{k}={v}" for k, v in default.items()) or "none"
    return "none" if default is None else str(default)


# --------------------------------------------------------------------------- the Python verbs


def keywords_from(*classes: type[Config]):
    """Decorator: the verb's `**options` show in its signature (help(), IDEs, inspect) as the
    keyword-only fields of `classes` (several: quantize's methods; a field shared by several
    shows the first one's default), and the verb builds its config from them."""
    import inspect

    def decorate(fn):
        sig = inspect.signature(fn)
        params = [p for p in sig.parameters.values() if p.kind is not p.VAR_KEYWORD]
        for field in _union_fields(classes):
            params.append(
                inspect.Parameter(
                    field.name, inspect.Parameter.KEYWORD_ONLY, default=_default_of(field)
                )
            )
        fn.__signature__ = sig.replace(parameters=params)
        return fn

    return decorate


def _union_fields(classes) -> list[dataclasses.Field]:
    seen: dict[str, dataclasses.Field] = {}
    for cls in classes:
        for field in dataclasses.fields(cls):
            seen.setdefault(field.name, field)
    return list(seen.values())


def _default_of(field: dataclasses.Field):
    if field.default is not dataclasses.MISSING:
        return field.default
    return field.default_factory()
