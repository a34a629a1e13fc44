"""Contract checks, one per component kind: each runs the component the way the trainer
does and raises :class:`ContractError` with one line naming what is wrong.

Each accepts the component or its factory (as registered) and returns the component
(or, for reward functions, the scores), so a test can go on asserting its own things.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast, get_args

from grpo_plug import config as cfgmod
from grpo_plug.errors import RewardError
from grpo_plug.rewards import REWARD_KEYWORDS, accepted_keywords, adapt_reward
from grpo_plug.types import (
    Example,
    FinishReason,
    GenerationRequest,
    Logger,
    RolloutBackend,
    RolloutContext,
    RunInfo,
    Sample,
    SamplingParams,
    Task,
    WeightSync,
)

T = TypeVar("T")


class ContractError(AssertionError):
    """A component breaks its contract; the message says which part."""


SECTION_HINT = (
    " (a check runs with the default config unless given cfg=, and that has no plugin "
    "sections: pass cfg=grpo_plug.config.load(sections=isolated_host(YourPlugin())"
    ".config_sections()))"
)


def _with_hint(message: str) -> str:
    """A component reading a section the check's config lacks: say how to give it one."""
    return message + SECTION_HINT if "not a config section of this run" in message else message


def _fail(what: str, message: str) -> ContractError:
    return ContractError(_with_hint(f"{what}: {message}"))


