"""Typed configuration: one schema, YAML presets, dotted ``key=value`` overrides.

Every field carries its help text (shown by ``grpo-plug config keys``) and, where it
makes sense, a range. Anything wrong (an unknown key, a wrong type, a value out of
range) raises :class:`ConfigError` with a one-line message naming the key, before any
work starts. ``schema`` holds the types, ``validate`` builds them from plain data and
``sources`` reads presets, files and overrides; ``areal`` (with its key table in
``keymap``) reads files written for AReaL, and ``convert`` writes them out in
grpo-plug's keys.
"""

from grpo_plug.config.schema import (
    ActorConfig,
    AdvNormConfig,
    ClusterConfig,
    DatasetConfig,
    DynamicSamplingConfig,
    EvaluatorConfig,
    GenerationConfig,
    RecoverConfig,
    RewardConfig,
    RolloutConfig,
    SaverConfig,
    SGLangConfig,
    TrainConfig,
    WandbConfig,
    WeightSyncConfig,
    option,
)
from grpo_plug.config.sources import (
    CONFIGS_DIR,
    DIALECTS,
    Loaded,
    apply_overrides,
    dump_yaml,
    load,
    load_verbose,
    parse_override,
    preset_names,
    preset_path,
    read_yaml,
)
from grpo_plug.config.validate import (
    Allocation,
    all_keys,
    builtin_sections,
    field_help,
    from_dict,
    parse_allocation,
    plugin_sections,
    to_dict,
)
from grpo_plug.errors import ConfigError

__all__ = [
    "CONFIGS_DIR",
    "DIALECTS",
    "ActorConfig",
    "AdvNormConfig",
    "Allocation",
    "ClusterConfig",
    "ConfigError",
    "DatasetConfig",
    "DynamicSamplingConfig",
    "EvaluatorConfig",
    "GenerationConfig",
    "Loaded",
    "RecoverConfig",
    "RewardConfig",
    "RolloutConfig",
    "SGLangConfig",
    "SaverConfig",
    "TrainConfig",
    "WandbConfig",
    "WeightSyncConfig",
    "all_keys",
    "apply_overrides",
    "builtin_sections",
    "dump_yaml",
    "field_help",
    "from_dict",
    "load",
    "load_verbose",
    "option",
    "parse_allocation",
    "parse_override",
    "plugin_sections",
    "preset_names",
    "preset_path",
    "read_yaml",
    "to_dict",
]
