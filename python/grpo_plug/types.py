"""The small data types and component interfaces plugins implement."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from grpo_plug.config import DatasetConfig, TrainConfig

FinishReason = Literal["stop", "length", "abort"]

# ----------------------------------------------------------------------- rollouts


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    top_k: int = -1  # -1 = whole vocabulary


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt, ``n`` samples wanted. ``rid`` lets a remote backend abort it."""

    rid: str
    prompt_ids: Sequence[int]
    n: int
    sampling: SamplingParams


@dataclass
class Sample:
    """One completion. ``logprobs[i]`` is the sampler's log-prob of ``output_ids[i]``."""

    rid: str
    output_ids: list[int]
    logprobs: list[float]
    finish_reason: FinishReason
    policy_version: int


@runtime_checkable
class RolloutBackend(Protocol):
    """Generates completions; remote and asynchronous by design.

    ``agenerate`` may be awaited many times concurrently (requests in flight);
    results come back per request, ``n`` samples each, in order. The in-process
    backend is the degenerate case that runs the batch at once.
    """

    name: str
    colocated: bool  # True when it shares the learner's model object

    async def agenerate(self, requests: Sequence[GenerationRequest]) -> list[list[Sample]]: ...

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Sample]]: ...

    def set_policy_version(self, version: int) -> None: ...

    def close(self) -> None: ...


@dataclass
class RolloutContext:
    """What a backend factory gets besides the config."""

    tokenizer: Any
    model: Any | None = None  # the learner's module, for colocated backends
    device: str = "cpu"


RolloutBackendFactory = Callable[["TrainConfig", RolloutContext], RolloutBackend]

# ----------------------------------------------------------------------- weight sync


class WeightSync(Protocol):
    """Moves learner weights into the rollout backend; tracks the policy version."""

    name: str

    def sync(self, model: Any, backend: RolloutBackend, version: int) -> None: ...


WeightSyncFactory = Callable[["TrainConfig"], WeightSync]

# ----------------------------------------------------------------------- tasks and rewards


@dataclass(frozen=True)
class Example:
    """A problem: the question shown to the model and the gold answer to grade against."""

    uid: str
    question: str
    gold: str


class Task(Protocol):
    name: str

    def load(self) -> list[Example]: ...

    def user_message(self, example: Example) -> str: ...


TaskFactory = Callable[["DatasetConfig", int], Task]
"""``(dataset_config, seed) -> Task``."""

RewardFunction = Callable[..., list[float | None]]
"""``(prompts, completions, *, golds, **kwargs) -> list[float | None]``."""

# ----------------------------------------------------------------------- logging


@dataclass(frozen=True)
class RunInfo:
    experiment_name: str
    trial_name: str
    log_dir: str
    config: Mapping[str, Any] = field(default_factory=dict)


class Logger(Protocol):
    """Receives metrics. May also define ``resume(global_step)``, called after a recover
    point is restored, to drop what it logged after that step."""

    name: str

    def log(self, metrics: Mapping[str, float], step: int, epoch: int) -> None: ...

    def message(self, text: str) -> None: ...

    def close(self) -> None: ...


LoggerFactory = Callable[["TrainConfig", RunInfo], Logger]

AsyncGenerate = Callable[[Sequence[GenerationRequest]], Awaitable[list[list[Sample]]]]
