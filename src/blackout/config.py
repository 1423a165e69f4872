"""One TOML configuration file, every option also settable as ``--set section.key=value``.

Each component owns a dataclass of its options with documented defaults (the
engine's ``EngineConfig``, the DDoS detector's ``DdosConfig``...) and asks for
its section with :meth:`Config.section`.  Unknown keys and wrong types are
errors that name the key and what is allowed, never silently ignored.

``blackout config --defaults`` prints every section with its defaults as TOML.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from typing import Any, TypeVar

from .errors import ConfigError

T = TypeVar("T")

# section name -> dataclass; components register theirs so `config --defaults` can list them.
SECTIONS: dict[str, type] = {}


def register_section(name: str, cls: type[T]) -> type[T]:
    """Declare a configuration section and the dataclass that holds it."""
    SECTIONS[name] = cls
    return cls


class Config:
    """The merged configuration: file values, overridden by --set values."""

    def __init__(self, values: dict[str, dict[str, Any]] | None = None) -> None:
        self.values: dict[str, dict[str, Any]] = values or {}

    @classmethod
    def load(
        cls, path: str | None = None, overrides: list[str] | None = None, base: dict[str, dict[str, Any]] | None = None
    ) -> Config:
        """Start from `base` (a command's own defaults), read the TOML file (if given) over it,
        then apply each "section.key=value" override."""
        values: dict[str, dict[str, Any]] = {name: dict(body) for name, body in (base or {}).items()}
        if path:
            try:
                with open(path, "rb") as fh:
                    raw = tomllib.load(fh)
            except OSError as exc:
                raise ConfigError(f"{path}: cannot read configuration: {exc.strerror or exc}") from exc
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
            except UnicodeDecodeError as exc:  # TOML is UTF-8; found by fuzz/harness.py config
                raise ConfigError(f"{path}: not valid TOML: not UTF-8 at byte {exc.start}") from exc
            for section, body in raw.items():
                if not isinstance(body, dict):
                    raise ConfigError(f"{path}: top-level key {section!r} must be a [section]")
                values.setdefault(section, {}).update(body)
        for item in overrides or []:
            section, key, value = parse_override(item)
            values.setdefault(section, {})[key] = value
        config = cls(values)
        unknown = sorted(set(values) - set(SECTIONS)) if SECTIONS else []
        if unknown:
            raise ConfigError(f"unknown configuration section(s) {unknown}; known: {sorted(SECTIONS)}")
        return config

    def section(self, name: str, cls: type[T]) -> T:
        """The section as its dataclass, defaults filled in, types checked."""
        body = self.values.get(name, {})
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        hints = typing.get_type_hints(cls)
        kwargs: dict[str, Any] = {}
        for key, value in body.items():
            if key not in fields:
                raise ConfigError(f"[{name}] has no option {key!r}; options: {', '.join(sorted(fields))}")
            kwargs[key] = _coerce(f"{name}.{key}", value, hints[key])
        return cls(**kwargs)


def parse_override(item: str) -> tuple[str, str, Any]:
    """ "ddos.threshold_pps=500" → ("ddos", "threshold_pps", 500); values are TOML, bare words are strings."""
    if "=" not in item or "." not in item.split("=", 1)[0]:
        raise ConfigError(f"--set {item!r}: write it as section.key=value, e.g. --set ddos.threshold_pps=500")
    dotted, text = item.split("=", 1)
    section, key = dotted.strip().split(".", 1)
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    return section, key, value


def _coerce(where: str, value: Any, hint: Any) -> Any:
    """Check a value against a field's type hint, widening int to float where a float is wanted."""
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(where, value, option)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {value!r} is not any of {hint}")
    if origin is list:
        (inner,) = typing.get_args(hint) or (Any,)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(where, v, inner) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return value
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is bool and isinstance(value, str) and value.lower() in ("on", "off", "true", "false", "yes", "no"):
        return value.lower() in ("on", "true", "yes")  # FastNetMon writes on/off
    if isinstance(hint, type) and not isinstance(value, hint):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
    if hint is int and isinstance(value, bool):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    return value


def defaults_toml() -> str:
    """Every registered section with its default values, as a TOML document (documentation)."""
    lines: list[str] = []
    for name in sorted(SECTIONS):
        lines.append(f"[{name}]")
        for f in dataclasses.fields(SECTIONS[name]):
            default = f.default if f.default is not dataclasses.MISSING else None
            if f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            if default is None:
                lines.append(f"# {f.name} = (unset)")
            else:
                lines.append(f"{f.name} = {_toml_value(default)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return repr(value)
