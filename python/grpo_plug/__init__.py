"""grpo-plug: GRPO training for math reasoning, with plugins and a Rust data path."""

from collections.abc import Mapping

from grpo_plug.config.validate import use_plugin_sections
from grpo_plug.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["__version__", "hookimpl"]


def _plugin_sections() -> Mapping[str, type]:
    """The process-wide plugin host's config sections (loaded on first use)."""
    from grpo_plug.plugins import get_host

    return get_host().config_sections()


# Config validation reads plugin sections through this: config never imports plugins.
use_plugin_sections(_plugin_sections)
