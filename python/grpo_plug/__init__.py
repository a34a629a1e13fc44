"""grpo-plug: GRPO training for math reasoning, with plugins and a Rust data path."""

from grpo_plug.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["__version__", "hookimpl"]
