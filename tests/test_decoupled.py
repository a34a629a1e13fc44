"""AReaL's decoupled PPO objective (actor.use_decoupled_loss): hand-computed values, its
equality with the plain loss when pi_behav = pi_prox, the cap, the config rules and
a tiny run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from grpo_plug import config as cfgmod
from grpo_plug import core
from grpo_plug.config import ActorConfig
from grpo_plug.errors import ConfigError
from grpo_plug.learner.loss import clipped_surrogate, decoupled_surrogate
from grpo_plug.learner.step import MinibatchStats
from grpo_plug.plugins import PluginHost
from tests.helpers import TinyModels, run_trainer, tiny_config


def logs(*ps: float) -> torch.Tensor:
    """Log-probs of the probabilities ``ps``, float64."""
    return torch.tensor([math.log(p) for p in ps], dtype=torch.float64)


# Four tokens, eps 0.2, cap 5. By hand (w = prox/behav, r = theta/prox):
#   0: w = 0.5/0.25 = 2,  r = 0.55/0.5 = 1.1 (inside),  A = 1:  loss = -1 * 1.1 * 2   = -2.2
#   1: w = 0.6/0.1  = 6 > 5: masked,  r = 1,            A = 0.5: loss = 0
#   2: w = 0.4/0.5  = 0.8, r = 0.6/0.4 = 1.5 > 1.2,     A = 2:  loss = -2 * 1.2 * 0.8 = -1.92
#   3: w = 0.3/0.3  = 1,   r = 0.15/0.3 = 0.5 < 0.8,    A = -1: loss = max(0.5, 0.8) = 0.8
THETA = (0.55, 0.6, 0.6, 0.15)
PROX = (0.5, 0.6, 0.4, 0.3)
BEHAV = (0.25, 0.1, 0.5, 0.3)
ADV = (1.0, 0.5, 2.0, -1.0)


def test_decoupled_loss_by_hand() -> None:
    logp = logs(*THETA).requires_grad_(True)
    adv = torch.tensor(ADV, dtype=torch.float64)
    d = decoupled_surrogate(logp, logs(*PROX), logs(*BEHAV), adv, 0.2, 0.2, 5.0)
    assert d.loss.tolist() == pytest.approx([-2.2, 0.0, -1.92, 0.8])
    assert d.weight.tolist() == pytest.approx([2.0, 0.0, 0.8, 1.0])
    assert d.kept.tolist() == [1.0, 0.0, 1.0, 1.0]
    assert d.ratio.tolist() == pytest.approx([1.1, 1.0, 1.5, 0.5])
    assert d.clipped.tolist() == [0.0, 0.0, 1.0, 1.0]
    # Token mean: the masked token stays in the denominator (as AReaL's loss-mask count).
    assert d.loss.mean().item() == pytest.approx((-2.2 + 0.0 - 1.92 + 0.8) / 4)
    d.loss.sum().backward()
    assert logp.grad is not None
    # d/dlogp of -A r w is -A r w where unclipped; the masked and clipped tokens give 0.
    assert logp.grad.tolist() == pytest.approx([-2.2, 0.0, 0.0, 0.0])


def test_no_cap_keeps_every_token_with_its_weight() -> None:
    logp = logs(*THETA).requires_grad_(True)
    adv = torch.tensor(ADV, dtype=torch.float64)
    d = decoupled_surrogate(logp, logs(*PROX), logs(*BEHAV), adv, 0.2, 0.2, None)
    # Token 1 now counts: w = 6, r = 1, A = 0.5: loss = -0.5 * 1 * 6 = -3.
    assert d.loss.tolist() == pytest.approx([-2.2, -3.0, -1.92, 0.8])
    assert d.kept.tolist() == [1.0, 1.0, 1.0, 1.0]
    d.loss.sum().backward()
    assert logp.grad is not None
    assert logp.grad.tolist() == pytest.approx([-2.2, -3.0, 0.0, 0.0])


def test_a_weight_equal_to_the_cap_is_kept() -> None:
    same = logs(0.3, 0.7)  # w = exp(0) = 1 exactly
    d = decoupled_surrogate(
        logs(0.2, 0.9), same, same, torch.ones(2, dtype=torch.float64), 0.2, 0.2, 1.0
    )
    assert d.kept.tolist() == [1.0, 1.0]
    d = decoupled_surrogate(
        logs(0.2, 0.9), same, same, torch.ones(2, dtype=torch.float64), 0.2, 0.2, 0.99
    )
    assert d.kept.tolist() == [0.0, 0.0] and d.loss.tolist() == [0.0, 0.0]


def test_behav_equal_to_prox_is_the_plain_loss_exactly() -> None:
    gen = torch.Generator().manual_seed(0)
    prox = -torch.rand(64, generator=gen) * 3
    adv = torch.randn(64, generator=gen)
    base = prox + 0.3 * torch.randn(64, generator=gen)
    a, b = base.clone().requires_grad_(True), base.clone().requires_grad_(True)
    plain = clipped_surrogate(a, prox, adv, 0.2, 0.28)
    d = decoupled_surrogate(b, prox, prox.clone(), adv, 0.2, 0.28, 5.0)
    assert torch.equal(d.loss, plain[0]) and torch.equal(d.clipped, plain[1])
    assert torch.equal(d.ratio, plain[2]) and bool((d.weight == 1.0).all())
    plain[0].sum().backward()
    d.loss.sum().backward()
    assert a.grad is not None and b.grad is not None and torch.equal(a.grad, b.grad)


# ---------------------------------------------------------------- the learner's step


def _batch(
    rng: np.random.Generator,
) -> tuple[list[list[int]], list[list[int]], np.ndarray]:
    prompts = [rng.integers(3, 14, size=int(rng.integers(2, 9))).tolist() for _ in range(6)]
    comps = [rng.integers(3, 14, size=int(rng.integers(2, 7))).tolist() for _ in range(6)]
    return prompts, comps, rng.normal(size=6).astype(np.float32)


def _own_logprobs(
    model: torch.nn.Module, prompts: list[list[int]], comps: list[list[int]]
) -> list[list[float]]:
    """The learner's log-probs of every completion, per sequence: what an exact
    synchronous sampler would report."""
    from grpo_plug.learner.step import learner_old_logprobs

    zeros = [[0.0] * len(c) for c in comps]
    adv = np.zeros(len(comps), dtype=np.float32)
    (mbs,) = core.pack_microbatches(prompts, comps, zeros, adv, max_tokens=10_000)
    (mb,) = mbs
    (own,), _, _ = learner_old_logprobs(model, mbs, ActorConfig(attention="packed"), 1.0, "packed")
    out: dict[int, list[float]] = {}
    cu, sel, at = mb.cu_seqlens.astype(np.int64), mb.loss_mask > 0, 0
    for k in range(mb.num_sequences):
        n = int(sel[cu[k] : cu[k + 1]].sum())
        out[int(mb.seq_indices[k])] = own[at : at + n].tolist()
        at += n
    return [out[i] for i in range(len(comps))]


def _step(
    model: torch.nn.Module,
    cfg: ActorConfig,
    batch: tuple[list[list[int]], list[list[int]], list[list[float]], np.ndarray],
    *,
    fused: bool = True,
) -> tuple[torch.Tensor, MinibatchStats]:
    """One minibatch of ``batch`` (prompts, completions, sampler log-probs, advantages):
    its gradients and stats."""
    from grpo_plug.learner.step import learner_old_logprobs, train_minibatch

    (mbs,) = core.pack_microbatches(*batch, max_tokens=10_000)
    prox = None if fused else learner_old_logprobs(model, mbs, cfg, 1.0, "packed")[0]
    model.zero_grad()
    st = train_minibatch(
        model,
        None,
        mbs,
        cfg,
        temperature=1.0,
        max_new_tokens=8,
        path="packed",
        old_from_learner=fused,
        prox=prox,
    )
    grads = [p.grad.flatten().clone() for p in model.parameters() if p.grad is not None]
    return torch.cat(grads), st


PLAIN = ActorConfig(recompute_logprob=True, attention="packed")
DECOUPLED = ActorConfig(
    recompute_logprob=True,
    attention="packed",
    use_decoupled_loss=True,
    behav_imp_weight_cap=5.0,
)


def test_step_with_behav_equal_to_prox_gives_the_plain_gradients(tiny_models: TinyModels) -> None:
    """The sampler's log-probs are the learner's own (an exact synchronous sampler):
    the decoupled step's gradients are the plain step's, every weight is 1 and none is
    masked; fused (pi_prox from the training forward) and with a separate pi_prox pass."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_models(seed=5))
    model.train()
    prompts, comps, adv = _batch(np.random.default_rng(6))
    batch = (prompts, comps, _own_logprobs(model, prompts, comps), adv)
    plain_grads, plain = _step(model, PLAIN, batch)
    assert plain_grads.abs().sum() > 0
    n_tokens = sum(map(len, comps))
    for fused in (True, False):
        grads, st = _step(model, DECOUPLED, batch, fused=fused)
        torch.testing.assert_close(grads, plain_grads, rtol=1e-5, atol=1e-7)
        assert st.loss == pytest.approx(plain.loss, rel=1e-5, abs=1e-7)
        assert st.clip_ratio == plain.clip_ratio
        assert (st.behav_kept, st.behav_masked) == (n_tokens, 0.0)
        assert st.behav_weight / st.behav_kept == pytest.approx(1.0, abs=1e-6)


