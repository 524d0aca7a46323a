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
