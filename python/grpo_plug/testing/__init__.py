"""Test helpers for plugin authors: what a plugin's tests need in a few lines.

    from grpo_plug.testing import check_reward_function, run_training_step

    def test_contract():
        check_reward_function(my_reward)

    def test_one_step(tmp_path):
        res = run_training_step(my_plugin_module, workdir=tmp_path,
                                overrides=("reward.functions=math_accuracy,mine",
                                           "reward.weights=1,0.5"))
        assert "grpo_actor/loss" in res.metrics

- a tiny model + tokenizer built from a config (no hub): :func:`build_tiny_model`;
- a tiny task ``seven``, a ``capture`` logger, a ``version_only`` weight sync;
- :func:`isolated_host` / :func:`registered`: what a plugin registers, alone;
- ``check_*``: one contract check per component kind, failing with one clear line;
- :func:`run_training_step`: a real GRPO step with the plugin selected by config;
- pytest fixtures ``grpo_host``, ``tiny_model_dir``: see :mod:`grpo_plug.testing.pytest_plugin`.

Everything here loads torch only when a function that needs it runs.
"""

from grpo_plug.testing.checks import (
    ContractError,
    RecordingBackend,
    check_logger,
    check_reward_function,
    check_rollout_backend,
    check_task,
    check_weight_sync,
    tiny_context,
)
from grpo_plug.testing.fixtures import (
    CaptureLogger,
    SevenPlugin,
    SevenTask,
    TestingPlugin,
    VersionOnlySync,
    isolated_host,
    registered,
    tiny_config,
)
from grpo_plug.testing.harness import StepResult, run_training_step
from grpo_plug.testing.model import build_tiny_model, tiny_model

__all__ = [
    "CaptureLogger",
    "ContractError",
    "RecordingBackend",
    "SevenPlugin",
    "SevenTask",
    "StepResult",
    "TestingPlugin",
    "VersionOnlySync",
    "build_tiny_model",
    "check_logger",
    "check_reward_function",
    "check_rollout_backend",
    "check_task",
    "check_weight_sync",
    "isolated_host",
    "registered",
    "run_training_step",
    "tiny_config",
    "tiny_context",
    "tiny_model",
]
