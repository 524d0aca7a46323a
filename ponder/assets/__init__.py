"""Models shipped inside the package, so `ponder demo` and `ponder chat` work at once."""

from __future__ import annotations

from pathlib import Path

from ponder.errors import PonderError

ASSETS = Path(__file__).parent


def base_model_path() -> Path:
    """The shipped base model, pretrained by `ponder pretrain --recipe base`."""
    path = ASSETS / "base"
    if not (path / "config.json").is_file():
        raise PonderError(
            f"the shipped base model is missing from {path}; reinstall ponder, or rebuild it with "
            f"`ponder pretrain --recipe base --out runs/base` and copy runs/base/model there"
        )
    return path


def tools_model_path() -> Path:
    """The shipped tool model: the base fine-tuned on traces that call the calculator and search
    (`ponder sft --recipe tools`, docs/tools.md)."""
    path = ASSETS / "tools"
    if not (path / "config.json").is_file():
        raise PonderError(
            f"the shipped tool model is missing from {path}; reinstall ponder, or rebuild it with "
            f"`ponder sft --recipe tools --out runs/tools` and copy runs/tools/model there"
        )
    return path
