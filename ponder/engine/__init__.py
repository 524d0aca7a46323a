"""ponder's sampling engine (see engine.py for how a call runs)."""

from ponder.engine.engine import Engine, Rollout
from ponder.engine.sampling import SamplingParams

__all__ = ["Engine", "Rollout", "SamplingParams"]
