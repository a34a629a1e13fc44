"""Datasets and prompts: the built-in tasks (GSM8K, arithmetic), loading a task's
examples, and turning one into prompt token ids."""
