"""Config dataclasses <-> command-line flags and YAML files.

Every field of a config dataclass becomes a flag (`--batch-size`), documented once by the field's
`help` metadata, its default shown from the dataclass itself (so a default is written in one
place). Precedence: dataclass default < `base` (a recipe) < `--config file.yaml` < explicit flags.
Unknown YAML keys and bad values raise errors that name the field and what is allowed.

Flag forms: `bool` fields are switches (`--force-thinking`, or `--force-thinking false`); tuple
fields take comma-separated values and may repeat (`--budgets 1,8 --budgets 16`).
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path

import yaml

from ponder.errors import PonderError


def add_config_flags(
    parser: argparse.ArgumentParser, *classes, skip: tuple[str, ...] = (), defaults: dict | None = None
) -> None:
    """One flag per field of each config class, and one `--config` YAML file for all of them.

    `defaults` replaces the dataclass default in the help text where the command sets its own base
    (`ponder sft` writes to runs/sft); pass the same dict to `build_config` as `base`.
    """
    shown = defaults or {}
    for cls in classes:
        hints = typing.get_type_hints(cls)
        group = parser.add_argument_group(f"{cls.__name__} fields")
        for f in dataclasses.fields(cls):
            if f.name not in skip:
                _add_flag(group, f, hints[f.name], shown.get(f.name, field_default(f)))
    parser.add_argument("--config", help="YAML file of config fields (flags override it)")
    # a YAML file may name the fields of every class of this command, each class takes its own
    parser.set_defaults(config_fields=sorted({f.name for cls in classes for f in dataclasses.fields(cls)}))


def _add_flag(group, f: dataclasses.Field, hint, default) -> None:
    kind, element = _kind(hint)
    options: dict = {"type": kind}
    if kind is bool:  # a bare switch means true, as `--force-thinking` always did
        options = {"type": _parse_bool, "nargs": "?", "const": True, "metavar": "true|false"}
    elif kind is tuple:
        options = {"type": _tuple_parser(f.name, element), "action": "extend"}
    group.add_argument(
        "--" + f.name.replace("_", "-"),
        dest=f.name,
        default=None,  # None = not given: build_config then keeps the lower-precedence value
        help=f"{f.metadata.get('help', '')} (default: {default_text(default)})",
        **options,
    )


def field_default(f: dataclasses.Field):
    """The dataclass's own default of a field (None when it has none)."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def default_text(value) -> str:
    """A default as `--help` shows it: tuples comma-separated, as they are typed."""
    if isinstance(value, tuple | list):
        return ",".join(map(str, value)) or "none"
    return str(value)


def _kind(hint) -> tuple[type, type | None]:
    """The flag's value type (Optional unwrapped) and, for a tuple, its element type."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(hint) is tuple:
        return tuple, typing.get_args(hint)[0]
    return (hint if hint in (bool, int, float, str) else str), None


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _tuple_parser(name: str, element: type):
    def parse(text: str) -> list:
        try:
            return list(_to_tuple(name, element, text))
        except PonderError as e:
            raise argparse.ArgumentTypeError(str(e))

    return parse


def _to_tuple(name: str, element: type, value) -> tuple:
    items = value.split(",") if isinstance(value, str) else value
    try:
        return tuple(element(str(v).strip()) for v in items if str(v).strip())
    except (TypeError, ValueError):
        raise PonderError(f"{name}: expected comma-separated {element.__name__}s, got {value!r}")


def build_config(cls, args: argparse.Namespace, base: dict | None = None):
    """The config from defaults, then `base` (a recipe), then --config YAML, then explicit flags."""
    names = {f.name for f in dataclasses.fields(cls)}
    values = dict(base or {})
    if getattr(args, "config", None):
        allowed = set(getattr(args, "config_fields", names))
        values.update({k: v for k, v in _read_yaml(Path(args.config), allowed).items() if k in names})
    values.update({k: v for k, v in vars(args).items() if k in names and v is not None})
    return cls(**_as_tuples(cls, values))


def _as_tuples(cls, values: dict) -> dict:
    """Tuple fields given as a list (repeated flags, a YAML list) or a comma-separated YAML string, as tuples."""
    hints = typing.get_type_hints(cls)
    out = {}
    for name, value in values.items():
        kind, element = _kind(hints[name]) if name in hints else (None, None)
        out[name] = _to_tuple(name, element, value) if kind is tuple and isinstance(value, str | list) else value
    return out


def require_count(name: str, value: int, meaning: str) -> None:
    """A count of problems (`per_task`, ...) below 1 would give an empty table, not an error."""
    if not isinstance(value, int) or value < 1:
        flag = "--" + name.replace("_", "-")
        raise PonderError(f"{flag} ({name}) must be an integer >= 1 ({meaning}), got {value!r}")


def _read_yaml(path: Path, names: set[str]) -> dict:
    if not path.is_file():
        raise PonderError(f"--config {path}: no such file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise PonderError(f"--config {path} is not valid YAML: {e}")
    if not isinstance(data, dict):
        raise PonderError(f"--config {path} must be a mapping of field: value")
    unknown = sorted(set(data) - names)
    if unknown:
        raise PonderError(f"--config {path}: unknown field(s) {unknown}; allowed: {sorted(names)}")
    return data
