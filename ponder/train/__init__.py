"""Training loops: next-token (pretrain, sft) and reinforcement learning."""
