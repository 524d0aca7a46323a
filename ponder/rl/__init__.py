"""Reinforcement learning on verifiable rewards: advantages, losses and the training loop."""