def _call(what: str, step: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args)``, or a ContractError naming ``what`` and the ``step`` that raised."""
    try:
        return fn(*args, **kwargs)
    except ContractError:
        raise
    except Exception as e:
        raise _fail(what, f"{step} raised {type(e).__name__}: {e}") from e


def _name(what: str, obj: object) -> str:
    name = getattr(obj, "name", None)
    if not isinstance(name, str) or not name:
        raise _fail(what, f"needs a non-empty str attribute `name`, has {name!r}")
    return name


def _default_config() -> cfgmod.TrainConfig:
    return cfgmod.load(sections={})


# ----------------------------------------------------------------------- rewards

_PROMPTS = ["What is 2 + 3?", "What is 4 * 5?", "What is 9 - 1?"]
_COMPLETIONS = ["It is \\boxed{5}.", "I think 21", ""]
_GOLDS = ["5", "20", "8"]
_FUTURE_KEYWORD = "grpo_plug_testing_future_keyword"


def check_reward_function(
    fn: Callable[..., Any],
    prompts: Sequence[str] = _PROMPTS,
    completions: Sequence[str] = _COMPLETIONS,
    golds: Sequence[str] = _GOLDS,
    name: str = "under test",
    cfg: cfgmod.TrainConfig | None = None,
    completion_ids: Sequence[Sequence[int]] | None = None,
) -> list[float | None]:
    """Call ``fn`` as the trainer does (every documented keyword, ``config`` = ``cfg``
    or the defaults, ``completion_ids`` = the given ids or each completion's UTF-8
    bytes, plus one added later that a ``**kwargs`` function must tolerate) and on an
    empty batch; return its scores for ``completions``."""
    what = f"reward function {name!r}"
    if not callable(fn):
        raise _fail(what, f"is not callable ({type(fn).__name__})")
    config = cfg or _default_config()
    if completion_ids is None:  # a byte-level tokenizer stands in for the model's
        completion_ids = [list(c.encode()) for c in completions]
    if len(completion_ids) != len(completions):
        raise ValueError(f"{len(completion_ids)} completion_ids for {len(completions)} completions")
    keywords: dict[str, Any] = {
        "golds": list(golds),
        "literal_answers": False,
        "config": config,
        "completion_ids": [list(ids) for ids in completion_ids],
    }
    assert set(keywords) == set(REWARD_KEYWORDS), "check_reward_function is out of date"
    accepted = accepted_keywords(fn)
    named = {k: v for k, v in keywords.items() if accepted is None or k in accepted}
    try:
        inspect.signature(fn).bind([], [], **named)
    except TypeError as e:
        raise _fail(what, f"must take (prompts, completions, **keywords): {e}") from None
    call = adapt_reward(fn, name, "under test")
    try:
        scores = call(list(prompts), list(completions), **keywords, **{_FUTURE_KEYWORD: 1})
        empty = call([], [], golds=[], literal_answers=False, config=config, completion_ids=[])
    except RewardError as e:
        raise ContractError(_with_hint(str(e))) from e
    if empty != []:
        raise _fail(what, f"returned {empty!r} for no completions, expected []")
    return scores


# ----------------------------------------------------------------------- tasks


def check_task(
    component: Task | Callable[..., Task],
    dataset: cfgmod.DatasetConfig | None = None,
    seed: int = 1,
    cfg: cfgmod.TrainConfig | None = None,
) -> Task:
    """Build the task (from its factory with ``dataset``, default ``max_samples=5``, and
    ``config=cfg`` if it takes that keyword), load it and check the examples and
    ``user_message``. ``max_samples`` need not be applied: the trainer cuts the list."""
    from grpo_plug.data.tasks import build_task

    what = "task"
    dataset = dataset or cfgmod.DatasetConfig(max_samples=5)
    if hasattr(component, "load") and not isinstance(component, type):  # built already
        task = cast(Task, component)
    else:
        factory = cast(Callable[..., Task], component)
        config = cfg or _default_config()
        step = "the factory (dataset_config, seed)"
        task = _call(what, step, build_task, factory, dataset, seed, config)
    what = f"task {_name(what, task)!r}"
    examples = _call(what, "load()", task.load)
    if not isinstance(examples, list) or not examples:
        raise _fail(what, f"load() must return a non-empty list, got {examples!r:.80}")
    uids: set[str] = set()
    for i, ex in enumerate(examples):
        if not isinstance(ex, Example):
            raise _fail(what, f"load()[{i}] is {type(ex).__name__}, expected Example")
        for field in ("uid", "question", "gold"):
            if not isinstance(getattr(ex, field), str) or not getattr(ex, field).strip():
                raise _fail(what, f"load()[{i}].{field} must be a non-empty str")
        if ex.uid in uids:
            raise _fail(what, f"load()[{i}].uid {ex.uid!r} repeats an earlier one")
        uids.add(ex.uid)
    from grpo_plug.rewards import check_field_names

    _call(what, "its examples' fields", check_field_names, _name("task", task), examples)
    message = _call(what, "user_message()", task.user_message, examples[0])
    if not isinstance(message, str) or not message.strip():
        raise _fail(what, f"user_message() must return a non-empty str, got {message!r}")
    return task


# ----------------------------------------------------------------------- loggers


def check_logger(
    component: Logger | Callable[[cfgmod.TrainConfig, RunInfo], Logger],
    log_dir: Path | None = None,
    cfg: cfgmod.TrainConfig | None = None,
) -> Logger:
    """Build the logger into ``log_dir`` (a temporary folder by default) and call it in
    the trainer's order (:data:`LOGGER_CALL_ORDER`): a fresh run logging steps 1 and 2,
    then, given a factory, a second instance as a rerun resuming at step 1 builds it
    (``resume(1)``: what the first logged after step 1 goes). Returns the first one."""
    what = "logger"
    if hasattr(component, "log") and not isinstance(component, type):  # built already
        logger = cast(Logger, component)
        _one_run(logger, resume_at=None)
        return logger
    folder = str(log_dir or tempfile.mkdtemp(prefix="grpo-plug-logger-"))
    run = RunInfo("check", "trial0", folder, {"seed": 1})
    factory = cast(Callable[..., Logger], component)
    cfg = cfg or _default_config()
    logger = _call(what, "the factory (config, run_info)", factory, cfg, run)
    _one_run(logger, resume_at=None)
    again = _call(what, "the factory (config, run_info), for a rerun", factory, cfg, run)
    _one_run(again, resume_at=1)
    return logger


LOGGER_CALL_ORDER = (
    "factory(config, run_info); message(text) for status lines while the run starts "
    "(servers, checks); exactly one of start_fresh() (step 0) or resume(global_step) "
    "(after a recover point is restored), where defined; then log(metrics, step, epoch) "
    "and message(text) as the run goes; close() last, also after an error"
)
"""The order the trainer calls a logger in (docs/plugins.md repeats it)."""


def _one_run(logger: Logger, resume_at: int | None) -> None:
    """One run's calls, in :data:`LOGGER_CALL_ORDER`."""
    what = f"logger {_name('logger', logger)!r}"
    for method in ("log", "message", "close"):
        if not callable(getattr(logger, method, None)):
            raise _fail(what, f"has no method {method}()")
    _call(what, "message()", logger.message, "loading the model")  # before the run's start
    if resume_at is None:
        fresh = getattr(logger, "start_fresh", None)
        if fresh is not None:
            _call(what, "start_fresh()", fresh)
        _call(what, "log()", logger.log, {"grpo_actor/loss": 0.5, "timeperf/rollout": 1.0}, 1, 0)
        _call(what, "log()", logger.log, {"grpo_actor/loss": 0.25}, 2, 0)
    else:
        resume = getattr(logger, "resume", None)
        if resume is not None:
            _call(what, "resume(global_step)", resume, resume_at)
    _call(what, "message()", logger.message, "a status line")
    _call(what, "close()", logger.close)


