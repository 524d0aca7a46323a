"""Config dataclasses <-> command-line flags and YAML files.

Every field of a config dataclass becomes a flag (`--batch-size`), documented once by the field's
`help` metadata. Precedence: dataclass default < recipe < `--config file.yaml` < explicit flags.
Unknown YAML keys and bad values raise errors that name the field and what is allowed.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path

import yaml

from ponder.errors import PonderError


def _flag_type(tp):
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    if tp is bool:
        return _parse_bool
    return tp if tp in (int, float, str) else str


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def add_config_flags(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ()) -> None:
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(f"{cls.__name__} fields")
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        group.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f.name,
            type=_flag_type(hints[f.name]),
            default=None,
            help=f"{f.metadata.get('help', '')} (default: {default})",
        )
    parser.add_argument("--config", help="YAML file of config fields (flags override it)")


def build_config(cls, args: argparse.Namespace, base: dict | None = None):
    """The config from defaults, then `base` (a recipe), then --config YAML, then explicit flags."""
    names = {f.name for f in dataclasses.fields(cls)}
    values = dict(base or {})
    if getattr(args, "config", None):
        values.update(_read_yaml(Path(args.config), names))
    values.update({k: v for k, v in vars(args).items() if k in names and v is not None})
    return cls(**values)


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
