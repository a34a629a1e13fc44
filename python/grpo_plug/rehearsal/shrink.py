"""A config cut to fit this CPU, layout kept: pure config -> config, every cut listed.

Kept as the config says: ``allocation_mode`` (servers, learner ranks), the rollout
backend, the task and its dataset, which schedules exist (eval, save, recover), the
watchdog, the loggers. Cut: the model (the embedded one, or a tiny random model
shaped like ``actor.path``'s config when that config is on this machine), the shapes,
the steps (two, one epoch, so epoch schedules fire), and the settings that need CUDA.
``weight_sync.strategy=auto`` is pinned to what it picks on the target's GPUs, since
on a CPU it would pick ``disk``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grpo_plug.config import TrainConfig, from_dict, to_dict
from grpo_plug.data import hub
from grpo_plug.data.tasks import GSM8K_HUB_ID
from grpo_plug.plan import allocation_of

STEPS = 2  # one epoch of two steps: step and epoch schedules both fire
EMBEDDED_MODEL = "embedded:smollm2-135m"
MAX_NEW_TOKENS = 16
N_SAMPLES = 2  # the least group with a spread of rewards
BATCH = 2
EVAL_SAMPLES = 4
SERVER_KV_TOKENS = 4096  # a CPU server's KV pool: ~1 GB instead of ~5
SERVER_MEM_FRACTION = 0.3  # CPU: the KV pool is capped by max_total_tokens; headroom for load
DIR_NAME = "rehearsal"  # under cluster.fileroot: the real run's folders stay untouched


@dataclass(frozen=True)
class Change:
    """One setting the rehearsal changed."""

    key: str
    old: Any
    new: Any
    why: str

    def line(self) -> str:
        return f"{self.key}: {_show(self.old)} -> {_show(self.new)}  ({self.why})"


def _show(value: Any) -> str:
    return "null" if value is None else str(value)


@dataclass(frozen=True)
class Shrunk:
    """The rehearsal's config and what changed from the user's."""

    cfg: TrainConfig
    changes: tuple[Change, ...]

    @property
    def legs(self) -> int:
        """Runs of the trainer: two with recover points (a Ctrl-C after step 1, then the
        resume), else one."""
        return 2 if self.cfg.recover.mode != "disabled" else 1


def target_layout(cfg: TrainConfig) -> str:
    """What ``weight_sync.strategy=auto`` picks for on the target machine (see
    ``weight_sync.auto_layout``): ``colocated``, ``one-device`` or ``devices``."""
    if cfg.rollout.backend != "sglang":
        return "colocated"
    if cfg.cluster.n_nodes * cfg.cluster.n_gpus_per_node <= 1:
        return "one-device"
    return "devices"


class _Edit:
    """The config as plain data, changed key by key, each change recorded."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.data = to_dict(cfg)
        self.changes: list[Change] = []

    def get(self, key: str) -> Any:
        node = self.data
        for part in key.split("."):
            node = node[part]
        return node

    def put(self, key: str, new: Any, why: str) -> None:
        *parents, leaf = key.split(".")
        node = self.data
        for part in parents:
            node = node[part]
        if node[leaf] != new:
            self.changes.append(Change(key, node[leaf], new, why))
            node[leaf] = new

    def cap(self, key: str, most: int | float, why: str, *, unset_too: bool = False) -> None:
        """Lower ``key`` to ``most``; a null (no limit) too when ``unset_too``."""
        old = self.get(key)
        if (old is None and unset_too) or (old is not None and old > most):
            self.put(key, most, why)


def shrink(
    cfg: TrainConfig,
    *,
    model: str = EMBEDDED_MODEL,
    model_why: str = "the embedded model",
    devices_strategy: str = "distributed",
) -> Shrunk:
    """``cfg`` cut to rehearse on this CPU. ``model``: what replaces ``actor.path``
    (see :func:`grpo_plug.rehearsal.model.choose`); ``devices_strategy``: the strategy
    registered for ``auto`` on servers with GPUs of their own."""
    e = _Edit(cfg)
    _layout(e, cfg, devices_strategy)
    e.put("actor.path", model, model_why)
    _devices(e, cfg)
    _shapes(e, cfg)
    _data(e, cfg)
    _schedules(e, cfg)
    sections: Mapping[str, type] = {n: type(v) for n, v in cfg.plugin_sections.items()}
    return Shrunk(from_dict(e.data, sections), tuple(e.changes))


def _layout(e: _Edit, cfg: TrainConfig, devices_strategy: str) -> None:
    if cfg.weight_sync.strategy == "auto" and target_layout(cfg) == "devices":
        e.put(
            "weight_sync.strategy",
            devices_strategy,
            "what auto picks when the servers have GPUs of their own; on a CPU it would pick disk",
        )
    e.put("cluster.n_gpus_per_node", 0, "no GPU here: every process of the layout on the CPU")
    e.put("cluster.n_nodes", 1, "one machine: every node's learner ranks start here")
    root = Path(cfg.cluster.fileroot)
    if root.name != DIR_NAME:
        e.put("cluster.fileroot", str(root / DIR_NAME), "the real run's folders stay untouched")
    if cfg.recover.mode in ("resume", "fault"):
        e.put("recover.mode", "auto", "a fresh rehearsal has no recover point to require")


