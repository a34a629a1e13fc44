"""SGLang's native HTTP API as the rollout backend uses it (docs/sglang/CONTRACT.md).

Pure functions build request bodies and parse replies (the contract tests feed them
the fixtures); :class:`ServerClient` sends them, mapping failures to
:class:`RequestFailed` with ``retryable`` set the way the controller needs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import httpx

from grpo_plug.errors import RequestFailed
from grpo_plug.types import FinishReason, GenerationRequest, Sample

CONNECT_TIMEOUT_S = 10.0
CONTROL_TIMEOUT_S = 600.0  # weight loads of large models take minutes


def sampling_params(req: GenerationRequest, stop_ids: Sequence[int]) -> dict[str, Any]:
    """Every field explicit: newer servers fill omitted ones from generation_config."""
    sp = req.sampling
    return {
        "max_new_tokens": sp.max_new_tokens,
        "temperature": sp.temperature,
        "top_p": sp.top_p,
        "top_k": sp.top_k,
        "min_new_tokens": sp.min_new_tokens,
        "stop_token_ids": list(stop_ids),
        "ignore_eos": False,
        "skip_special_tokens": True,
        "no_stop_trim": False,
    }


def generate_body(
    req: GenerationRequest, stop_ids: Sequence[int], *, seeded: bool = False
) -> dict[str, Any]:
    """The ``/generate`` body for ``req``: ``n`` samples of one prompt.

    With ``seeded`` and a request seed, the prompt is sent ``n`` times as a batch, sample
    ``i`` with ``sampling_seed = seed + i`` (``n`` copies of one seed would be ``n``
    identical samples); the reply has the same shape either way.
    """
    params = sampling_params(req, stop_ids)
    body: dict[str, Any] = {"return_logprob": True, "stream": False, "rid": req.rid}
    if seeded and req.seed is not None:
        body["input_ids"] = [list(req.prompt_ids) for _ in range(req.n)]
        body["sampling_params"] = [{**params, "sampling_seed": req.seed + i} for i in range(req.n)]
        body["rid"] = [f"{req.rid}#{i}" for i in range(req.n)]
    else:
        body["input_ids"] = list(req.prompt_ids)
        body["sampling_params"] = {**params, "n": req.n} if req.n > 1 else params
    return body


def disk_update_body(path: str, version: int) -> dict[str, Any]:
    """``/update_weights_from_disk``: abort what runs (the controller resubmits it)."""
    return {
        "model_path": path,
        "load_format": None,
        "abort_all_requests": True,
        "weight_version": str(version),
        "flush_cache": True,
    }


def init_group_body(
    master_address: str,
    master_port: int,
    rank_offset: int,
    world_size: int,
    group: str,
    backend: str,
) -> dict[str, Any]:
    """``/init_weights_update_group`` (blocks until the learner joins as rank 0)."""
    return {
        "master_address": master_address,
        "master_port": master_port,
        "rank_offset": rank_offset,
        "world_size": world_size,
        "group_name": group,
        "backend": backend,
    }


def distributed_update_body(
    named: Sequence[tuple[str, str, Sequence[int]]], group: str, version: int, *, last: bool
) -> dict[str, Any]:
    """``/update_weights_from_distributed`` for one bucket of ``(name, dtype, shape)``;
    only the ``last`` bucket flushes the cache and sets the version."""
    body: dict[str, Any] = {
        "names": [n for n, _, _ in named],
        "dtypes": [d for _, d, _ in named],
        "shapes": [list(s) for _, _, s in named],
        "group_name": group,
        "flush_cache": last,
        "abort_all_requests": False,
    }
    if last:
        body["weight_version"] = str(version)
    return body


def _as_version(name: Any, default: int) -> int:
    """A server's weight-version name as ours; a name that is not an integer
    ("default") means ``default``."""
    return int(name) if str(name).lstrip("-").isdigit() else default


def _version(meta: dict[str, Any], default: int) -> list[int]:
    """Policy versions of a sample's tokens, from ``weight_versions`` spans or
    ``weight_version``."""
    spans = meta.get("weight_versions")
    raw = [s.get("version") for s in spans] if isinstance(spans, list) and spans else []
    raw = raw or [meta.get("weight_version")]
    return sorted({_as_version(v, default) for v in raw})


def _token_versions(meta: dict[str, Any], n: int, default: int) -> list[int]:
    """The version of each of the ``n`` output tokens, from the ``weight_versions``
    spans (``[start, end)`` over the output); empty when the spans do not cover them
    all (the sample then counts every token at its oldest version)."""
    spans = meta.get("weight_versions")
    if not isinstance(spans, list) or not spans:
        return []
    out: list[int] = []
    for span in spans:
        end = span.get("end") if isinstance(span, dict) else None
        if not isinstance(end, int) or span.get("start") != len(out):
            return []
        out += [_as_version(span.get("version"), default)] * (end - len(out))
    return out if len(out) == n else []


def parse_sample(obj: Any, rid: str, default_version: int) -> Sample:
    """One ``/generate`` reply object -> Sample; ``ValueError`` if it is malformed."""
    if not isinstance(obj, dict) or not isinstance(obj.get("meta_info"), dict):
        raise ValueError(f"expected an object with meta_info, got {str(obj)[:200]}")
    meta = obj["meta_info"]
    finish = meta.get("finish_reason") or {}
    kind = finish.get("type") if isinstance(finish, dict) else None
    reason: FinishReason
    if kind in ("stop", "length", "abort"):
        reason = kind
    else:
        raise ValueError(f"unknown finish_reason {finish!r}")
    triples = meta.get("output_token_logprobs") or []  # an early abort may leave it out
    ids = [int(t[1]) for t in triples]
    logprobs = [float(t[0]) for t in triples]
    output_ids = obj.get("output_ids")
    if isinstance(output_ids, list) and output_ids[: len(ids)] != ids:
        raise ValueError("output_ids and output_token_logprobs disagree")
    versions = _version(meta, default_version)
    tokens = _token_versions(meta, len(ids), default_version)
    return Sample(rid, ids, logprobs, reason, versions[0], versions, tokens)


def parse_generate(payload: Any, req: GenerationRequest, default_version: int) -> list[Sample]:
    """``n`` samples from a ``/generate`` reply (a list when ``n > 1``)."""
    items = payload if isinstance(payload, list) else [payload]
    if len(items) != req.n:
        raise ValueError(f"expected {req.n} samples, got {len(items)}")
    return [parse_sample(o, req.rid, default_version) for o in items]


def error_message(resp: httpx.Response) -> str:
    """The server's own words from any of its three error shapes, else the raw text."""
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:300] or resp.reason_phrase
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and "message" in err:
            return str(err["message"])
        if "message" in body:
            return str(body["message"])
        if "detail" in body:
            return str(body["detail"])
    return json.dumps(body)[:300]


