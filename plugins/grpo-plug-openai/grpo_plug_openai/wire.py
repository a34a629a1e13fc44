"""The ``/v1/completions`` wire format as this backend uses it: pure functions that
build request bodies and turn replies into :class:`~grpo_plug.api.Sample`s.

Two ways to get the completion's token ids back (``openai.token_ids``):

- ``return_token_ids``: the request carries ``"return_token_ids": true`` and each
  choice answers ``token_ids`` (the generated ids, a matched EOS included). Checked
  against the real SGLang 0.5.23 server by this package's tests; vLLM documents
  the same request field.
- ``token_id_strings``: the request carries ``"return_tokens_as_token_ids": true``
  (vLLM) and ``logprobs.tokens`` come back as ``"token_id:<id>"`` strings. Written
  from vLLM's documented format; not run against a vLLM server here.

Token ids are never recovered by re-tokenising the completion's text: that is not
what was sampled, and the learner's log-probs would be of other tokens.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from grpo_plug.api import FinishReason, GenerationRequest, RequestFailed, Sample

TokenIdMode = Literal["return_token_ids", "token_id_strings"]
TOKEN_ID_PREFIX = "token_id:"
FINISH: dict[str, FinishReason] = {"stop": "stop", "length": "length", "abort": "abort"}


def completion_body(
    req: GenerationRequest,
    *,
    model: str,
    stop_ids: Sequence[int],
    mode: TokenIdMode,
    n: int,
    seed: int | None = None,
    max_tokens: int | None = None,
) -> dict[str, Any]:
    """The ``POST /v1/completions`` body for ``n`` samples of ``req``'s prompt ids.

    Every sampling field is explicit (servers fill omitted ones from the model's
    generation config). ``logprobs: 0`` asks for the sampled token's log-prob only.
    ``top_k``, ``stop_token_ids``, ``ignore_eos`` and ``skip_special_tokens`` are
    SGLang/vLLM extensions of the OpenAI schema."""
    sp = req.sampling
    body: dict[str, Any] = {
        "model": model,
        "prompt": list(req.prompt_ids),
        "max_tokens": max_tokens if max_tokens is not None else sp.max_new_tokens,
        "temperature": sp.temperature,
        "top_p": sp.top_p,
        "top_k": sp.top_k,
        "n": n,
        "logprobs": 0,
        "echo": False,
        "stream": False,
        "stop_token_ids": list(stop_ids),
        "ignore_eos": False,
        "skip_special_tokens": True,
    }
    if mode == "return_token_ids":
        body["return_token_ids"] = True
    else:
        body["return_tokens_as_token_ids"] = True
    if seed is not None:
        body["seed"] = seed
    return body


def _ids_from_strings(tokens: Sequence[Any]) -> list[int]:
    out = []
    for t in tokens:
        if not isinstance(t, str) or not t.startswith(TOKEN_ID_PREFIX):
            raise ValueError(
                f"logprobs.tokens entry {t!r} is not '{TOKEN_ID_PREFIX}<id>': the server "
                "ignored return_tokens_as_token_ids (openai.token_ids=token_id_strings is "
                "vLLM's; SGLang needs openai.token_ids=return_token_ids)"
            )
        out.append(int(t[len(TOKEN_ID_PREFIX) :]))
    return out


def parse_choice(choice: Any, rid: str, mode: TokenIdMode, version: int) -> Sample:
    """One reply choice -> Sample; ``ValueError`` naming what is missing or wrong."""
    if not isinstance(choice, Mapping):
        raise ValueError(f"a choice must be an object, got {str(choice)[:120]}")
    kind = choice.get("finish_reason")
    if kind not in FINISH:
        raise ValueError(f"finish_reason {kind!r} is not one of stop, length, abort")
    reason = FINISH[kind]
    lp = choice.get("logprobs") or {}  # an abort in the queue may carry none
    if not isinstance(lp, Mapping):
        raise ValueError(f"logprobs must be an object, got {str(lp)[:120]}")
    logprobs = list(lp.get("token_logprobs") or [])
    if mode == "return_token_ids":
        ids = choice.get("token_ids")
        if ids is None and reason == "abort" and not logprobs:
            ids = []
        if not isinstance(ids, list):
            raise ValueError(
                "the choice has no token_ids: the server ignored return_token_ids "
                "(SGLang answers it; for vLLM's return_tokens_as_token_ids set "
                "openai.token_ids=token_id_strings)"
            )
    else:
        ids = _ids_from_strings(lp.get("tokens") or [])
    if not all(isinstance(t, int) and not isinstance(t, bool) for t in ids):
        raise ValueError(f"token ids must be integers, got {str(ids)[:120]}")
    if len(logprobs) != len(ids):
        raise ValueError(
            f"{len(logprobs)} log-probs for {len(ids)} tokens (was logprobs=0 honoured?)"
        )
    if any(not isinstance(x, (int, float)) or isinstance(x, bool) for x in logprobs):
        raise ValueError(f"token_logprobs must be numbers, got {str(logprobs)[:120]}")
    return Sample(rid, list(ids), [float(x) for x in logprobs], reason, version)


def reply_versions(payload: Mapping[str, Any], default: int) -> list[int]:
    """Policy versions of a reply's tokens from SGLang's ``metadata.weight_versions``
    spans or ``metadata.weight_version`` (set by ``/update_weights_from_disk``);
    ``default`` where absent or not an integer (a frozen server says "default")."""
    meta = payload.get("metadata")
    if not isinstance(meta, Mapping):
        return [default]
    spans = meta.get("weight_versions")
    raw: list[str] = (
        [str(s.get("version")) for s in spans if isinstance(s, Mapping)]
        if isinstance(spans, list)
        else []
    )
    raw = raw or [str(meta.get("weight_version"))]
    return sorted({int(v) if v.lstrip("-").isdigit() else default for v in raw})


def parse_completion(
    payload: Any,
    req: GenerationRequest,
    n: int,
    mode: TokenIdMode,
    version: int,
    *,
    reply_tags: bool = False,
) -> list[Sample]:
    """The ``n`` samples of one ``/v1/completions`` reply, in choice ``index`` order,
    tagged ``version``, or with ``reply_tags`` from the reply's SGLang weight versions
    (meaningful only when this run set them: ``openai.weights=sglang_disk``)."""
    if not isinstance(payload, Mapping) or not isinstance(payload.get("choices"), list):
        raise ValueError(f"expected an object with choices, got {str(payload)[:200]}")
    choices = sorted(
        payload["choices"], key=lambda c: c.get("index", 0) if isinstance(c, Mapping) else 0
    )
    if len(choices) != n:
        raise ValueError(f"expected {n} choices, got {len(choices)}")
    versions = reply_versions(payload, version) if reply_tags else [version]
    out = []
    for c in choices:
        s = parse_choice(c, req.rid, mode, version)
        s.policy_version, s.policy_versions = versions[0], list(versions)
        out.append(s)
    return out


def error_message(status: int, text: str) -> str:
    """The server's own words from the OpenAI error shape or SGLang's others."""
    try:
        body = json.loads(text)
    except ValueError:
        return text[:300] or f"HTTP {status}"
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and "message" in err:
            return str(err["message"])
        for key in ("message", "detail"):
            if key in body:
                return str(body[key])
    return json.dumps(body)[:300]


def http_failure(where: str, status: int, text: str) -> RequestFailed:
    """A non-2xx reply: 408, 429 and 5xx are worth retrying; other 4xx are not."""
    retryable = status >= 500 or status in (408, 429)
    return RequestFailed(
        f"{where}: HTTP {status}: {error_message(status, text)}", retryable=retryable
    )
