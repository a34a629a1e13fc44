"""Packed micro-batches through varlen attention: the padded path's numbers, and no
dense T x T mask on the way (checked at the attention call itself)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from grpo_plug.learner import attention
from grpo_plug.learner.logprobs import completion_logprobs, packed_logprobs
from grpo_plug.testing.model import build_tiny_model
from tests.helpers import load_for_training, packed_micro_batch

# flex_attention runs unfused (eager) on the CPU: fine for the tiny model, and it says so.
pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")

CUDA_FLASH = attention.unavailable("packed_flash", "cuda") is None and torch.cuda.is_available()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("attn") / "m", seed=5, hidden=64)


def logprobs_and_grads(
    model: Any, fn: Callable[..., tuple[torch.Tensor, torch.Tensor]], mb: Any, **kw: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    model.zero_grad()
    logp, _ = fn(model, mb, temperature=0.7, **kw)
    (logp.float() * torch.linspace(-1, 1, len(logp), device=logp.device)).sum().backward()
    grads = torch.cat([p.grad.float().flatten() for p in model.parameters() if p.grad is not None])
    return logp.detach().float().cpu(), grads.cpu()


@pytest.mark.parametrize("checkpointing", [False, True])
def test_packed_sdpa_gives_the_padded_log_probs_and_gradients(
    model_dir: Path, checkpointing: bool
) -> None:
    """fp32: per-document SDPA on the packed row equals the padded rows (log-probs to
    1e-5, gradients to 1e-4 relative), also when checkpointing recomputes the forward."""
    model = load_for_training(model_dir)
    if checkpointing:
        model.gradient_checkpointing_enable()
    mb = packed_micro_batch()
    want_lp, want_g = logprobs_and_grads(model, completion_logprobs, mb, max_seqs=3)
    attention.use(model, "packed_sdpa")
    got_lp, got_g = logprobs_and_grads(model, packed_logprobs, mb)
    torch.testing.assert_close(got_lp, want_lp, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_g, want_g, rtol=1e-4, atol=1e-6)


def test_packed_sdpa_in_bf16_matches_padding_to_bf16_rounding(model_dir: Path) -> None:
    """bf16 (8 mantissa bits): packed within 0.01 nats of the padded path's log-probs,
    both within 0.02 of fp32's; gradients within 2% (of their norm) of padded's."""
    mb = packed_micro_batch(seed=2)
    exact, _ = logprobs_and_grads(load_for_training(model_dir), completion_logprobs, mb, max_seqs=3)
    model = load_for_training(model_dir, torch.bfloat16)
    pad_lp, pad_g = logprobs_and_grads(model, completion_logprobs, mb, max_seqs=3)
    attention.use(model, "packed_sdpa")
    lp, g = logprobs_and_grads(model, packed_logprobs, mb)
    assert (lp - pad_lp).abs().max() < 0.01
    assert (lp - exact).abs().max() < 0.02 and (pad_lp - exact).abs().max() < 0.02
    assert (g - pad_g).norm() < 0.02 * pad_g.norm()


def test_packed_flex_gives_the_padded_log_probs(model_dir: Path) -> None:
    """flex_attention under the document BlockMask (no-grad here: torch has no flex
    backward on the CPU, which is why auto never picks it there)."""
    model = load_for_training(model_dir).eval()
    mb = packed_micro_batch(seed=3)
    with torch.no_grad():
        want, _ = completion_logprobs(model, mb, temperature=0.7, max_seqs=4)
        attention.use(model, "packed_flex")
        got, _ = packed_logprobs(model, mb, temperature=0.7)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not CUDA_FLASH, reason="needs CUDA and the flash_attn package")
def test_packed_flash_gives_the_padded_log_probs_and_gradients(model_dir: Path) -> None:
    """bf16 on CUDA: flash-attention's varlen kernel against padded SDPA."""
    model = load_for_training(model_dir, torch.bfloat16, "cuda")
    mb = packed_micro_batch(seed=4)
    want_lp, want_g = logprobs_and_grads(model, completion_logprobs, mb, max_seqs=3)
    attention.use(model, "packed_flash")
    lp, g = logprobs_and_grads(model, packed_logprobs, mb)
    assert (lp - want_lp).abs().max() < 0.01
    assert (g - want_g).norm() < 0.02 * want_g.norm()


# ------------------------------------------------------- what reaches attention


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, Any, dict[str, Any]]]]:
    """Every attention call, as (implementation, mask, kwargs), by wrapping the function
    registered in transformers' AttentionInterface under each name."""
    from transformers import AttentionInterface

    attention.register()
    calls: list[tuple[str, Any, dict[str, Any]]] = []
    mapping = AttentionInterface._global_mapping
    for name in ("sdpa", *attention.REGISTERED.values()):
        monkeypatch.setitem(mapping, name, _recording(mapping[name], calls))
    yield calls


def _recording(inner: Callable[..., Any], calls: list[tuple[str, Any, dict[str, Any]]]) -> Any:
    def wrapped(module: Any, q: Any, k: Any, v: Any, mask: Any, *a: Any, **kw: Any) -> Any:
        calls.append((module.config._attn_implementation, mask, kw))
        return inner(module, q, k, v, mask, *a, **kw)

    return wrapped


def dense(mask: Any, total: int) -> bool:
    """A materialised mask covering the whole ``T x T`` row."""
    return isinstance(mask, torch.Tensor) and tuple(mask.shape[-2:]) == (total, total)