def check_reply(addr: str, path: str, resp: httpx.Response) -> Any:
    """Body of a 2xx reply (JSON, text or ``None``); RequestFailed otherwise."""
    if resp.status_code >= 300:
        retryable = resp.status_code >= 500 or resp.status_code == 429
        raise RequestFailed(
            f"{addr}{path}: HTTP {resp.status_code}: {error_message(resp)}", retryable=retryable
        )
    if not resp.content:
        return None
    if resp.headers.get("content-type", "").startswith("application/json"):
        try:
            return resp.json()
        except ValueError as e:
            raise RequestFailed(f"{addr}{path}: malformed JSON: {e}", retryable=True) from None
    return resp.text


class ServerClient:
    """One server: async ``/generate``, synchronous control calls."""

    def __init__(self, addr: str) -> None:
        self.addr = addr
        self.base = f"http://{addr}"
        self.in_flight = 0
        self.requests = 0
        self._aclient: httpx.AsyncClient | None = None

    async def generate(
        self, body: dict[str, Any], req: GenerationRequest, default_version: int
    ) -> list[Sample]:
        if self._aclient is None:  # created on the controller's loop, used only there
            self._aclient = httpx.AsyncClient(
                base_url=self.base, timeout=httpx.Timeout(None, connect=CONNECT_TIMEOUT_S)
            )
        self.in_flight += 1
        self.requests += 1
        try:
            resp = await self._aclient.post("/generate", json=body)
        except httpx.HTTPError as e:
            raise RequestFailed(
                f"{self.addr}/generate: {type(e).__name__}: {e}", retryable=True
            ) from None
        finally:
            self.in_flight -= 1
        payload = check_reply(self.addr, "/generate", resp)
        try:
            return parse_generate(payload, req, default_version)
        except (ValueError, TypeError, KeyError, IndexError) as e:
            raise RequestFailed(f"{self.addr}/generate: bad reply: {e}", retryable=True) from None

    def call(self, method: str, path: str, body: Any = None, timeout: float = 30.0) -> Any:
        """A control call; RequestFailed on transport errors and non-2xx replies."""
        try:
            resp = httpx.request(
                method,
                self.base + path,
                json=body,
                timeout=httpx.Timeout(timeout, connect=CONNECT_TIMEOUT_S),
            )
        except httpx.HTTPError as e:
            raise RequestFailed(
                f"{self.addr}{path}: {type(e).__name__}: {e}", retryable=True
            ) from None
        return check_reply(self.addr, path, resp)

    def post_ok(self, path: str, body: Any, timeout: float = CONTROL_TIMEOUT_S) -> dict[str, Any]:
        """A control call that answers ``{success, message}``; fails unless success."""
        reply = self.call("POST", path, body, timeout)
        if not isinstance(reply, dict) or reply.get("success") is False:
            raise RequestFailed(f"{self.addr}{path}: {reply!r}", retryable=False)
        return reply

    async def aclose(self) -> None:
        if self._aclient is not None:
            await self._aclient.aclose()
            self._aclient = None
