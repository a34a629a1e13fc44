"""Every metric name, once. The seed's WandB names; loggers, dashboard and report use these."""

from __future__ import annotations

from dataclasses import dataclass

TASK_REWARD = "grpo_actor/task_reward/avg"  # = training accuracy
TASK_REWARD_MIN = "grpo_actor/task_reward/min"
TASK_REWARD_MAX = "grpo_actor/task_reward/max"
REWARD = "grpo_actor/reward/avg"  # all reward functions, weighted
LOSS = "grpo_actor/loss"
KL = "grpo_actor/kl"
CLIP_RATIO = "grpo_actor/clip_ratio"
ENTROPY = "grpo_actor/entropy"
GRAD_NORM = "grpo_actor/grad_norm"
LR = "grpo_actor/lr"
SEQ_LEN = "grpo_actor/seq_len/avg"
SEQ_LEN_MAX = "grpo_actor/seq_len/max"
NO_EOS = "grpo_actor/no_eos_ratio"
ZERO_ADV = "grpo_actor/zero_adv_ratio"  # of all groups the step sampled
SIGNAL_GROUPS = "grpo_actor/signal_groups"  # groups with non-zero advantage: trained on
DYNAMIC_ROUNDS = "rollout/dynamic_rounds"  # extra rounds of prompts (dynamic_sampling)
IMPORTANCE_WEIGHT = "grpo_actor/importance_weight"
LOGPROB_DIFF = "grpo_actor/logprob_abs_diff"
# Sampler's vs learner's log-probs before the update (only with actor.recompute_logprob).
SAMPLER_LOGPROB_DIFF = "grpo_actor/sampler_logprob_abs_diff"
# actor.use_decoupled_loss: mean pi_prox/pi_behav over the tokens within the cap, and
# the fraction of tokens over actor.behav_imp_weight_cap (masked out of the loss).
BEHAV_IMP_WEIGHT = "grpo_actor/behave_imp_weight"
BEHAV_MASKED = "grpo_actor/behave_masked_ratio"
POLICY_VERSION = "grpo_actor/policy_version"
GEN_TOKENS_PER_S = "grpo_actor/gen_tokens_per_s"
EVAL_ACCURACY = "grpo-eval/task_reward/avg"
PEAK_RSS_GB = "perf/peak_rss_gb"
CPU_THREADS = "perf/cpu_threads"  # the learner's torch threads this step (adapt_threads)
CPU_OTHERS_BUSY = "perf/cpu_others_busy"  # cores other processes used in the last step

# The rollout layer's counters (per step) and the servers' health.
ROLLOUT_REQUESTS = "rollout/requests"  # attempts sent, resubmissions included
ROLLOUT_RETRIES = "rollout/retries"
ROLLOUT_TIMEOUTS = "rollout/timeouts"
ROLLOUT_ABORTS_RESUBMITTED = "rollout/aborts_resubmitted"
HEALTH_FAILURES = "rollout/health_failures"
SERVER_RESTARTS = "rollout/server_restarts"
SERVERS_UP = "rollout/servers_up"
# Samples of the step by the policy version that generated them.
SAMPLES_CURRENT_VERSION = "rollout/samples_current_version"
SAMPLES_STALE_VERSION = "rollout/samples_stale_version"
SAMPLES_MIXED_VERSIONS = "rollout/samples_mixed_versions"
# Asynchronous training (rollout.max_head_offpolicyness >= 1), per step.
VERSION_LAG_MIN = "rollout/version_lag/min"  # step - policy version of consumed tokens
VERSION_LAG_MEAN = "rollout/version_lag/avg"  # token-weighted
VERSION_LAG_MAX = "rollout/version_lag/max"  # never above k
GROUPS_REGENERATED = "rollout/groups_regenerated"  # sampled again: older than step - k
ASYNC_OVERLAP = "timeperf/overlap_fraction"  # share of the step sampling and training at once
WAIT_FOR_DATA = "timeperf/wait_for_data"  # the learner waiting for the producer
WAIT_FOR_WEIGHTS = "timeperf/wait_for_weights"  # the producer waiting for newer weights

TIME_ROLLOUT = "timeperf/rollout"
TIME_REWARD = "timeperf/reward"
TIME_TRAIN = "timeperf/train_step"
TIME_WEIGHT_SYNC = "timeperf/weight_sync"
TIME_STEP = "timeperf/step"


def reward_function(name: str) -> str:
    """Unweighted mean of reward function ``name`` (``None`` counted 0): ``REWARD`` is
    the sum of these times ``reward.weights``."""
    return f"grpo_actor/reward/{name}/avg"


def server_requests(index: int) -> str:
    """Requests sent to server ``index`` during the step."""
    return f"rollout/server{index}/requests"


def weight_sync_phase(phase: str) -> str:
    """Seconds of one phase of the last sync (a strategy's ``seconds``: save, push, ...)."""
    return f"{TIME_WEIGHT_SYNC}/{phase}"


@dataclass(frozen=True)
class Shown:
    """A metric as the dashboard and report show it."""

    key: str
    label: str
    fmt: str = ".4g"


# Time per stage of a step.
STAGES = (
    Shown(TIME_ROLLOUT, "rollout", ".1f"),
    Shown(TIME_REWARD, "reward", ".2f"),
    Shown(TIME_TRAIN, "train", ".1f"),
    Shown(TIME_WEIGHT_SYNC, "sync", ".2f"),
)
STAGE_TIMES = tuple(s.key for s in STAGES)

# The dashboard's metrics table, in reading order.
TABLE = (
    Shown(TASK_REWARD, "reward", ".3f"),
    Shown(EVAL_ACCURACY, "eval acc", ".3f"),
    Shown(LOSS, "loss"),
    Shown(KL, "kl"),
    Shown(CLIP_RATIO, "clip ratio", ".3f"),
    Shown(ENTROPY, "entropy", ".3f"),
    Shown(GRAD_NORM, "grad norm", ".3g"),
    Shown(LR, "lr", ".2e"),
    Shown(SEQ_LEN, "resp len", ".1f"),
    Shown(NO_EOS, "no-eos", ".3f"),
    Shown(ZERO_ADV, "zero-adv", ".3f"),
    Shown(IMPORTANCE_WEIGHT, "imp weight", ".4f"),
)

# The console logger's one line per step.
CONSOLE = (
    Shown(TASK_REWARD, "reward"),
    Shown(LOSS, "loss"),
    Shown(GRAD_NORM, "gnorm"),
    Shown(CLIP_RATIO, "clip"),
    Shown(NO_EOS, "no-eos"),
    Shown(TIME_STEP, "s/step"),
    Shown(EVAL_ACCURACY, "eval"),
)

# The report's plots: (file stem, title, series).
PLOTS = (
    ("reward", "train reward and eval accuracy", (TASK_REWARD, EVAL_ACCURACY)),
    ("loss", "policy loss", (LOSS,)),
    ("kl", "KL to the reference", (KL,)),
    ("entropy", "entropy", (ENTROPY,)),
    ("length", "response length (tokens)", (SEQ_LEN,)),
    ("clip", "clip ratio", (CLIP_RATIO,)),
    ("time", "seconds per stage", STAGE_TIMES),
    # Asynchronous runs only (a run without these series draws no such plot).
    ("async", "rollout ahead: overlap fraction, version lag", (ASYNC_OVERLAP, VERSION_LAG_MEAN)),
    # actor.use_decoupled_loss only.
    (
        "decoupled",
        "decoupled loss: pi_prox/pi_behav, share over the cap",
        (BEHAV_IMP_WEIGHT, BEHAV_MASKED),
    ),
)