def _devices(e: _Edit, cfg: TrainConfig) -> None:
    if cfg.actor.dtype in ("bfloat16", "float16"):
        e.put("actor.dtype", "float32", f"a {cfg.actor.dtype} learner is a GPU setting")
    if cfg.actor.attention in ("packed_flash", "packed_flex"):
        e.put("actor.attention", "packed", f"{cfg.actor.attention} needs CUDA")
    if cfg.sglang.device == "cuda":
        e.put("sglang.device", "cpu", "CPU servers")
    if cfg.rollout.backend == "sglang":
        if cfg.sglang.dtype in ("bfloat16", "float16"):
            e.put("sglang.dtype", "float32", "CPU servers in fp32, like the CPU learner")
        e.cap("sglang.max_total_tokens", SERVER_KV_TOKENS, "a small KV pool", unset_too=True)
        e.cap("sglang.mem_fraction_static", SERVER_MEM_FRACTION, "the CPU server setting")
    if cfg.sglang.deterministic:
        e.put("sglang.deterministic", False, "SGLang's CPU attention has no deterministic mode")
    if "wandb" in cfg.loggers and cfg.wandb.mode == "online":
        e.put("wandb.mode", "offline", "a rehearsal logs locally")


def _shapes(e: _Edit, cfg: TrainConfig) -> None:
    short = "short generations"
    e.cap("gconfig.max_new_tokens", MAX_NEW_TOKENS, short)
    if "min_new_tokens" in e.data["gconfig"]:  # where the schema has it: never above max
        e.cap("gconfig.min_new_tokens", MAX_NEW_TOKENS, short)
    e.cap("evaluator.max_new_tokens", MAX_NEW_TOKENS, short)
    e.cap("gconfig.n_samples", N_SAMPLES, "small groups")
    e.cap("train_dataset.batch_size", BATCH, "few prompts per step")
    bs = min(cfg.train_dataset.batch_size, BATCH)
    e.put("train_dataset.max_samples", bs * STEPS, f"one epoch of {STEPS} steps")
    e.put("total_train_epochs", 1, "one epoch")
    e.put("total_train_steps", STEPS, f"{STEPS} steps")
    e.cap("valid_dataset.max_samples", EVAL_SAMPLES, "few eval problems", unset_too=True)
    e.cap("dynamic_sampling.max_rounds", 1, "at most one extra round")
    if cfg.reward.no_eos_reward is not None:  # 16 tokens cut nearly every completion
        e.put("reward.no_eos_reward", None, "cut completions graded, so groups can differ")
    rounds = min(cfg.dynamic_sampling.max_rounds, 1)
    e.cap("dynamic_sampling.min_groups", (rounds + 1) * bs, "what the smaller steps can sample")


def _data(e: _Edit, cfg: TrainConfig) -> None:
    """A GSM8K hub id this machine has not cached reads as the bundled copy (the same
    data): a rehearsal runs offline, and a real run on this machine would download it."""
    for key, ds in (("train_dataset", cfg.train_dataset), ("valid_dataset", cfg.valid_dataset)):
        hub_id = ds.task == "gsm8k" and ds.path == GSM8K_HUB_ID and not Path(ds.path).exists()
        if hub_id and hub.cached_split(GSM8K_HUB_ID, ds.split) is None:
            why = f"{GSM8K_HUB_ID} is not in the Hugging Face cache here: the bundled GSM8K"
            e.put(f"{key}.path", None, why)


def _schedules(e: _Edit, cfg: TrainConfig) -> None:
    """Every schedule the config has fires within the rehearsal's steps."""
    for section in ("saver", "recover"):
        e.cap(f"{section}.freq_steps", 1, "fires every step")
        e.cap(f"{section}.freq_epochs", 1, f"fires at the end of the {STEPS}-step epoch")
    e.cap("evaluator.freq_steps", STEPS, f"fires at step {STEPS}")
    e.cap("evaluator.freq_epochs", 1, f"fires at the end of the {STEPS}-step epoch")
    if cfg.rollout.zero_reward_steps > 0:
        e.cap("rollout.zero_reward_steps", STEPS, "the watchdog can fire within the steps")


def gpu_only(cfg: TrainConfig) -> list[str]:
    """What the rehearsal of ``cfg`` (the user's config) cannot exercise on a CPU."""
    gpus = cfg.cluster.n_nodes * cfg.cluster.n_gpus_per_node
    if gpus == 0:
        return []
    alloc, ranks = allocation_of(cfg)
    out = []
    nccl = []
    if ranks > 1:
        nccl.append("the learner ranks' FSDP collectives")
    layout = target_layout(cfg)
    if layout == "devices" and cfg.weight_sync.strategy in ("auto", "distributed"):
        nccl.append("the weight broadcast to the servers")
    if nccl:
        out.append(f"NCCL: {' and '.join(nccl)} (gloo here)")
    if ranks > 1 and cfg.actor.mixed_precision:
        out.append("bf16 mixed-precision FSDP (actor.mixed_precision: bf16 compute, fp32 master)")
    if cfg.actor.dtype in ("auto", "bfloat16", "float16"):
        out.append(f"the {'bfloat16' if cfg.actor.dtype == 'auto' else cfg.actor.dtype} learner")
    shared = " on a GPU shared with the server" if layout == "one-device" and alloc else ""
    out.append(
        f"CUDA memory: {cfg.actor.path} at full shapes ({cfg.gconfig.max_new_tokens} new tokens, "
        f"{cfg.train_dataset.batch_size} prompts x {cfg.gconfig.n_samples} samples){shared}; "
        "`grpo-plug doctor` estimates it"
    )
    out.append(
        "flash / flex varlen attention (actor.attention=auto picks them on CUDA; "
        "per-document sdpa here)"
    )
    if alloc is not None:
        tp = f", tensor parallel {alloc.gen_tp}" if alloc.gen_tp > 1 else ""
        out.append(f"SGLang's CUDA kernels and speed{tp}")
    if cfg.cluster.n_nodes > 1:
        out.append(f"the {cfg.cluster.n_nodes}-node rendezvous (MASTER_ADDR, NODE_RANK)")
    return out
