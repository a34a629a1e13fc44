"""grpo-plug shaping rewards: `boxed_last` and `length_penalty` (see plugin.py)."""
