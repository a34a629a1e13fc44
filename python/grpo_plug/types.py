"""The small data types and component interfaces plugins implement.

Plugin authors import from :mod:`grpo_plug.api`, which re-exports these. Each class
docstring names every field (a meta-test keeps it so)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from grpo_plug.config import DatasetConfig, TrainConfig
    from grpo_plug.plan import RunPlan

FinishReason = Literal["stop", "length", "abort"]

# ----------------------------------------------------------------------- rollouts


@dataclass(frozen=True)
class SamplingParams:
    """How to sample: ``max_new_tokens`` (cap on generated tokens), ``temperature``
    (0 = greedy), ``top_p`` (nucleus mass), ``top_k`` (-1 = whole vocabulary). Log-probs
    a backend returns are of the temperature-scaled distribution, as the learner's."""

    max_new_tokens: int
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    top_k: int = -1  # -1 = whole vocabulary


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt, ``n`` samples wanted. ``rid`` (unique per request) lets a remote
    backend abort it; ``prompt_ids`` are the chat-templated prompt's token ids;
    ``sampling`` the :class:`SamplingParams`.

    ``seed``: sample ``i`` is drawn with seed ``seed + i`` where the backend supports
    per-request seeds, so a resumed run samples what the uninterrupted one would."""

    rid: str
    prompt_ids: Sequence[int]
    n: int
    sampling: SamplingParams
    seed: int | None = None


@dataclass
class Sample:
    """One completion of request ``rid``: ``output_ids`` (generated token ids, EOS
    included when it stopped), ``logprobs`` (``logprobs[i]``: the sampler's log-prob of
    ``output_ids[i]``), ``finish_reason`` ``stop`` (EOS), ``length`` (hit max_new_tokens) or
    ``abort``.

    ``policy_version`` is the oldest policy that produced any of its tokens;
    ``policy_versions`` all of them, ascending (more than one when a generation was
    aborted by a weight update and resumed under the new weights). ``abort`` means
    cut short by the backend, never "no EOS": the controller resubmits it."""

    rid: str
    output_ids: list[int]
    logprobs: list[float]
    finish_reason: FinishReason
    policy_version: int
    policy_versions: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.policy_versions:
            self.policy_versions = [self.policy_version]


@runtime_checkable
class RolloutBackend(Protocol):
    """Generates completions; remote and asynchronous by design.

    The rollout controller drives it: ``agenerate`` gets one request at a time and
    may be awaited many times concurrently (requests in flight); it returns one list
    of ``n`` samples per request, raising :class:`RequestFailed` on failure. An
    ``in_process`` backend is the degenerate case: the controller hands it the whole
    batch at once through ``generate`` (no timeouts or retries: an in-process failure
    is a bug, not a network blip).
    """

    name: str
    colocated: bool  # True when it shares the learner's model object
    in_process: bool  # True when it runs inside this process (whole batches, no retries)

    async def agenerate(self, requests: Sequence[GenerationRequest]) -> list[list[Sample]]: ...

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Sample]]: ...

    def set_policy_version(self, version: int) -> None: ...

    def stats(self) -> dict[str, float]:
        """Counters since the last call (e.g. requests per server), as metrics."""
        ...

    def close(self) -> None: ...


@dataclass
class RolloutContext:
    """What a backend factory gets besides the config: ``tokenizer`` (the learner's,
    a transformers tokenizer), ``model`` (the learner's module, for colocated backends;
    else ``None``), ``device`` (``cpu``/``cuda``), ``log_dir`` (the run's log folder:
    server logs go there), ``message`` (prints a status line for the user, or ``None``),
    ``plan`` (the run's :class:`grpo_plug.plan.RunPlan`: settings derived from the config)."""

    tokenizer: Any
    model: Any | None = None  # the learner's module, for colocated backends
    device: str = "cpu"
    log_dir: str = "."  # the run's log folder (server logs go there)
    message: Callable[[str], None] | None = None  # status lines for the user
    plan: RunPlan | None = None  # the run plan (derived settings); None outside a run


RolloutBackendFactory = Callable[["TrainConfig", RolloutContext], RolloutBackend]

# ----------------------------------------------------------------------- weight sync


class WeightUpdateSurface(Protocol):
    """What a backend that keeps its own copy of the weights lets a strategy do, on
    every server it drives. Strategies run the phases pause -> push -> verify -> resume."""

    def pause_generation(self) -> None: ...

    def continue_generation(self) -> None: ...

    def update_weights_from_disk(self, path: str, version: int) -> None:
        """Load the safetensors checkpoint at ``path`` (flushing the cache)."""
        ...

    def read_weights(self, name: str, rows: int) -> list[Any]:
        """Each server's first ``rows`` rows of parameter ``name`` (Hugging Face
        name), as float tensors, in server order."""
        ...

    @property
    def weight_dtype(self) -> str:
        """The servers' parameter dtype (``float32``, ``bfloat16``, ...)."""
        ...


class DistributedUpdateSurface(WeightUpdateSurface, Protocol):
    """A surface whose servers can join a process group with the learner as rank 0 and
    receive weights by broadcast (SGLang's distributed update API).

    ``init_weights_update_group`` and ``update_weights_from_distributed`` block until the
    learner has joined or broadcast: a strategy calls them from a thread first."""

    def ranks_per_server(self) -> list[int]: ...

    def init_weights_update_group(self, bodies: Sequence[dict[str, Any]]) -> None:
        """One body per server (each its own ``rank_offset``)."""
        ...

    def begin_weight_update(self) -> None: ...

    def update_weights_from_distributed(self, body: dict[str, Any]) -> None: ...

    def end_weight_update(self) -> None: ...

    def destroy_weights_update_group(self, group: str) -> None: ...


class WeightSync(Protocol):
    """Moves learner weights into the rollout backend; tracks the policy version."""

    name: str

    def sync(self, model: Any, backend: RolloutBackend, version: int) -> None: ...

    def close(self) -> None:
        """Free what the strategy holds (saved versions, process groups)."""
        ...


WeightSyncFactory = Callable[["TrainConfig"], WeightSync]

# ----------------------------------------------------------------------- tasks and rewards


@dataclass(frozen=True)
class Example:
    """A problem: ``uid`` (unique in its split), ``question`` (shown to the model through
    the task's ``user_message``), ``gold`` (the answer reward functions grade against) and
    an optional ``category`` (e.g. the operation), by which evaluation also reports
    accuracy."""

    uid: str
    question: str
    gold: str
    category: str | None = None


class Task(Protocol):
    """A dataset: ``name``; ``load()`` returns its examples (the trainer cuts them to the
    dataset config's ``max_samples``); ``user_message(example)`` the chat message.
    May set ``literal_answers = True`` (see :data:`RewardFunction`)."""

    name: str

    def load(self) -> list[Example]: ...

    def user_message(self, example: Example) -> str: ...


TaskFactory = Callable[["DatasetConfig", int], Task]
"""``(dataset_config, seed) -> Task``; one that also takes a ``config`` keyword gets the
run's TrainConfig (to read its own section with ``config.section(Cls)``)."""

RewardFunction = Callable[..., list[float | None]]
"""``(prompts, completions, *, golds, **kwargs) -> list[float | None]``: one score per
completion (``None``: no opinion, counted as 0). It receives only the keywords of
``grpo_plug.rewards.REWARD_KEYWORDS`` that its signature names (all with ``**kwargs``)."""

# ----------------------------------------------------------------------- logging


@dataclass(frozen=True)
class RunInfo:
    """What a logger factory gets besides the config: ``experiment_name``, ``trial_name``,
    ``log_dir`` (the run's log folder, created) and ``config`` (the whole config as plain
    data, e.g. for a tracker's run parameters)."""

    experiment_name: str
    trial_name: str
    log_dir: str
    config: Mapping[str, Any] = field(default_factory=dict)


class Logger(Protocol):
    """Receives metrics. May also define ``resume(global_step)``, called after a recover
    point is restored, to drop what it logged after that step, and ``start_fresh()``,
    called when the run starts at step 0 instead, to set aside an earlier attempt's rows."""

    name: str

    def log(self, metrics: Mapping[str, float], step: int, epoch: int) -> None: ...

    def message(self, text: str) -> None: ...

    def close(self) -> None: ...


LoggerFactory = Callable[["TrainConfig", RunInfo], Logger]

AsyncGenerate = Callable[[Sequence[GenerationRequest]], Awaitable[list[list[Sample]]]]
