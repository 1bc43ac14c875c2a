"""Presets: a notebook's named tables of settings (`smoke`, `full`), and overrides of single
settings, each checked against the type of the preset's own value.

Pure Python, so that the command line can check an override before it starts a kernel.
"""
from __future__ import annotations

import ast


class PresetError(ValueError):
    """An unknown preset or setting, a value of the wrong type, or a preset table that cannot be used."""


def describe(values: dict) -> str:
    """'name (default value), ...' for an error message."""
    return ", ".join(f"{name} (default {value!r})" for name, value in values.items())


def _same_kind(name: str, value, default):
    """`value` checked against `default`'s type, converted where that loses nothing (an int where a
    float is expected; a tuple where a list is); a PresetError otherwise."""
    if default is None:
        return value
    if isinstance(default, bool) or isinstance(value, bool):
        if isinstance(default, bool) and isinstance(value, bool):
            return value
    elif isinstance(default, float) and isinstance(value, (int, float)):
        return float(value)
    elif isinstance(default, (int, str)) and type(value) is type(default):
        return value
    elif isinstance(default, (list, tuple)) and isinstance(value, (list, tuple)):
        element = default[0] if default else None
        return type(default)(_same_kind(f"{name}[{i}]", v, element) for i, v in enumerate(value))
    elif isinstance(default, dict) and isinstance(value, dict):
        element = next(iter(default.values()), None)
        return {k: _same_kind(f"{name}[{k!r}]", v, default.get(k, element)) for k, v in value.items()}
    raise PresetError(f"{name} == {value!r} is a {type(value).__name__}; the preset's value "
                      f"{default!r} is a {type(default).__name__}")


def check_overrides(values: dict, overrides: dict | None, preset: str) -> dict:
    """The preset's `values` with `overrides` applied, each override type-checked against the
    value it replaces; an unknown setting raises PresetError listing the settings and defaults."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(values))
    if unknown:
        raise PresetError(f"unknown setting(s) {', '.join(unknown)} for preset {preset!r}; its "
                          f"settings are: {describe(values)}")
    return {**values, **{k: _same_kind(k, v, values[k]) for k, v in overrides.items()}}


def resolve(preset: str, presets: dict, overrides: dict | None = None) -> dict:
    """The settings of `preset` with `overrides` applied; an unknown preset raises PresetError
    listing the valid ones."""
    if not isinstance(presets, dict) or not presets:
        raise PresetError("presets must be a non-empty dict of preset name -> dict of settings")
    if preset not in presets:
        raise PresetError(f"unknown preset {preset!r}; valid presets: {', '.join(presets)}")
    values = presets[preset]
    if not isinstance(values, dict):
        raise PresetError(f"preset {preset!r} must be a dict, not {type(values).__name__}")
    return check_overrides(values, overrides, preset)


def parse(name: str, text: str, default):
    """A value written on the command line, read as the type of `default`: a string stays as it
    is, true/false are booleans, anything else is a Python literal (300, 0.1, [64, 128], {"mlp": 600};
    a bare 64,128 is a list)."""
    if isinstance(default, str):
        return text
    if text.strip().lower() in ("true", "false"):
        value = text.strip().lower() == "true"
    else:
        try:
            value = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            raise PresetError(f"{name} == {text!r} is not a {type(default).__name__} "
                              f"(the default is {default!r})") from None
    return _same_kind(name, value, default)
