# grpo_plug.testing's fixtures for this package's tests.
from grpo_plug.testing.pytest_plugin import grpo_host, tiny_model_dir  # noqa: F401
