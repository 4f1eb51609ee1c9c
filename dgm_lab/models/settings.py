"""Typed model settings: each family declares its settings in one dataclass
(``dgm_lab/models/<family>/config.py``: type, default and range of every field), the schema of
its ``conf/model`` YAML files and the one place where each value is checked.

A model's constructor builds its settings through its dataclass (``settings_class.take``), so
a bad value fails with the same sentence (``ConfigError``; exit code 2 from the command line)
whether it came from a YAML file, a command-line override or a unit test. Checks on a single
field are declared with it (``setting(default, minimum=..., choices=...)``); checks across
fields are the family's ``check()``.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from typing import Any, NamedTuple

from dgm_lab.errors import ConfigError


def setting(default: Any, *, minimum: float | None = None, choices: tuple[str, ...] | None = None):
    """A dataclass field with its default and its single-value check (``minimum``, ``choices``)."""
    metadata = {"minimum": minimum, "choices": choices}
    if isinstance(default, list | dict):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass
class ModelSettings:
    """Base of the settings dataclasses. ``key_prefix`` names the fields in messages."""

    key_prefix: typing.ClassVar[str] = "model."

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for field in dataclasses.fields(self):
            value = _checked(self.key_prefix + field.name, getattr(self, field.name), hints[field.name],
                             field.metadata)
            setattr(self, field.name, value)
        self.check()

    def check(self) -> None:
        """Checks across fields, one sentence each (``require``); none unless a family adds them."""

    @classmethod
    def take(cls, kwargs: dict):
        """The settings among a constructor's ``kwargs`` (removed from them), checked."""
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{name: kwargs.pop(name) for name in list(kwargs) if name in names})


def _checked(key: str, value: Any, hint: Any, metadata) -> Any:
    """``value`` if it has the declared type and passes the field's check; a nested settings
    dataclass is built from a mapping. Raises ConfigError with one sentence otherwise."""
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        optional, hint = len(args) < len(typing.get_args(hint)), args[0]
    if value is None and optional:
        return None
    if isinstance(hint, type) and issubclass(hint, ModelSettings):
        if isinstance(value, hint):
            return value
        if value is None or isinstance(value, dict):
            known = {field.name for field in dataclasses.fields(hint)}
            unknown = sorted(set(value or {}) - known)
            if unknown:
                raise ConfigError(f"{key} has no setting {unknown[0]!r}; it takes {', '.join(sorted(known))}.")
            return hint(**(value or {}))
    minimum, choices = metadata.get("minimum"), metadata.get("choices")
    if _has_type(value, hint) and (minimum is None or value >= minimum) and (choices is None or value in choices):
        return value
    wanted = (" or ".join(choices) if choices else _describe(hint, minimum)) + (" or null" if optional else "")
    raise ConfigError(f"{key} must be {wanted}, got {value!r}.")


def _has_type(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list | tuple) and all(_has_type(v, item) for v in value)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, origin or hint)


def _describe(hint: Any, minimum: float | None) -> str:
    """What a field takes, in words: 'a positive integer', 'a list of numbers', 'true or false'."""
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        return {int: "a list of integers", float: "a list of numbers"}.get(item, "a list")
    if hint not in (int, float):
        return {bool: "true or false", str: "a string", dict: "a mapping"}.get(hint, getattr(hint, "__name__", str(hint)))
    kind = "integer" if hint is int else "number"
    if minimum is None:
        return "an integer" if hint is int else "a number"
    if minimum == 1 and hint is int:
        return "a positive integer"
    if minimum == 0:
        return f"a non-negative {kind}"
    return f"a {kind} >= {minimum}"


class ModelSchema(NamedTuple):
    """A model class, the dataclass of its settings, and whether it reads the run's eval block."""

    target: str
    settings: type[ModelSettings]
    reads_eval: bool
