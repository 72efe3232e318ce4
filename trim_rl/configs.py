"""Typed configuration files: YAML read with YAML 1.2 numbers, every field type-checked.

A config is a dataclass; :func:`from_mapping` builds one from a mapping and names the file and key
of the first value that does not fit (``agents/x.yaml: learning_rate: expected a number > 0, got
'fast'``).  Types understood: ``bool``, ``int``, ``float``, ``str``, ``Literal[...]``,
``list[T]``, ``dict``, ``T | None`` and nested config dataclasses; a field's ``metadata["check"]``
adds a range check ``(predicate, "what is expected")`` (:func:`check`; :func:`expect` words the
type error the same way).  A :class:`Sparse` block remembers which keys its file gave and is
written back with those only, so a run's ``config.yml`` holds what the YAML said.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from trim_rl.fsutil import existing_file, read_text_file

__all__ = ["ConfigError", "load_yaml_file", "from_mapping", "to_mapping", "check", "expect", "Sparse", "Yaml12Loader"]


class ConfigError(ValueError):
    """A config value that does not fit; the message names the file and key."""


class Yaml12Loader(yaml.SafeLoader):
    """SafeLoader that reads numbers as YAML 1.2 does: ``1e-4`` and ``3e-4`` are floats, not strings."""


_FLOAT_12 = re.compile(r"""^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?
                       |[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$""", re.X)
_BOOL_12 = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
# drop PyYAML's 1.1 float and bool resolvers ("yes" and "on" are strings in 1.2), then add the 1.2 ones
Yaml12Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag not in ("tag:yaml.org,2002:float", "tag:yaml.org,2002:bool")]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.copy().items()}
Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, list("-+0123456789."))
Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:bool", _BOOL_12, list("tTfF"))


def _construct_float(loader, node):
    text = loader.construct_scalar(node)
    if re.fullmatch(r"[-+]?[0-9]+", text):  # "1" resolves as int first; keep the guard for safety
        return int(text)
    return float(text.replace(".inf", "inf").replace(".Inf", "inf").replace(".INF", "inf")
                 .replace(".nan", "nan").replace(".NaN", "nan").replace(".NAN", "nan"))


Yaml12Loader.add_constructor("tag:yaml.org,2002:float", _construct_float)


def parse_yaml(text: str, where: str = "<text>") -> Any:
    """YAML text with YAML 1.2 numbers; a syntax error names ``where`` and the line."""
    try:
        return yaml.load(text, Loader=Yaml12Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{where}{line}: not valid YAML ({getattr(exc, 'problem', None) or exc})") from None


def load_yaml_file(path: str | Path) -> dict:
    """A YAML mapping from ``path``; missing file, unreadable file, bad YAML or a non-mapping are
    :class:`ConfigError` / ``FileNotFoundError`` naming the file."""
    path = existing_file(path, f"{path}: no such config file", f"{path}: is a folder, expected a YAML file",
                         ConfigError)
    data = parse_yaml(read_text_file(path, str(path), ConfigError), str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values, got {type(data).__name__}")
    return data


def check(predicate, expected: str) -> dict:
    """Field metadata: a range check and what the message says is expected."""
    return {"check": (predicate, expected)}


def expect(expected: str, predicate=None) -> dict:
    """Field metadata: like :func:`check`, and a value of the wrong type is refused with the same
    words (``expected a valid int, got 2.5``)."""
    return {"check": (predicate or (lambda v: True), expected), "expect": True}


@dataclasses.dataclass
class Sparse:
    """A config block whose unset keys mean "the default of the code that reads it": it is written
    back (:func:`to_mapping`) and iterated with the keys its file gave only, in the file's order,
    plus any field set to a non-default value since."""

    _given: tuple[str, ...] = dataclasses.field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self):
        # built in code: the keys given are those that differ from their defaults
        self._given = tuple(f.name for f in _init_fields(self) if getattr(self, f.name) != _default(f))

    def given_keys(self) -> list[str]:
        """The keys set: those its file gave, then those changed from their defaults since."""
        changed = [f.name for f in _init_fields(self) if f.name not in self._given
                   and getattr(self, f.name) != _default(f)]
        return [*self._given, *changed]


def _init_fields(obj) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(obj) if f.init]


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(_type_name(a) for a in args) + " (or null)"
    if origin is list:
        (inner,) = typing.get_args(tp) or (Any,)
        return f"a list of {_type_name(inner)}"
    if tp is float:
        return "a number"
    if tp is int:
        return "an integer"
    if tp is bool:
        return "true or false"
    if tp is str:
        return "a string"
    if tp is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp, where: str, path: str) -> Any:
    """``value`` as type ``tp``; ``where`` is the file, ``path`` the dotted key."""
    origin = typing.get_origin(tp)
    bad = ConfigError(f"{where}: {path}: expected {_type_name(tp)}, got {value!r}")
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, where, path)
            except ConfigError:
                continue
        raise bad
    if origin is typing.Literal:
        if value in typing.get_args(tp):
            return value
        raise bad
    if origin is list:
        (inner,) = typing.get_args(tp) or (Any,)
        if not isinstance(value, (list, tuple)):
            raise bad
        return [_convert(v, inner, where, f"{path}[{i}]") for i, v in enumerate(value)]
    if tp in (bool, str, dict):  # no conversion: a value of that very type (a dict copied)
        if not isinstance(value, tp):
            raise bad
        return dict(value) if tp is dict else value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer() and abs(value) < 2 ** 53:
                return int(value)
            raise bad
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        v = float(value)
        if not math.isfinite(v):
            raise ConfigError(f"{where}: {path}: expected a finite number, got {value!r}")
        return v
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise bad
        return from_mapping(tp, value, where, path)
    raise TypeError(f"config type {tp!r} is not supported")


def from_mapping(cls, data: dict, where: str, path: str = ""):
    """An instance of the config dataclass ``cls`` from ``data`` (read from file ``where``, under the
    dotted key ``path``); unknown keys, wrong types and out-of-range values are
    :class:`ConfigError` naming the file and the key."""
    at = f"{where}: {path}" if path else where
    if not isinstance(data, dict):
        raise ConfigError(f"{at}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        key = f"{path}.{unknown[0]}" if path else unknown[0]
        raise ConfigError(f"{where}: {key}: unknown key; allowed{' under ' + path if path else ''}: "
                          f"{', '.join(sorted(fields))}")
    kwargs = {}
    for name, value in data.items():
        key = f"{path}.{name}" if path else name
        chk = fields[name].metadata.get("check")
        try:
            v = _convert(value, hints[name], where, key)
        except ConfigError:
            if not fields[name].metadata.get("expect"):
                raise
            raise ConfigError(f"{where}: {key}: expected {chk[1]}, got {value!r}") from None
        if chk is not None and v is not None and not chk[0](v):
            raise ConfigError(f"{where}: {key}: expected {chk[1]}, got {value!r}")
        kwargs[name] = v
    try:
        obj = cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{at}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{at}: {exc}") from None
    if isinstance(obj, Sparse):
        obj._given = tuple(data)
    return obj


def to_mapping(obj) -> Any:
    """Plain data (for ``config.yml``) of a config dataclass, recursively (a :class:`Sparse` block:
    the keys set only)."""
    if isinstance(obj, Sparse):
        return {k: to_mapping(getattr(obj, k)) for k in obj.given_keys()}
    if dataclasses.is_dataclass(obj):
        return {f.name: to_mapping(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_mapping(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_mapping(v) for k, v in obj.items()}
    return obj