def test_tokens_over_the_cap_leave_the_gradient(tiny_models: TinyModels) -> None:
    """Sequence 2's sampler log-probs 50 nats below the learner's (w = e^50, over the
    cap): its tokens are masked and counted, and the gradients are the plain loss's
    with that sequence's advantage 0 (its tokens still count in the token mean)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_models(seed=7))
    model.train()
    prompts, comps, adv = _batch(np.random.default_rng(8))
    own = _own_logprobs(model, prompts, comps)
    behav = [[lp - 50.0 for lp in seq] if i == 2 else seq for i, seq in enumerate(own)]
    grads, st = _step(model, DECOUPLED, (prompts, comps, behav, adv))
    assert (st.behav_masked, st.behav_kept) == (len(comps[2]), sum(map(len, comps)) - len(comps[2]))
    no_adv = adv.copy()
    no_adv[2] = 0.0
    plain_grads, _ = _step(model, PLAIN, (prompts, comps, own, no_adv))
    torch.testing.assert_close(grads, plain_grads, rtol=1e-5, atol=1e-7)
    # ... and sequence 2 matters: with its advantage the plain gradients differ.
    with_adv, _ = _step(model, PLAIN, (prompts, comps, own, adv))
    assert not torch.allclose(with_adv, grads, rtol=1e-3, atol=1e-6)
    # Without the cap the same tokens weigh e^50: the step is dominated by them.
    uncapped = ActorConfig(recompute_logprob=True, attention="packed", use_decoupled_loss=True)
    big, st_big = _step(model, uncapped, (prompts, comps, behav, adv))
    assert st_big.behav_masked == 0.0 and big.abs().max() > 1e6 * grads.abs().max()


# ---------------------------------------------------------------- config and plan


def test_the_keys_load_and_the_plan_recomputes_pi_prox() -> None:
    from grpo_plug.plan import resolve

    cfg = cfgmod.load(overrides=["actor.use_decoupled_loss=true", "actor.behav_imp_weight_cap=5.0"])
    assert cfg.actor.use_decoupled_loss and cfg.actor.behav_imp_weight_cap == 5.0
    plan = resolve(cfg, device="cpu")
    assert plan.recompute_logprob and plan.recompute_reason == "actor.use_decoupled_loss"
    assert not cfg.actor.recompute_logprob  # derived into the plan, the config stays
    assert "recompute_logprob: on (actor.use_decoupled_loss)" in "\n".join(plan.lines())
    assert not resolve(cfgmod.load(overrides=[]), device="cpu").recompute_logprob


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["actor.behav_imp_weight_cap=5.0"],
            "actor.behav_imp_weight_cap: acts only with actor.use_decoupled_loss=true",
        ),
        (
            ["actor.use_decoupled_loss=true", "gconfig.temperature=0"],
            "actor.use_decoupled_loss: gconfig.temperature=0 samples greedily",
        ),
        (
            ["actor.use_decoupled_loss=true", "actor.behav_imp_weight_cap=0"],
            "actor.behav_imp_weight_cap: 0.0 is out of range (must be > 0.0)",
        ),
        (["actor.use_decoupled_loss=maybe"], "actor.use_decoupled_loss: expected true/false"),
    ],
)
def test_bad_combinations_stop_with_one_line(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        cfgmod.load(overrides=overrides)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- a tiny run


def _metrics(root: Path) -> list[dict[str, float]]:
    (path,) = (root / "out" / "logs").rglob("metrics.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [r for r in rows if "grpo_actor/loss" in r]


@pytest.mark.parametrize("minibatches", [1, 2])
def test_a_decoupled_run_logs_its_weights(
    tmp_path: Path, tiny_model_dir: Path, seven_host: PluginHost, minibatches: int
) -> None:
    """Synchronous (the sampler is the learner, fp32): weights ~1, none over the cap,
    in metrics.jsonl; one minibatch takes pi_prox from the training forward, two from
    the separate pass before the first update."""
    cfg = tiny_config(
        tmp_path,
        tiny_model_dir,
        "total_train_steps=4",
        "actor.use_decoupled_loss=true",
        "actor.behav_imp_weight_cap=5.0",
        f"actor.ppo_n_minibatches={minibatches}",
        "loggers=jsonl",
    )
    run_trainer(cfg, seven_host, loggers=None)
    rows = _metrics(tmp_path)
    assert rows, "no step trained"
    for r in rows:
        assert np.isfinite(r["grpo_actor/loss"])
        assert r["grpo_actor/behave_imp_weight"] == pytest.approx(1.0, abs=1e-3)
        assert r["grpo_actor/behave_masked_ratio"] == 0.0
        assert r["grpo_actor/sampler_logprob_abs_diff"] < 1e-3
        assert r["grpo_actor/clip_ratio"] >= 0.0


def test_synchronous_decoupled_run_trains_as_the_plain_one(
    tmp_path: Path, tiny_model_dir: Path, seven_host: PluginHost
) -> None:
    """Same seed, recompute on both: the first trained step's loss and gradient norm
    agree (the weights differ from 1 only by the sampler's float rounding)."""
    rows = {}
    for name, extra in (
        ("plain", ("actor.recompute_logprob=true",)),
        ("decoupled", ("actor.use_decoupled_loss=true", "actor.behav_imp_weight_cap=5.0")),
    ):
        cfg = tiny_config(tmp_path / name, tiny_model_dir, "total_train_steps=3", *extra)
        rows[name] = [
            r for r in run_trainer(cfg, seven_host).capture.rows if "grpo_actor/loss" in r
        ]
        assert rows[name], f"{name}: no step trained"
    a, b = rows["plain"][0], rows["decoupled"][0]
    for key in ("grpo_actor/loss", "grpo_actor/grad_norm", "grpo_actor/clip_ratio"):
        assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-7), key
    assert "grpo_actor/behave_imp_weight" not in a
