"""Kept so existing imports work; the code lives in grpo_plug.testing.model."""

from grpo_plug.testing.model import build_tiny_model

__all__ = ["build_tiny_model"]
