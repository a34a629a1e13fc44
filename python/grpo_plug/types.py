"""The small data types and component interfaces plugins implement.

Plugin authors import from :mod:`grpo_plug.api`, which re-exports these. Each class
docstring names every field (a meta-test keeps it so)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
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
    (0 = greedy), ``top_p`` (nucleus mass), ``top_k`` (-1 = whole vocabulary),
    ``min_new_tokens`` (stop tokens are not sampled before that many). Log-probs
    a backend returns are of the temperature-scaled distribution, as the learner's."""

    max_new_tokens: int
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    top_k: int = -1  # -1 = whole vocabulary
    min_new_tokens: int = 0  # no end-of-sequence token before this many new tokens


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
    ``policy_versions`` all of them, ascending (more than one when a weight update
    landed while it was generated); ``token_versions`` the one that produced each
    token of ``output_ids`` (by default all ``policy_version``). ``abort`` means cut short by
    the backend, never "no EOS": the controller resubmits it."""

    rid: str
    output_ids: list[int]
    logprobs: list[float]
    finish_reason: FinishReason
    policy_version: int
    policy_versions: list[int] = field(default_factory=list)
    token_versions: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.policy_versions:
            self.policy_versions = [self.policy_version]
        if not self.token_versions:
            self.token_versions = [self.policy_version] * len(self.output_ids)


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


@runtime_checkable
class WeightUpdateSurface(Protocol):
    """What a backend that keeps its own copy of the weights lets a strategy do, on
    every server it drives. A backend offers it by having these members (the built-in
    ones subclass it); ``grpo_plug.weight_sync.sync_weights`` runs the phases
    pause -> push -> verify -> resume around a strategy's push."""

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


@runtime_checkable
class WeightDigests(Protocol):
    """A surface that can prove every weight arrived: each server hashes each of its
    tensors, and ``expected_digests`` hashes the learner's the same way (same layout,
    dtype and hash), so verification covers every value instead of a few rows."""

    def weight_digests(self) -> list[dict[str, str]]:
        """Each up server's ``{tensor name: digest}``, in server order."""
        ...

    def expected_digests(self, named: Iterable[tuple[str, Any]]) -> dict[str, str] | None:
        """The digests the servers should report for the learner's ``(Hugging Face
        name, tensor)`` pairs, or None when this server layout cannot be predicted
        (then the strategy falls back to reading rows back)."""
        ...


TensorMeta = tuple[str, str, Sequence[int]]
"""``(Hugging Face name, dtype name, shape)`` of one tensor of a broadcast bucket."""


@runtime_checkable
class DistributedUpdateSurface(WeightUpdateSurface, Protocol):
    """A surface whose servers can join a process group with the learner as rank 0 and
    receive weights by broadcast. The backend builds its servers' request bodies; a
    group's members are the servers up when it was formed.

    ``init_weights_update_group`` and ``update_weights_from_distributed`` block until the
    learner has joined or broadcast: a strategy calls them from a thread first."""

    @property
    def comm_backend(self) -> str:
        """``nccl`` when the servers run on GPUs, else ``gloo``."""
        ...

    def server_ranks(self) -> dict[int, int]:
        """Servers up now: index -> process-group ranks it takes (its TP workers)."""
        ...

    def init_weights_update_group(
        self,
        group: str,
        master_address: str,
        master_port: int,
        rank_offsets: Mapping[int, int],
        world_size: int,
    ) -> None:
        """Server ``i`` of ``rank_offsets`` joins ``group`` from rank ``rank_offsets[i]``."""
        ...

    def begin_weight_update(self, group: str) -> None: ...

    def update_weights_from_distributed(
        self, group: str, tensors: Sequence[TensorMeta], version: int, *, last: bool
    ) -> None:
        """Receive one flattened bucket of ``tensors`` (in order); the ``last`` one
        flushes the cache and sets the weight version."""
        ...

    def end_weight_update(self, group: str) -> None: ...

    def destroy_weights_update_group(self, group: str) -> None:
        """Every member leaves ``group``; one that no longer knows it is fine."""
        ...


@runtime_checkable
class ServerBackend(Protocol):
    """A backend of servers that can die and come back (restarted, or reachable again
    after missing an update). It calls the ``restore`` given to ``on_server_back`` before
    such a server serves again: ``restore(i)`` brings server ``i`` to the last synced
    weights and returns True, or returns False when it cannot yet; the server then stays
    out of rotation and ``restore`` is called again (at the latest once the next sync
    has pushed)."""

    def server_addrs(self) -> list[str]:
        """Every server's ``host:port``, in server order."""
        ...

    def server_states(self) -> dict[str, str]:
        """addr -> ``up`` / ``suspect`` / ``restarting`` / ``waiting`` / ``failed``."""
        ...

    def on_server_back(self, restore: Callable[[int], bool]) -> None: ...

    def load_server_weights(self, index: int, path: str, version: int) -> None:
        """Server ``index`` alone loads the checkpoint at ``path`` as ``version``."""
        ...


@runtime_checkable
class ReportsProgress(Protocol):
    """An in-process backend that reports ``(samples finished, tokens generated)``
    increments from inside its decode loop."""

    def set_progress(self, callback: Callable[[int, int], None] | None) -> None: ...


class WeightSync(Protocol):
    """Moves learner weights into the rollout backend; tracks the policy version.

    ``sync`` returns the seconds of each phase (``{"load": 0.4, "verify": 0.1}``, shown as
    ``timeperf/weight_sync/<phase>``), or None."""

    name: str

    def sync(
        self, model: Any, backend: RolloutBackend, version: int
    ) -> Mapping[str, float] | None: ...

    def close(self) -> None:
        """Free what the strategy holds (saved versions, process groups)."""
        ...


WeightSyncFactory = Callable[["TrainConfig"], WeightSync]

# ----------------------------------------------------------------------- tasks and rewards


@dataclass(frozen=True)
class Example:
    """A problem: ``uid`` (unique in its split), ``question`` (shown to the model through
    the task's ``user_message``), ``gold`` (the answer reward functions grade against), an
    optional ``category`` (e.g. the operation), by which evaluation also reports
    accuracy, and ``fields``: the task's own per-example data (e.g. a difficulty or test
    cases), each passed to reward functions as a keyword of that name holding one value
    per completion, as TRL forwards dataset columns."""

    uid: str
    question: str
    gold: str
    category: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict, hash=False)


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
