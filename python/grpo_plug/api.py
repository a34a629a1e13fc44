"""The one import for plugin authors: hook marker, registry, component interfaces, data
types, config helpers and errors.

    from grpo_plug.api import hookimpl, ComponentRegistry, RewardFunction, option
    from grpo_plug.api import grade, extract_answer   # the math grader the built-in uses

docs/plugins.md is the guide; ``grpo_plug.testing`` checks and runs what you write.
"""

from __future__ import annotations

from grpo_plug.config import ConfigError, DatasetConfig, TrainConfig, option
from grpo_plug.core import extract_answer, grade
from grpo_plug.errors import GrpoPlugError, PluginError, RequestFailed, RewardError
from grpo_plug.hookspecs import hookimpl
from grpo_plug.registry import ComponentRegistry, Entry
from grpo_plug.rewards import REWARD_KEYWORDS
from grpo_plug.types import (
    DistributedUpdateSurface,
    Example,
    FinishReason,
    GenerationRequest,
    Logger,
    LoggerFactory,
    ReportsProgress,
    RewardFunction,
    RolloutBackend,
    RolloutBackendFactory,
    RolloutContext,
    RunInfo,
    Sample,
    SamplingParams,
    ServerBackend,
    Task,
    TaskFactory,
    WeightDigests,
    WeightSync,
    WeightSyncFactory,
    WeightUpdateSurface,
)

__all__ = [
    "REWARD_KEYWORDS",
    "ComponentRegistry",
    "ConfigError",
    "DatasetConfig",
    "DistributedUpdateSurface",
    "Entry",
    "Example",
    "FinishReason",
    "GenerationRequest",
    "GrpoPlugError",
    "Logger",
    "LoggerFactory",
    "PluginError",
    "ReportsProgress",
    "RequestFailed",
    "RewardError",
    "RewardFunction",
    "RolloutBackend",
    "RolloutBackendFactory",
    "RolloutContext",
    "RunInfo",
    "Sample",
    "SamplingParams",
    "ServerBackend",
    "Task",
    "TaskFactory",
    "TrainConfig",
    "WeightDigests",
    "WeightSync",
    "WeightSyncFactory",
    "WeightUpdateSurface",
    "extract_answer",
    "grade",
    "hookimpl",
    "option",
]
