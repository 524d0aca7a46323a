"""ponder's sampling engine (engine.py: how a call runs; live.py: the running batch that requests join
and sequences pause in for tools)."""

from ponder.engine.engine import Engine, Rollout
from ponder.engine.live import Event, LiveBatch
from ponder.engine.sampling import SamplingParams

__all__ = ["Engine", "Event", "LiveBatch", "Rollout", "SamplingParams"]
