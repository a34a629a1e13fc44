"""The LM head: log-probs and entropies of the completion tokens, in fp32.

Two ways, with the same numbers:

- :class:`LinearHeadLogprobs` from the hidden states ``[N, d]`` and the head's weight
  ``[V, d]``: the ``[N, V]`` logits are never held whole, only ``[N, c]`` slices of the
  vocabulary in one reused buffer (an online logsumexp in the forward, a recomputation
  in the backward, which writes the weight's gradient slice by slice). It costs one more
  head matmul than keeping the logits, and saves allocating and writing two ``[N, V]``
  fp32 buffers per micro-batch (logits and their gradient: 1.3 GiB each at the full
  shape): on a CPU those fresh pages cost more than the matmul (docs/results.md).
- :class:`HeadLogprobs` from logits the model computed itself, for heads that are not a
  plain bias-free linear layer of a known architecture (softcapping, logit scales) and
  for FSDP-sharded models, whose head runs inside the root module's forward.
"""

from __future__ import annotations

from typing import Any

import torch

# Architectures whose logits are exactly hidden @ lm_head.weight.T (no softcap, no scale).
LINEAR_HEADS = ("llama", "mistral", "qwen2", "qwen3")


def linear_head_weight(model: Any) -> torch.Tensor | None:
    """The head's weight when :class:`LinearHeadLogprobs` may replace the model's own
    logits, else None (then the model computes its logits)."""
    from grpo_plug.learner.fsdp import is_sharded

    head = model.get_output_embeddings()
    if is_sharded(model) or getattr(model.config, "model_type", None) not in LINEAR_HEADS:
        return None
    if type(head) is not torch.nn.Linear or head.bias is not None:
        return None
    return head.weight