# ----------------------------------------------------------------------- rollout backends

_FINISH = set(get_args(FinishReason))


def _requests(max_new_tokens: int) -> list[GenerationRequest]:
    sp = SamplingParams(max_new_tokens=max_new_tokens, temperature=1.0)
    return [
        GenerationRequest(rid="check-0", prompt_ids=[1, 4, 5], n=2, sampling=sp, seed=1),
        GenerationRequest(rid="check-1", prompt_ids=[1, 6], n=3, sampling=sp, seed=2),
    ]


def _check_samples(
    what: str, requests: Sequence[GenerationRequest], out: object, version: int
) -> None:
    if not isinstance(out, list) or len(out) != len(requests):
        raise _fail(what, f"must return one list per request ({len(requests)}), got {out!r:.80}")
    for req, samples in zip(requests, out, strict=True):
        if not isinstance(samples, list) or len(samples) != req.n:
            raise _fail(what, f"request {req.rid!r} wants n={req.n} samples, got {samples!r:.80}")
        for s in samples:
            where = f"sample of {req.rid!r}"
            if not isinstance(s, Sample):
                raise _fail(what, f"{where} is {type(s).__name__}, expected Sample")
            if s.rid != req.rid:
                raise _fail(what, f"{where} has rid {s.rid!r}")
            if not all(isinstance(t, int) for t in s.output_ids):
                raise _fail(what, f"{where}: output_ids must be ints")
            if len(s.output_ids) > req.sampling.max_new_tokens:
                raise _fail(what, f"{where}: {len(s.output_ids)} tokens > max_new_tokens")
            if len(s.logprobs) != len(s.output_ids):
                raise _fail(
                    what, f"{where}: {len(s.logprobs)} logprobs for {len(s.output_ids)} tokens"
                )
            if len(s.token_versions) != len(s.output_ids):
                raise _fail(
                    what,
                    f"{where}: {len(s.token_versions)} token_versions for "
                    f"{len(s.output_ids)} tokens (leave it empty: one version for all)",
                )
            if not all(math.isfinite(lp) and lp <= 1e-6 for lp in s.logprobs):
                raise _fail(what, f"{where}: logprobs must be finite and <= 0")
            if s.finish_reason not in _FINISH:
                raise _fail(what, f"{where}: finish_reason {s.finish_reason!r} not in {_FINISH}")
            if s.finish_reason == "length" and len(s.output_ids) != req.sampling.max_new_tokens:
                raise _fail(what, f"{where}: 'length' with {len(s.output_ids)} tokens")
            if s.policy_version != version:
                raise _fail(
                    what,
                    f"{where}: policy_version {s.policy_version}, expected {version} "
                    "(the last set_policy_version)",
                )


def check_rollout_backend(
    component: RolloutBackend | Callable[[cfgmod.TrainConfig, RolloutContext], RolloutBackend],
    ctx: RolloutContext | None = None,
    cfg: cfgmod.TrainConfig | None = None,
    max_new_tokens: int = 4,
) -> RolloutBackend:
    """Build the backend (factory: with ``cfg`` and ``ctx``, default the tiny model's
    tokenizer), generate two requests the way the controller does (``generate`` for an
    in-process backend, concurrent ``agenerate`` calls otherwise) and check every
    sample: count, rid, lengths, log-probs, finish reason and policy version."""
    what = "rollout backend"
    if hasattr(component, "agenerate") and not isinstance(component, type):  # built already
        backend = cast(RolloutBackend, component)
    else:
        factory = cast(Callable[..., RolloutBackend], component)
        ctx = ctx or tiny_context()
        backend = _call(
            what, "the factory (config, context)", factory, cfg or _default_config(), ctx
        )
    what = f"rollout backend {_name(what, backend)!r}"
    for flag in ("colocated", "in_process"):
        if not isinstance(getattr(backend, flag, None), bool):
            raise _fail(what, f"needs a bool attribute `{flag}`")
    for method in ("agenerate", "generate", "set_policy_version", "stats", "close"):
        if not callable(getattr(backend, method, None)):
            raise _fail(what, f"has no method {method}()")
    if not inspect.iscoroutinefunction(backend.agenerate):
        raise _fail(what, "agenerate must be `async def`")
    _call(what, "set_policy_version()", backend.set_policy_version, 3)
    requests = _requests(max_new_tokens)
    if backend.in_process:
        out = _call(what, "generate()", backend.generate, requests)
    else:

        async def each() -> list[list[Sample]]:
            got = await asyncio.gather(*(backend.agenerate([r]) for r in requests))
            for r, one in zip(requests, got, strict=True):
                if not isinstance(one, list) or len(one) != 1:
                    raise _fail(what, f"agenerate([{r.rid!r}]) must return one list")
            return [one[0] for one in got]

        out = _call(what, "agenerate()", asyncio.run, each())
    _check_samples(what, requests, out, 3)
    stats = _call(what, "stats()", backend.stats)
    if not isinstance(stats, dict) or not all(isinstance(v, (int, float)) for v in stats.values()):
        raise _fail(what, f"stats() must return dict[str, float], got {stats!r:.80}")
    _call(what, "close()", backend.close)
    return backend


