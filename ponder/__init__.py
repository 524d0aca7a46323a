"""ponder: build reasoning models — pretraining + reinforcement learning + test-time compute."""

__version__ = "0.1.0"