def hidden_logprobs(
    h: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    temperature: float,
    with_entropy: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-prob of ``targets`` [N] (and entropy) under ``h @ weight.T / temperature``."""
    logp, ent = LinearHeadLogprobs.apply(h, weight, targets, temperature, with_entropy)
    return logp, ent if with_entropy else None


def logits_logprobs(
    logits: torch.Tensor, targets: torch.Tensor, temperature: float, with_entropy: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-prob of ``targets`` [N] (and entropy) under ``logits`` [N, V], in fp32."""
    if not with_entropy:
        logits = logits.float()
        if temperature != 1.0:
            logits = logits / temperature
        # cross_entropy is log_softmax + gather fused: autograd keeps one [N, V] buffer.
        return -torch.nn.functional.cross_entropy(logits, targets, reduction="none"), None
    logp, ent = HeadLogprobs.apply(logits, targets, temperature)
    return logp, ent


def _vocab_slice(n: int, vocab: int, device: torch.device) -> int:
    """Vocabulary columns per slice: ``[n, c]`` fp32 of ~16 MiB on a CPU (the last
    level of cache), ~256 MiB on other devices (fewer kernels; not measured)."""
    budget = (4 if device.type == "cpu" else 64) * 2**20  # elements
    return min(vocab, max(256, budget // max(n, 1) // 64 * 64))


class LinearHeadLogprobs(torch.autograd.Function):
    """``log softmax(h @ W.T / t)[target]`` per row, with the entropy (no gradient),
    over slices of the vocabulary; see the module's docstring."""

    @staticmethod
    def forward(
        ctx: Any,
        h: torch.Tensor,
        weight: torch.Tensor,
        targets: torch.Tensor,
        temperature: float,
        with_entropy: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n, vocab = h.shape[0], weight.shape[0]
        cols = _vocab_slice(n, vocab, h.device)
        dev = h.device
        f32 = torch.float32
        # running max of the scaled logits, sum of exp(x - m), and the entropy's part:
        # the sum of exp(x - m) * (x - m)
        m = torch.full((n,), -torch.inf, dtype=f32, device=dev)
        z = torch.zeros(n, dtype=f32, device=dev)
        s = torch.zeros(n, dtype=f32, device=dev)
        x_buf = torch.empty(n * cols, dtype=f32, device=dev)
        e_buf = torch.empty(n * cols, dtype=f32, device=dev) if with_entropy else None
        mm_buf = _mm_buffer(h, n * cols)
        for v0 in range(0, vocab, cols):
            c = min(cols, vocab - v0)
            x = _logits(h, weight[v0 : v0 + c], x_buf, mm_buf, temperature)
            m_new = torch.maximum(m, x.amax(-1))
            scale = torch.exp(m - m_new)  # 0 on the first slice (m = -inf)
            x.sub_(m_new[:, None])
            if e_buf is None:
                z = z * scale + x.exp_().sum(-1)
            else:
                e = torch.exp(x, out=e_buf[: n * c].view(n, c))
                shift = torch.where(z > 0, (m - m_new) * z, 0.0)  # re-base the old sum
                z = z * scale + e.sum(-1)
                s = (s + shift) * scale + e.mul_(x).sum(-1)
            m = m_new
        lse = m + z.log()
        # in the weights' dtype, as the slices' logits are
        picked = torch.linalg.vecdot(h, weight[targets]).float() / temperature
        ctx.save_for_backward(h, weight, targets, lse)
        ctx.temperature = temperature
        ent = z.log() - s / z if with_entropy else torch.zeros_like(lse)
        ctx.mark_non_differentiable(ent)
        return picked - lse, ent

    @staticmethod
    def backward(
        ctx: Any, g_logp: torch.Tensor, _g_ent: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, None, None, None]:
        h, weight, targets, lse = ctx.saved_tensors
        t = ctx.temperature
        n, vocab = h.shape[0], weight.shape[0]
        cols = _vocab_slice(n, vocab, h.device)
        g = g_logp.float() / t
        grad_h = torch.zeros(n, h.shape[1], dtype=torch.float32, device=h.device)
        grad_w = torch.empty_like(weight)
        x_buf = torch.empty(n * cols, dtype=torch.float32, device=h.device)
        mm_buf = _mm_buffer(h, n * cols)
        for v0 in range(0, vocab, cols):
            c = min(cols, vocab - v0)
            w = weight[v0 : v0 + c]
            p = _logits(h, w, x_buf, mm_buf, t).sub_(lse[:, None]).exp_()  # softmax
            p.mul_(-g[:, None])
            here = (targets >= v0) & (targets < v0 + c)  # no nonzero(): no device sync
            col = (targets - v0).clamp(0, c - 1)[:, None]
            p.scatter_add_(-1, col, torch.where(here, g, 0.0)[:, None])
            # p is now (one_hot - softmax) * g / t, the logits' gradient on this slice
            gp = p if h.dtype == torch.float32 else p.to(h.dtype)
            if grad_h.dtype == gp.dtype:
                grad_h.addmm_(gp, w)
            else:
                grad_h += gp @ w
            torch.mm(gp.t(), h, out=grad_w[v0 : v0 + c])
        return grad_h.to(h.dtype), grad_w, None, None, None


def _mm_buffer(h: torch.Tensor, size: int) -> torch.Tensor | None:
    """Where a slice's logits land in ``h``'s dtype before fp32 (none needed for fp32)."""
    return None if h.dtype == torch.float32 else torch.empty(size, dtype=h.dtype, device=h.device)


def _logits(
    h: torch.Tensor, w: torch.Tensor, x_buf: torch.Tensor, mm_buf: torch.Tensor | None, t: float
) -> torch.Tensor:
    """``h @ w.T / t`` in fp32, written into ``x_buf`` (a flat buffer, reused per slice)."""
    n, c = h.shape[0], w.shape[0]
    x = x_buf[: n * c].view(n, c)
    if mm_buf is None:
        torch.mm(h, w.t(), out=x)
    else:
        x.copy_(torch.mm(h, w.t(), out=mm_buf[: n * c].view(n, c)))
    return x.div_(t) if t != 1.0 else x


class HeadLogprobs(torch.autograd.Function):
    """``log softmax(logits / t)[target]`` per row of ``[N, V]`` logits, with the entropy
    (no gradient), computed in slices of :meth:`rows` rows in fp32.

    The head is a large share of a small model's step and its cost is passes over
    ``[N, V]``: log_softmax, gather and entropy each allocate and walk a full buffer, and
    their backwards walk more. Here a slice is read while it sits in cache, only the
    logits (in their own dtype) and one value per row are kept, and the backward writes
    ``(one_hot - softmax) / t`` straight into the one gradient buffer it must return.
    """

    ROWS = 64  # on a CPU: a [64, 49152] fp32 slice is 12 MiB, about a cache's size
    ROWS_CUDA = 1024  # a GPU wants fewer, larger kernels (not measured: no GPU was lent)

    @staticmethod
    def rows(device: torch.device) -> int:
        """Rows per slice on ``device``."""
        return HeadLogprobs.ROWS if device.type == "cpu" else HeadLogprobs.ROWS_CUDA

    @staticmethod
    def forward(
        ctx: Any, logits: torch.Tensor, targets: torch.Tensor, temperature: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n, step = logits.shape[0], HeadLogprobs.rows(logits.device)
        lse = torch.empty(n, dtype=torch.float32, device=logits.device)
        ent = torch.empty(n, dtype=torch.float32, device=logits.device)
        for r0 in range(0, n, step):
            x = logits[r0 : r0 + step].float() / temperature  # a copy
            m = x.amax(-1, keepdim=True)
            x.sub_(m)  # shifted: the entropy below subtracts numbers of its own size
            e = x.exp()
            z = e.sum(-1)
            lse[r0 : r0 + len(x)] = m[:, 0] + z.log()
            # entropy = lse - E_p[x] = log z - E_p[x - m]
            ent[r0 : r0 + len(x)] = z.log() - e.mul_(x).sum(-1) / z
        picked = logits.gather(-1, targets[:, None])[:, 0].float() / temperature
        ctx.save_for_backward(logits, targets, lse)
        ctx.temperature = temperature
        ctx.mark_non_differentiable(ent)
        return picked - lse, ent

    @staticmethod
    def backward(
        ctx: Any, g_logp: torch.Tensor, _g_ent: torch.Tensor | None
    ) -> tuple[torch.Tensor, None, None]:
        logits, targets, lse = ctx.saved_tensors
        t = ctx.temperature
        grad = torch.empty_like(logits)
        g = g_logp.float() / t
        step = HeadLogprobs.rows(logits.device)
        for r0 in range(0, logits.shape[0], step):
            r1 = r0 + step
            p = (logits[r0:r1].float() / t).sub_(lse[r0:r1, None]).exp_()  # softmax
            p.mul_(-g[r0:r1, None]).scatter_add_(-1, targets[r0:r1, None], g[r0:r1, None])
            grad[r0:r1] = p  # (one_hot - softmax) * g / t, cast to the logits' dtype
        return grad, None, None
