"""Scale-out: rollout workers on Ray (`rollouts.py`)."""
