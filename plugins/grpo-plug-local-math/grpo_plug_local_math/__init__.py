"""grpo-plug task `local_math`: math problems from a local JSONL file."""
