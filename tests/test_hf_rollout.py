"""The hf rollout backend's fast paths against the reference ones, on a tiny model:
the preallocated KV cache decodes what transformers' growing cache does, log-probs
are the learner's formula at the sampled token, and the bf16 sampling copy stays
close to the fp32 learner and follows it after an optimizer step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from grpo_plug import config as cfgmod
from grpo_plug.plan import resolve as resolve_plan
from grpo_plug.plan import resolve_sample_dtype
from grpo_plug.rollout.hf import HFBackend, draw_from, make_hf_backend
from grpo_plug.types import GenerationRequest, RolloutContext, Sample, SamplingParams
from tests.helpers import TinyModels


@pytest.fixture(scope="module")
def tiny(tiny_models: TinyModels) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = tiny_models(hidden=64)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    # At its init scale the random model repeats one token; larger weights make its
    # greedy answers vary, so rows stop at different steps.
    torch.manual_seed(1)
    with torch.no_grad():
        for w in model.parameters():
            if w.dim() == 2:
                w.normal_(0, 3.0 / w.shape[-1] ** 0.5)
    return model, AutoTokenizer.from_pretrained(path)


PROMPTS = [[1, 5, 6, 7, 2, 1], [1, 9, 2, 1], [1, 4, 4, 4, 4, 4, 4, 2, 1]]  # unequal lengths


def requests(sp: SamplingParams, n: int = 3) -> list[GenerationRequest]:
    return [GenerationRequest(f"r{i}", p, n, sp) for i, p in enumerate(PROMPTS)]


def backend(model: Any, tok: Any, **kw: Any) -> HFBackend:
    b = HFBackend(model, tok, **kw)
    # Stop tokens the random model says at different steps, so rows leave the batch
    # (the cache's row removal) while others go on.
    b.eos_ids = [0, 12]
    return b


def flat(groups: list[list[Sample]]) -> list[Sample]:
    return [s for g in groups for s in g]


def learner_logprobs(model: Any, prompt: list[int], out: list[int], temp: float) -> torch.Tensor:
    """log_softmax(logits / T) of the full sequence at each generated token, one forward."""
    ids = torch.tensor([prompt + out])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()
    logp = torch.log_softmax(logits / temp, dim=-1)
    return logp.gather(-1, torch.tensor(out).unsqueeze(-1)).squeeze(-1)


def test_greedy_prealloc_cache_decodes_what_the_dynamic_cache_does(tiny: tuple[Any, Any]) -> None:
    model, tok = tiny
    sp = SamplingParams(max_new_tokens=24, temperature=0.0)
    ref = flat(backend(model, tok, cache="dynamic").generate(requests(sp)))
    new = flat(backend(model, tok, cache="prealloc").generate(requests(sp)))
    lengths = {len(s.output_ids) for s in ref}
    assert len(lengths) > 1, "no row left the batch early: the test checks nothing"
    assert [s.output_ids for s in new] == [s.output_ids for s in ref]
    assert [s.finish_reason for s in new] == [s.finish_reason for s in ref]
    for a, b in zip(new, ref, strict=True):
        torch.testing.assert_close(torch.tensor(a.logprobs), torch.tensor(b.logprobs))


@pytest.mark.parametrize("draw", ["cdf", "multinomial"])
def test_sampled_logprobs_are_the_learners_formula(tiny: tuple[Any, Any], draw: str) -> None:
    model, tok = tiny
    temp = 0.7
    sp = SamplingParams(max_new_tokens=16, temperature=temp)
    torch.manual_seed(0)
    samples = backend(model, tok, draw=draw).generate(requests(sp, n=2))
    for prompt, group in zip(PROMPTS, samples, strict=True):
        for s in group:
            want = learner_logprobs(model, prompt, s.output_ids, temp)
            torch.testing.assert_close(torch.tensor(s.logprobs), want, atol=1e-4, rtol=1e-4)


def test_bf16_sampler_logprobs_are_close_to_the_fp32_learners(tiny: tuple[Any, Any]) -> None:
    model, tok = tiny
    b16 = backend(model, tok, sample_dtype=torch.bfloat16)
    assert next(b16.sampler().parameters()).dtype == torch.bfloat16
    assert next(model.parameters()).dtype == torch.float32  # the learner stays fp32
    torch.manual_seed(0)
    groups = b16.generate(requests(SamplingParams(max_new_tokens=16, temperature=1.0)))
    diffs = torch.cat(
        [
            (torch.tensor(s.logprobs) - learner_logprobs(model, prompt, s.output_ids, 1.0)).abs()
            for prompt, group in zip(PROMPTS, groups, strict=True)
            for s in group
        ]
    )
    assert 0 < diffs.mean() < 0.05  # bf16 rounding, not another model
    assert diffs.max() < 0.5


def test_greedy_requests_decode_with_the_learners_own_weights(tiny: tuple[Any, Any]) -> None:
    """The held-out eval is greedy: with a bf16 sampler it must still measure the fp32
    model that is saved, so `grpo-plug eval` on the checkpoint gives the same answers."""
    model, tok = tiny
    greedy = SamplingParams(max_new_tokens=24, temperature=0.0)
    ref = flat(backend(model, tok).generate(requests(greedy, n=1)))
    b16 = backend(model, tok, sample_dtype=torch.bfloat16)
    got = flat(b16.generate(requests(greedy, n=1)))
    assert [s.output_ids for s in got] == [s.output_ids for s in ref]
    assert [s.logprobs for s in got] == [s.logprobs for s in ref]
    # The copy really differs: the bf16 sampler's own greedy log-probs are not these.
    with torch.no_grad():
        logits = b16.sampler()(input_ids=torch.tensor([PROMPTS[0]])).logits[0, -1].float()
        want = torch.log_softmax(model(input_ids=torch.tensor([PROMPTS[0]])).logits[0, -1], -1)
    assert not torch.equal(torch.log_softmax(logits, -1), want)


def test_bf16_copy_follows_the_learner_after_an_optimizer_step(tiny: tuple[Any, Any]) -> None:
    import copy

    model = copy.deepcopy(tiny[0])
    b16 = backend(model, tiny[1], sample_dtype=torch.bfloat16)

    def same_as_learner() -> bool:
        return all(
            torch.equal(c, p.detach().to(torch.bfloat16))
            for c, p in zip(b16.sampler().parameters(), model.parameters(), strict=True)
        )

    assert same_as_learner()
    before = [p.detach().clone() for p in b16.sampler().parameters()]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(input_ids=torch.tensor([PROMPTS[0]])).logits.sum().backward()
    opt.step()
    assert same_as_learner()  # refreshed from the tensors' versions, no sync call
    after = b16.sampler().parameters()
    changed = [not torch.equal(a, b) for a, b in zip(before, after, strict=True)]
    assert sum(changed) > len(changed) // 2
    with torch.no_grad():  # a checkpoint load writes in place, too
        for p in model.parameters():
            p.mul_(0.5)
    assert same_as_learner()


def test_bf16_sampling_switches_on_recompute_logprob_in_the_plan_not_the_config() -> None:
    plan = resolve_plan(cfgmod.load(overrides=["rollout.sample_dtype=float32"]))
    assert not plan.recompute_logprob
    cfg = cfgmod.load(overrides=["rollout.sample_dtype=bfloat16"])
    assert resolve_plan(cfg).recompute_logprob
    assert resolve_plan(cfg).recompute_reason == "rollout.sample_dtype=bfloat16"
    assert not cfg.actor.recompute_logprob  # the saved config stays the user's
    with pytest.raises(cfgmod.ConfigError):
        cfgmod.load(overrides=["rollout.sample_dtype=float16"])


def test_auto_samples_in_bf16_only_on_a_cpu_with_native_bf16(
    tiny: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import grpo_plug.plan as planmod

    assert resolve_sample_dtype("auto", "cuda") == "float32"
    assert resolve_sample_dtype("auto", "cuda", "bfloat16") == "bfloat16"
    assert resolve_sample_dtype("float32", "cpu") == "float32"
    for native, want in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr(planmod, "native_bf16_cpu", lambda native=native: native)
        assert resolve_sample_dtype("auto", "cpu") == str(want).removeprefix("torch.")
        cfg = cfgmod.load(overrides=["rollout.sample_dtype=auto"])
        plan = resolve_plan(cfg, device="cpu")
        ctx = RolloutContext(
            tokenizer=tiny[1], model=tiny[0], device="cpu", log_dir=str(tmp_path), plan=plan
        )
        b = make_hf_backend(cfg, ctx)
        assert b.sample_dtype == want
        # The learner reads the plan: bf16 samples mean recomputed log-probs.
        assert plan.recompute_logprob == (want == torch.bfloat16)
        assert not cfg.actor.recompute_logprob
        # Two learner ranks keep the learner's dtype (every rank's loss as before).
        two = cfgmod.load(overrides=["rollout.sample_dtype=auto", "allocation_mode=d2p1t1"])
        assert resolve_plan(two, device="cpu").sample_dtype == "float32"


def test_cdf_draw_matches_the_distribution_and_never_draws_a_masked_token() -> None:
    """The inverse-CDF draw that replaced ``torch.multinomial``: frequencies over many
    rows match the probabilities, and zero-probability entries are never chosen."""
    torch.manual_seed(0)
    probs = torch.tensor([0.0, 0.1, 0.0, 0.6, 0.3, 0.0])
    rows = 40_000
    tok = draw_from(probs.expand(rows, -1).contiguous())
    counts = torch.bincount(tok, minlength=probs.numel()).double() / rows
    assert counts[probs == 0].sum().item() == 0.0
    # 4 standard errors of a binomial proportion at p = 0.6 over 40,000 draws: ~0.01.
    assert torch.allclose(counts, probs.double(), atol=0.01), counts
    unnormalised = torch.tensor([[0.0, 2.0, 0.0], [5.0, 0.0, 0.0]])
    for _ in range(200):
        assert draw_from(unnormalised).tolist() == [1, 0]
