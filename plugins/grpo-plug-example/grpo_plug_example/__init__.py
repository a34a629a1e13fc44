"""Example grpo-plug plugin package."""