@pytest.mark.parametrize("kernel", ["packed_sdpa", "packed_flex"])
def test_no_dense_mask_reaches_attention_on_the_packed_path(
    model_dir: Path, spy: list[tuple[str, Any, dict[str, Any]]], kernel: str
) -> None:
    from torch.nn.attention.flex_attention import BlockMask

    model = load_for_training(model_dir).eval()
    attention.use(model, kernel)
    mb = packed_micro_batch()
    total = len(mb.input_ids)
    with torch.no_grad():
        packed_logprobs(model, mb, temperature=1.0)
    assert len(spy) == model.config.num_hidden_layers  # one call per layer, nothing else
    for impl, mask, kw in spy:
        assert impl == attention.REGISTERED[kernel]
        assert not dense(mask, total)
        if kernel == "packed_flex":
            assert isinstance(mask, BlockMask)  # sparse: blocks of 128 tokens
        else:
            assert mask is None
            assert kw["cu_seq_lens_q"].tolist() == mb.cu_seqlens.tolist()


def test_shared_prompt_rows_reach_attention_as_segments_not_a_mask(
    model_dir: Path, spy: list[tuple[str, Any, dict[str, Any]]]
) -> None:
    """shared_prompt: per-document SDPA gets the row's prompt groups; no mask at all."""
    from grpo_plug.learner.logprobs import shared_prompt_logprobs
    from grpo_plug.learner.shared import shared_row

    model = load_for_training(model_dir).eval()
    attention.use(model, "shared_prompt")
    mb = packed_micro_batch(n=9, group=3)
    groups = shared_row(mb).groups
    assert len(groups) == 3 and all(len(comps) == 3 for _, _, comps in groups)
    with torch.no_grad():
        shared_prompt_logprobs(model, mb, temperature=1.0)
    assert len(spy) == model.config.num_hidden_layers
    for impl, mask, kw in spy:
        assert impl == attention.REGISTERED["packed_sdpa"]
        assert mask is None
        assert kw[attention.PROMPT_GROUPS] == groups


def test_the_stock_sdpa_path_is_what_the_check_catches(
    model_dir: Path, spy: list[tuple[str, Any, dict[str, Any]]]
) -> None:
    """packed_dense (transformers' own sdpa, today's packed path) hands attention the
    dense block-diagonal T x T mask: the check above would fail on it."""
    model = load_for_training(model_dir).eval()
    assert attention.kernel_of(model) == "packed_dense"
    mb = packed_micro_batch()
    with torch.no_grad():
        packed_logprobs(model, mb, temperature=1.0)
    assert spy and all(impl == "sdpa" and dense(mask, len(mb.input_ids)) for impl, mask, _ in spy)


def test_a_varlen_model_still_runs_padded_batches_and_generates(model_dir: Path) -> None:
    """The kernel is set on the model the hf backend also samples from: padded rows and
    cached generation go through transformers' sdpa mask and kernel unchanged."""
    plain, varlen = load_for_training(model_dir).eval(), load_for_training(model_dir).eval()
    attention.use(varlen, "packed_sdpa")
    mb = packed_micro_batch(seed=6)
    with torch.no_grad():
        a, _ = completion_logprobs(plain, mb, temperature=1.0, max_seqs=3)
        b, _ = completion_logprobs(varlen, mb, temperature=1.0, max_seqs=3)
    torch.testing.assert_close(a, b)
    ids = torch.tensor([[0, 0, 5, 6, 7], [3, 4, 5, 6, 7]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    kw = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": 0, "attention_mask": mask}
    torch.testing.assert_close(varlen.generate(ids, **kw), plain.generate(ids, **kw))


def test_a_packed_row_without_its_boundaries_is_refused(model_dir: Path) -> None:
    """Restarting position ids with no cu_seqlens would attend across documents."""
    model = load_for_training(model_dir)
    attention.use(model, "packed_sdpa")
    mb = packed_micro_batch()
    ids = torch.from_numpy(mb.input_ids)[None]
    pos = torch.from_numpy(mb.position_ids)[None]
    with pytest.raises(RuntimeError, match="document boundaries"):
        model(input_ids=ids, position_ids=pos)


# ------------------------------------------------------------------- the rule


def test_auto_and_packed_resolve_by_device_and_ranks() -> None:
    def r(choice: str, ranks: int = 1, device: str = "cpu") -> str:
        return attention.resolve(choice, world_size=ranks, device=device)

    # the CPU: bench_learner's fastest at both presets' shapes, with or without FSDP
    assert r("auto") == r("auto", ranks=2) == "shared_prompt"
    assert r("auto", device="cuda") in ("packed_flash", "packed_flex")  # a GPU's
    assert r("shared_prompt", ranks=2) == "shared_prompt"
    assert r("packed") == "packed_sdpa"
    assert r("packed_dense") == "packed_dense" and r("padded") == "padded"
    with pytest.raises(ValueError, match="no flex_attention backward on the CPU"):
        r("packed_flex")
    with pytest.raises(ValueError, match="needs a CUDA device"):
        r("packed_flash")
    with pytest.raises(ValueError, match="only the packed paths"):
        r("padded", ranks=2)
    if torch.cuda.is_available():
        assert r("packed", device="cuda") in ("packed_flash", "packed_flex")


def test_a_sliding_window_model_is_refused_not_silently_widened(tmp_path: Path) -> None:
    """The varlen kernels are plain causal: a layer that asks for a window is refused."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(
        vocab_size=16,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        use_sliding_window=True,
        sliding_window=4,
        max_window_layers=0,
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(cfg)
    attention.use(model, "packed_sdpa")
    with pytest.raises(NotImplementedError, match="sliding_window"):
        packed_logprobs(model, packed_micro_batch(), temperature=1.0)