def tiny_context(model_dir: Path | None = None) -> RolloutContext:
    """A RolloutContext with the tiny model's tokenizer and module (built on first use)."""
    from grpo_plug.models import load_model, load_tokenizer
    from grpo_plug.testing.model import tiny_model

    path = tiny_model(model_dir or Path(tempfile.gettempdir()) / "grpo-plug-tiny-model")
    folder = tempfile.mkdtemp(prefix="grpo-plug-backend-")
    return RolloutContext(
        tokenizer=load_tokenizer(str(path)),
        model=load_model(str(path), dtype="float32"),
        log_dir=folder,
    )


# ----------------------------------------------------------------------- weight sync


class RecordingBackend:
    """A stand-in backend with the whole update surface, recording every call; give
    ``colocated=True`` to check a strategy meant for colocated backends."""

    name = "recording"
    in_process = True

    def __init__(self, colocated: bool = False) -> None:
        self.colocated = colocated
        self.version = 0
        self.calls: list[str] = []
        self.weight_dtype = "float32"

    async def agenerate(self, requests: Sequence[GenerationRequest]) -> list[list[Sample]]:
        return self.generate(requests)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Sample]]:
        return [[] for _ in requests]

    def set_policy_version(self, version: int) -> None:
        self.calls.append("set_policy_version")
        self.version = version

    def stats(self) -> dict[str, float]:
        return {}

    def close(self) -> None:
        pass

    def pause_generation(self) -> None:
        self.calls.append("pause_generation")

    def continue_generation(self) -> None:
        self.calls.append("continue_generation")

    def update_weights_from_disk(self, path: str, version: int) -> None:
        self.calls.append("update_weights_from_disk")
        self.version = version

    def read_weights(self, name: str, rows: int) -> list[Any]:
        self.calls.append("read_weights")
        return []


def check_weight_sync(
    component: WeightSync | Callable[[cfgmod.TrainConfig], WeightSync],
    backend: RolloutBackend | None = None,
    model: object | None = None,
    cfg: cfgmod.TrainConfig | None = None,
    *,
    updates: bool = True,
) -> WeightSync:
    """Build the strategy, sync twice into ``backend`` (a :class:`RecordingBackend` by
    default) and check ``sync`` returns None or its phase timings, the backend reports
    each new policy version, that generation
    paused is resumed, and that ``close`` works. ``updates=False`` is for a strategy
    that deliberately pushes nothing (a frozen server): the backend's version must then
    stay where it was, so no sample is tagged with a policy that did not make it."""
    what = "weight-sync strategy"
    if hasattr(component, "sync") and not isinstance(component, type):  # built already
        sync = cast(WeightSync, component)
    else:
        factory = cast(Callable[..., WeightSync], component)
        sync = _call(what, "the factory (config)", factory, cfg or _default_config())
    what = f"weight-sync strategy {_name(what, sync)!r}"
    backend = backend or RecordingBackend()
    start = getattr(backend, "version", None)
    for version in (1, 2):
        phases = _call(what, "sync(model, backend, version)", sync.sync, model, backend, version)
        if phases is not None and not (
            isinstance(phases, Mapping)
            and all(isinstance(k, str) and isinstance(v, float) for k, v in phases.items())
        ):
            raise _fail(
                what, f"sync() must return None or phase -> seconds floats, got {phases!r:.80}"
            )
        want = version if updates else start
        got = getattr(backend, "version", want)  # a backend without one: not checkable
        if got != want:
            says = "" if updates else " (updates=False: a strategy that pushes nothing)"
            raise _fail(
                what,
                f"after sync(..., version={version}) the backend is at {got!r}, "
                f"expected {want!r}{says}",
            )
    calls: list[str] = getattr(backend, "calls", [])
    if calls.count("pause_generation") != calls.count("continue_generation"):
        raise _fail(what, f"paused generation without resuming it ({calls})")
    _call(what, "close()", sync.close)
    return sync
