"""Typed dataclass configs: built from YAML / dicts / `key=value` overrides with clear errors.

Every config class is a plain dataclass whose fields carry `metadata={"help": ...}`; the same
class is the Python API, the CLI's `--set` target and (through `describe`) the docs.

A section may be *polymorphic*: its declared type has a classmethod `subtype_for(name)` and a `name`
field, and the `name` given in the data picks the concrete dataclass (e.g. a fine-tuning run's
`method: {name: ddpo, clip: 0.1}`). A plain string stands for `{name: string}`, and a later layer that
names another subtype replaces the section instead of merging into it.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from vidd.core.errors import UserError, read_text

T = TypeVar("T")


class ConfigError(UserError, ValueError):
    pass


def option(default, help: str, **kwargs):
    """A config field with its documentation."""
    if isinstance(default, (list, dict)) or dataclasses.is_dataclass(default):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata={"help": help}, **kwargs)
    return dataclasses.field(default=default, metadata={"help": help}, **kwargs)


def _coerce(value, tp, where: str):
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], where)
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{where}: {value!r} is not one of the allowed values {list(allowed)}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if _polymorphic(tp):
            value = _named(value)
            if not isinstance(value, dict) or "name" not in value:
                raise ConfigError(f"{where}: expected a name or a mapping with a `name`, got {value!r}")
            try:
                tp = tp.subtype_for(value["name"])
            except ConfigError as e:
                raise ConfigError(f"{where}.name: {e}") from None
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(tp) or (Any,)
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp in (int, float):
        if isinstance(value, str):
            try:
                value = float(value)  # YAML 1.1 reads "2e-3" as a string
            except ValueError:
                raise ConfigError(f"{where}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if math.isnan(value):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if tp is int and (math.isinf(value) or float(value) != int(value)):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return tp(value)
    if tp is str:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def from_dict(cls: type[T], data: dict, where: str = "config") -> T:
    """Build a dataclass from a (nested) dict; unknown keys and bad values name the field."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = set(data) - set(fields)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {sorted(unknown)}; allowed: {sorted(fields)}")
    kwargs = {name: _coerce(value, hints[name], f"{where}.{name}") for name, value in data.items()}
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if validate:
        try:
            validate()
        except ConfigError as e:  # validate() names fields relative to its own class
            raise ConfigError(f"{where}.{e}") from None
    return obj


def to_dict(obj) -> dict:
    return dataclasses.asdict(obj)


def parse_overrides(pairs: list[str]) -> dict:
    """["a.b=3", "c=[1,2]"] -> {"a": {"b": 3}, "c": [1, 2]} (values parsed as YAML)."""
    out: dict = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"override {pair!r} is not of the form key=value")
        key, raw = pair.split("=", 1)
        node = out
        *parents, leaf = key.strip().split(".")
        for p in parents:
            node[p] = _named(node.get(p, {}))  # `method=ddpo` then `method.clip=0.1`
            if not isinstance(node[p], dict):
                raise ConfigError(f"override {pair!r} sets a field inside {p!r}, which an earlier override set to "
                                  f"{node[p]!r}")
            node = node[p]
        node[leaf] = yaml.safe_load(raw)
    return out


def merge(base: dict, update: dict, cls=None) -> dict:
    """`update` over `base`, nested mappings merged. With the dataclass `cls` the dicts describe, a polymorphic
    section that `update` gives another name starts again from `update` alone."""
    out = dict(base)
    hints = typing.get_type_hints(cls) if cls is not None else {}
    for k, v in update.items():
        tp = hints.get(k)
        polymorphic = tp is not None and dataclasses.is_dataclass(tp) and _polymorphic(tp)
        if polymorphic:
            v = _named(v)
            old = _named(out.get(k))
            if isinstance(v, dict) and isinstance(old, dict) and v.get("name", old.get("name")) != old.get("name"):
                out[k] = dict(v)
                continue
            out[k] = merge(old, v) if isinstance(v, dict) and isinstance(old, dict) else v
            continue
        nested = tp if tp is not None and dataclasses.is_dataclass(tp) else None
        out[k] = merge(out[k], v, nested) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _polymorphic(tp) -> bool:
    return callable(getattr(tp, "subtype_for", None))


def _named(value):
    """A polymorphic section given by its name alone: "ddpo" -> {"name": "ddpo"}."""
    return {"name": value} if isinstance(value, str) else value


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(read_text(path, "a YAML config", ConfigError)) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def build(cls: type[T], *layers: dict, where: str = "config") -> T:
    """Merge dict layers (preset, file, overrides; later wins) on top of the defaults and build."""
    data = to_dict(cls()) if _has_all_defaults(cls) else {}
    for layer in layers:
        data = merge(data, layer, cls)
    return from_dict(cls, data, where)


def _has_all_defaults(cls) -> bool:
    return all(
        f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        for f in dataclasses.fields(cls) if f.init
    )


def describe(cls, prefix: str = "", defaults=None) -> list[tuple[str, str, str]]:
    """(dotted name, default, help) for every field, nested configs flattened: for docs and --help.

    `defaults`: an instance whose values are the defaults to show (a nested section's default instance,
    which may differ from its class's own defaults)."""
    rows = []
    if defaults is not None:
        cls = type(defaults)  # a polymorphic section: the fields of the subtype chosen
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if defaults is not None:
            default = getattr(defaults, f.name)
        else:
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else "(required)")
        if dataclasses.is_dataclass(tp):
            rows += describe(tp, f"{prefix}{f.name}.", default if dataclasses.is_dataclass(default) else None)
            continue
        rows.append((f"{prefix}{f.name}", repr(default), f.metadata.get("help", "")))
    return rows
