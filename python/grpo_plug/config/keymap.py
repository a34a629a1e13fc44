"""AReaL's config keys and what each becomes here: one table, read by the translator
(:mod:`grpo_plug.config.areal`), by ``grpo-plug config convert`` and by the README's key
map (a test checks the README against :func:`markdown_tables`).

Kinds of rule:

- ``set``: the value goes to ``target`` (the same name, or a new one);
- ``special``: the translator combines it with other keys (``target`` names where it
  lands; ``why`` says how);
- ``equal``: grpo-plug has one setting where AReaL has two; accepted when the value
  equals ``target``'s, else an error;
- ``fixed``: accepted with one of ``values`` (what grpo-plug always does), else an error;
- ``ignored``: accepted, no effect here (``why``).

A ``*`` stands for one section name; a trailing ``.*`` for everything under a section.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

Kind = Literal["set", "special", "equal", "fixed", "ignored"]


@dataclass(frozen=True)
class Rule:
    areal: str
    kind: Kind
    target: str = ""
    why: str = ""
    values: tuple[Any, ...] = ()

    @property
    def renamed(self) -> bool:
        return self.kind in ("set", "special") and self.target != self.areal


def _same(*keys: str) -> list[Rule]:
    return [Rule(k, "set", k) for k in keys]


def _set(areal: str, target: str, why: str = "") -> Rule:
    return Rule(areal, "set", target, why)


def _equal(areal: str, target: str, why: str) -> Rule:
    return Rule(areal, "equal", target, why)


def _fixed(areal: str, values: tuple[Any, ...], why: str) -> Rule:
    return Rule(areal, "fixed", "", why, values)


def _ignored(areal: str, why: str) -> Rule:
    return Rule(areal, "ignored", "", why)


_OPT = "actor.optimizer."
_SPLIT = "valid_dataset.split is set to test (AReaL's gsm8k example evaluates on it)"
_ASYNC = "asynchronous training"
_PER_SECTION = "grpo-plug names every part of a run from the top-level key"

RULES: tuple[Rule, ...] = (
    *_same("experiment_name", "trial_name", "seed", "total_train_epochs"),
    *_same("cluster.n_nodes", "cluster.n_gpus_per_node", "cluster.fileroot"),
    Rule(
        "allocation_mode",
        "special",
        "allocation_mode",
        "same layout syntax; an SGLang layout also sets rollout.backend: sglang",
    ),
    _set("max_train_samples", "train_dataset.max_samples", "the first N training problems"),
    Rule(
        "circuit_breaker_enabled",
        "special",
        "rollout.zero_reward_steps",
        "false sets 0 (watchdog off)",
    ),
    Rule(
        "circuit_breaker_threshold",
        "special",
        "rollout.zero_reward_steps",
        "the zero-reward watchdog: steps in a row with task reward 0 before the run "
        "stops (server errors seen) or warns",
    ),
    Rule(
        "async_training",
        "special",
        "rollout.max_head_offpolicyness",
        f"false sets max_head_offpolicyness to 0; {_ASYNC}",
    ),
    Rule(
        "rollout.max_head_offpolicyness",
        "special",
        "rollout.max_head_offpolicyness",
        f"0 when async_training is false; {_ASYNC}",
    ),
    *_same("rollout.max_concurrent_rollouts", "rollout.request_timeout", "rollout.request_retries"),
    _set("rollout.setup_timeout", "sglang.startup_timeout", "seconds a server may take to start"),
    *_same("gconfig.n_samples", "gconfig.max_new_tokens", "gconfig.temperature"),
    *_same("gconfig.min_new_tokens", "gconfig.greedy", "gconfig.top_p", "gconfig.top_k"),
    *_same("actor.path", "actor.dtype", "actor.gradient_checkpointing", "actor.disable_dropout"),
    _set("actor.mb_spec.max_tokens_per_mb", "actor.mb_max_tokens", "token budget of a micro-batch"),
    _fixed(_OPT + "type", ("adam",), "grpo-plug's optimizer is AdamW, what AReaL's adam builds"),
    _set(_OPT + "lr", "actor.lr"),
    _set(_OPT + "weight_decay", "actor.weight_decay"),
    _set(_OPT + "beta1", "actor.adam_beta1"),
    _set(_OPT + "beta2", "actor.adam_beta2"),
    _set(_OPT + "eps", "actor.adam_eps"),
    _set(_OPT + "lr_scheduler_type", "actor.lr_scheduler_type", "constant, linear or cosine"),
    _set(_OPT + "warmup_steps_proportion", "actor.warmup_steps_proportion"),
    _set(_OPT + "min_lr_ratio", "actor.min_lr_ratio"),
    _set(_OPT + "gradient_clipping", "actor.max_grad_norm", "max global grad norm"),
    *_same("actor.eps_clip", "actor.kl_ctl", "actor.ppo_n_minibatches", "actor.recompute_logprob"),
    *_same("actor.reward_scaling", "actor.reward_bias"),
    Rule("actor.use_decoupled_loss", "special", "actor.use_decoupled_loss", _ASYNC),
    Rule(
        "actor.behav_imp_weight_cap",
        "special",
        "actor.behav_imp_weight_cap",
        f"{_ASYNC}; acts only with use_decoupled_loss, as in AReaL",
    ),
    Rule(
        "actor.reward_norm.mean_level",
        "special",
        "actor.adv_mode",
        "with std_level: group/group is adv_mode grpo, group/null is dr_grpo",
    ),
    Rule("actor.reward_norm.std_level", "special", "actor.adv_mode", "see mean_level"),
    Rule(
        "actor.adv_norm.mean_level",
        "special",
        "actor.adv_norm.mean_level",
        "batch, group or null (none); token-weighted",
    ),
    Rule("actor.adv_norm.std_level", "special", "actor.adv_norm.std_level", "as mean_level"),
    Rule("actor.adv_norm", "special", "actor.adv_norm", "null: no advantage normalisation"),
    _equal("actor.group_size", "gconfig.n_samples", "the group is the samples of one prompt"),
    _equal("actor.reward_norm.group_size", "gconfig.n_samples", "as actor.group_size"),
    _equal("actor.adv_norm.group_size", "gconfig.n_samples", "as actor.group_size"),
    _equal("actor.temperature", "gconfig.temperature", "the learner's log-probs use it"),
    _equal("actor.max_new_tokens", "gconfig.max_new_tokens", "one generation length"),
    _equal("tokenizer_path", "actor.path", "the tokenizer is loaded from actor.path"),
    _equal(
        "rollout.consumer_batch_size",
        "train_dataset.batch_size",
        "a step consumes one batch of prompt groups",
    ),
    _equal("ref.path", "actor.path", "the reference model is actor.path's initial weights"),
    _equal("ref.dtype", "actor.dtype", "the reference model runs in the actor's dtype"),
    _equal("sglang.model_path", "actor.path", "servers load actor.path"),
    _fixed(
        "actor.backend", ("fsdp",), "the learner is FSDP2 under torchrun, plain torch on one rank"
    ),
    _fixed("ref.backend", ("fsdp",), "as actor.backend"),
    _fixed("actor.init_from_scratch", (False,), "training starts from actor.path's weights"),
    _fixed("ref.init_from_scratch", (False,), "as actor.init_from_scratch"),
    _fixed("ref.optimizer", (None,), "the reference model is never trained"),
    _fixed("train_dataset.type", ("rl",), "prompts with a gold answer, the only kind"),
    _fixed("valid_dataset.type", ("rl",), "as train_dataset.type"),
    *_same("sglang.random_seed", "sglang.dtype", "sglang.context_length"),
    *_same("sglang.mem_fraction_static"),
    Rule(
        "sglang.max_running_requests",
        "special",
        "sglang.extra_args",
        "a number adds --max-running-requests N; null: SGLang's own default",
    ),
    *_same("train_dataset.batch_size", "train_dataset.shuffle", "train_dataset.path"),
    *_same("valid_dataset.batch_size", "valid_dataset.shuffle"),
    _set("valid_dataset.path", "valid_dataset.path", _SPLIT),
    *_same("saver.freq_epochs", "saver.freq_steps", "saver.freq_secs"),
    *_same("recover.mode", "recover.freq_epochs", "recover.freq_steps", "recover.freq_secs"),
    *_same("evaluator.freq_epochs", "evaluator.freq_steps"),
    _fixed("evaluator.freq_secs", (None,), "evaluation runs by steps or epochs, not by the clock"),
    Rule(
        "stats_logger.wandb.mode",
        "special",
        "wandb.mode",
        "online/offline also adds wandb to loggers",
    ),
    _set("stats_logger.wandb.project", "wandb.project"),
    _set("stats_logger.wandb.entity", "wandb.entity"),
    # accepted, no effect here
    _ignored("training_mode", "a label the seed's scripts printed; nothing reads it"),
    _ignored("cluster.name_resolve.*", "no name-resolve service: rank 0 knows every address"),
    _ignored("launcher.*", "grpo-plug starts its own processes (torchrun, SGLang servers)"),
    _ignored("*.experiment_name", _PER_SECTION),
    _ignored("*.trial_name", _PER_SECTION),
    _ignored("*.fileroot", "every output goes under cluster.fileroot"),
    _ignored("*.pin_memory", "prompts are token lists, not tensors loaded by a DataLoader"),
    _ignored("*.num_workers", "the dataset is read once, in the main process"),
    _ignored("*.max_length", "prompts are not filtered by length (GSM8K's are far shorter)"),
    _ignored("rollout.queue_size", "no output queue: max_concurrent_rollouts bounds the work"),
    _ignored("rollout.enable_rollout_tracing", "events.jsonl records every stage of a step"),
    _ignored("sglang.skip_tokenizer_init", "servers always get token ids and skip the tokenizer"),
    _ignored(
        "actor.dynamic_sampling",
        "groups whose rewards are all equal always leave the batch (AReaL's true); "
        "DAPO's resampling is dynamic_sampling.max_rounds",
    ),
    _ignored("ref.mb_spec.max_tokens_per_mb", "the reference runs on the actor's micro-batches"),
    _ignored("ref.disable_dropout", "the reference model always runs in eval mode"),
    _ignored(
        "stats_logger.wandb.wandb_api_key",
        "the wandb logger reads WANDB_API_KEY from the environment, where ${oc.env:...} reads it",
    ),
)

# grpo-plug keys an AReaL-style file implies without naming them.
IMPLIED: tuple[tuple[str, Any, str], ...] = (
    ("valid_dataset.split", "test", "AReaL's gsm8k example evaluates on the test split"),
)


@cache
def _patterns() -> tuple[dict[str, Rule], list[tuple[re.Pattern[str], Rule]]]:
    exact: dict[str, Rule] = {}
    wild: list[tuple[re.Pattern[str], Rule]] = []
    for rule in RULES:
        if "*" not in rule.areal:
            exact[rule.areal] = rule
            continue
        rx = re.escape(rule.areal)
        rx = re.sub(r"\\\.\\\*$", r"\\..+", rx).replace(r"\*", r"[^.]+")
        wild.append((re.compile(rx), rule))
    return exact, wild


def rule_for(key: str) -> Rule | None:
    """The rule for dotted AReaL key ``key`` (exact names first), or None."""
    exact, wild = _patterns()
    if key in exact:
        return exact[key]
    return next((rule for rx, rule in wild if rx.fullmatch(key)), None)


def areal_keys() -> list[str]:
    """The AReaL keys named in full (did-you-mean candidates)."""
    return [r.areal for r in RULES if "*" not in r.areal]


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_tables() -> str:
    """The README's key map: the keys that keep their name and meaning, a table of the
    others that act, and a table of the keys accepted with no effect."""
    same = [r.areal for r in RULES if r.kind == "set" and not r.renamed and not r.why]
    head = "Same name, same meaning: " + ", ".join(f"`{k}`" for k in same) + ".\n\n"
    acts = ["| AReaL key | grpo-plug key | note |", "|---|---|---|"]
    none = ["| AReaL key | accepted when | why it has no effect here |", "|---|---|---|"]
    for r in RULES:
        if r.kind in ("set", "special") and r.areal in same:
            continue
        if r.kind in ("set", "special"):
            acts.append(f"| `{r.areal}` | `{r.target}` | {_cell(r.why)} |")
        elif r.kind == "equal":
            when = f"equal to `{r.target}`"
            none.append(f"| `{r.areal}` | {when} | {_cell(r.why)} |")
        else:
            when = " or ".join(f"`{_yaml_value(v)}`" for v in r.values) or "any value"
            none.append(f"| `{r.areal}` | {when} | {_cell(r.why)} |")
    return head + "\n".join(acts) + "\n\n" + "\n".join(none) + "\n"


def _yaml_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)
