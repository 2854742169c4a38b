"""Values in the pretraining config: the YAML reading (YAML 1.2 booleans), dotted overrides,
ranges, and checking a value against a field's annotation. The sections and the resolution order
are in :mod:`pretrain.config`.
"""
from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path
from typing import Any

import yaml

from cwm.errors import ConfigError, did_you_mean

Range = list  # a scalar or a [lo, hi] pair in YAML


class _Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false. (YAML 1.1 reads ``no``, ``off`` and ``on`` as booleans,
    which would turn ``train.mixed_precision=no`` into False.)"""


_BOOL = "tag:yaml.org,2002:bool"
_Loader.yaml_implicit_resolvers = {k: [(tag, rx) for tag, rx in v if tag != _BOOL]
                                   for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def _yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)


def _choice(value: str, choices: tuple[str, ...], name: str) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)} (got {value!r})")


def as_range(value: Any, name: str, kind: type = float) -> tuple[Any, Any]:
    """A scalar ``v`` as ``(v, v)``, or a two-element list as ``(lo, hi)`` with ``lo <= hi``."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ConfigError(f"{name} must be a number or [lo, hi] (got {value})")
        lo, hi = (kind(v) for v in value)
    else:
        try:
            lo = hi = kind(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be a number or [lo, hi] (got {value!r})") from None
    if lo > hi:
        raise ConfigError(f"{name}: lo > hi in {value}")
    return lo, hi


def _fields(obj: Any) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(obj)}


def _unknown(name: str, known: typing.Iterable[str], where: str) -> ConfigError:
    known = list(known)
    hint = did_you_mean(name, known) or f" (known: {', '.join(known)})"
    return ConfigError(f"unknown config key '{where}{name}'{hint}")


def _coerce(value: Any, fld: dataclasses.Field, where: str) -> Any:
    """Check (and gently convert) a value against a field's annotation."""
    hint = fld.type if not isinstance(fld.type, str) else _ANNOTATIONS.get(fld.type, Any)
    if hint is Any:
        return _number(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where} must be true or false (got {value!r})")
    if hint in (int, float):
        value = _number(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number (got {value!r})")
        if hint is int:
            if float(value) != int(value):
                raise ConfigError(f"{where} must be an integer (got {value!r})")
            return int(value)
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string (got {value!r})")
        return value
    if hint in (list, Range):
        if not isinstance(value, (list, tuple)):
            if isinstance(_number(value), (int, float)):
                return [_number(value)] * 2
            raise ConfigError(f"{where} must be a list (got {value!r})")
        return [_number(v) for v in value]
    if hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping (got {value!r})")
        return dict(value)
    return value


_ANNOTATIONS = {"str": str, "int": int, "float": float, "bool": bool, "list": list, "dict": dict,
                "Any": Any, "Range": Range}


def _number(value: Any) -> Any:
    """YAML 1.1 reads ``1e-4`` as a string; accept it as the number it is."""
    if isinstance(value, str):
        try:
            f = float(value)
        except ValueError:
            return value
        return int(f) if f.is_integer() and "." not in value and "e" not in value.lower() else f
    if isinstance(value, list):
        return [_number(v) for v in value]
    return value


def parse_override(text: str) -> dict[str, Any]:
    """``"optim.lr=1e-3"`` -> ``{"optim": {"lr": 0.001}}``; values are YAML (lists, bools, null).

    Keys below a dict field set one entry: ``model.arch.enc_depth=2``.
    """
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like section.field=value")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if len(parts) < 2 or not all(parts):
        raise ConfigError(f"override key '{key}' must be section.field (e.g. train.max_steps)")
    try:
        value = _number(_yaml(raw)) if raw.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"cannot parse the value of '{text}': {e}") from None
    if len(parts) > 2:  # one entry of a dict field
        value = {".".join(parts[2:]): value}
    return {parts[0]: {parts[1]: value}}


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        tree = _yaml(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file '{path}' not found") from None
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read config file '{path}': {str(e).splitlines()[0]}") from None
    return tree or {}
