"""The openai backend against scripted servers (httpx.MockTransport): the contract
check, the wire format, errors, and the weight modes. No real server needed."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import httpx
import pytest
from grpo_plug_openai import plugin
from grpo_plug_openai.plugin import (
    FrozenServer,
    OpenAIBackend,
    SGLangDiskBackend,
    make_openai_backend,
    native_root,
)
from grpo_plug_openai.wire import completion_body, parse_completion

from grpo_plug import config
from grpo_plug.api import ConfigError, GenerationRequest, RequestFailed, SamplingParams
from grpo_plug.testing import (
    ContractError,
    check_rollout_backend,
    check_weight_sync,
    isolated_host,
    registered,
    tiny_context,
)

EOS = 2
URL = "http://127.0.0.1:1/v1"


def sglang_like(body: dict[str, Any], *, stop_after: int = 2) -> dict[str, Any]:
    """A reply shaped like SGLang 0.5.23's (token_ids, logprobs, metadata)."""
    choices = []
    for i in range(body["n"]):
        length = min(body["max_tokens"], stop_after + i)
        ids = [5 + (j % 3) for j in range(length)]
        stopped = length < body["max_tokens"]
        if stopped:
            ids.append(EOS)
        choices.append(
            {
                "index": i,
                "text": "",
                "logprobs": {
                    "tokens": ["x"] * len(ids),
                    "token_logprobs": [-0.5] * len(ids),
                    "top_logprobs": [],
                    "text_offset": [-1] * len(ids),
                },
                "finish_reason": "stop" if stopped else "length",
                "matched_stop": EOS if stopped else None,
                "token_ids": ids if body.get("return_token_ids") else None,
            }
        )
    return {
        "id": "cmpl-1",
        "object": "text_completion",
        "choices": choices,
        "metadata": {"weight_version": "default"},
    }


class Scripted:
    """A transport that records request bodies and answers with ``reply(body)``."""

    def __init__(self, reply: Any = sglang_like, status: int = 200) -> None:
        self.reply = reply
        self.status = status
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else {}
        self.bodies.append(body)
        self.paths.append(request.url.path)
        return httpx.Response(self.status, json=self.reply(body))

    def backend(self, **kw: Any) -> OpenAIBackend:
        return OpenAIBackend([URL], ["m"], [EOS], transport=httpx.MockTransport(self), **kw)


def one(sp: SamplingParams, n: int = 2, seed: int | None = None) -> GenerationRequest:
    return GenerationRequest("r0", [1, 4, 5], n, sp, seed)


def run(backend: OpenAIBackend, req: GenerationRequest) -> list[Any]:
    return asyncio.run(backend.agenerate([req]))[0]


def test_registers() -> None:
    assert registered(plugin) == {
        "rollout backend": ["openai"],
        "weight-sync strategy": ["frozen"],
    }


def test_config_section_is_validated_like_builtin_keys() -> None:
    sections = isolated_host(plugin).config_sections()
    cfg = config.load(
        overrides=[f"openai.base_urls={URL},{URL}", "openai.weights=sglang_disk"],
        sections=sections,
    )
    settings = cfg.section(plugin.OpenAIConfig)
    assert settings.base_urls == [URL, URL] and settings.weights == "sglang_disk"
    with pytest.raises(ConfigError, match=r"openai\.timout: unknown config key.*openai\.timeout"):
        config.load(overrides=["openai.timout=3"], sections=sections)
    with pytest.raises(ConfigError, match=r"openai\.weights"):
        config.load(overrides=["openai.weights=disk"], sections=sections)


def test_contract_on_a_scripted_server() -> None:
    server = Scripted()
    backend = check_rollout_backend(server.backend(), max_new_tokens=4)
    assert backend.stats() == {"openai/server0/requests": 0.0, "openai/failed_requests": 0.0}
    body = server.bodies[0]
    assert body["prompt"] in ([1, 4, 5], [1, 6]) and body["logprobs"] == 0
    assert body["return_token_ids"] is True and body["stop_token_ids"] == [EOS]
    assert {"temperature", "top_p", "top_k", "max_tokens", "n"} <= set(body)


def test_samples_keep_ids_logprobs_finish_and_version() -> None:
    backend = Scripted().backend()
    backend.set_policy_version(7)
    a, b = run(backend, one(SamplingParams(max_new_tokens=3)))
    assert (a.output_ids, a.finish_reason, a.policy_version) == ([5, 6, EOS], "stop", 7)
    assert (b.output_ids, b.finish_reason) == ([5, 6, 7], "length")
    assert a.logprobs == [-0.5] * 3


def test_vllm_token_id_strings() -> None:
    def vllm(body: dict[str, Any]) -> dict[str, Any]:
        assert body["return_tokens_as_token_ids"] is True
        lp = {"tokens": ["token_id:9", "token_id:2"], "token_logprobs": [-1.0, -0.25]}
        return {"choices": [{"index": 0, "text": "", "logprobs": lp, "finish_reason": "stop"}]}

    backend = Scripted(vllm).backend(mode="token_id_strings")
    (s,) = run(backend, one(SamplingParams(max_new_tokens=4), n=1))
    assert (s.output_ids, s.logprobs, s.finish_reason) == ([9, 2], [-1.0, -0.25], "stop")


def test_a_server_without_token_ids_fails_naming_the_cause() -> None:
    def plain(body: dict[str, Any]) -> dict[str, Any]:
        reply = sglang_like(body)
        for c in reply["choices"]:
            del c["token_ids"]
        return reply

    with pytest.raises(RequestFailed, match="no token_ids: the server ignored return_token_ids"):
        run(Scripted(plain).backend(), one(SamplingParams(max_new_tokens=3)))


@pytest.mark.parametrize(
    ("status", "retryable"), [(400, False), (404, False), (429, True), (503, True)]
)
def test_http_errors_map_to_request_failed(status: int, retryable: bool) -> None:
    server = Scripted(lambda b: {"object": "error", "message": "nope"}, status=status)
    with pytest.raises(RequestFailed, match=f"HTTP {status}: nope") as e:
        run(server.backend(), one(SamplingParams(max_new_tokens=3)))
    assert e.value.retryable is retryable


def test_unreachable_server_is_retryable() -> None:
    backend = OpenAIBackend(["http://127.0.0.1:9/v1"], ["m"], [EOS], timeout=2.0)
    with pytest.raises(RequestFailed) as e:
        run(backend, one(SamplingParams(max_new_tokens=3)))
    assert e.value.retryable and backend.stats()["openai/failed_requests"] == 1.0


def test_abort_comes_back_as_abort_for_the_controller() -> None:
    def aborted(body: dict[str, Any]) -> dict[str, Any]:
        choice = {"index": 0, "text": "", "logprobs": None, "finish_reason": "abort"}
        return {"choices": [choice]}

    (s,) = run(Scripted(aborted).backend(), one(SamplingParams(max_new_tokens=3), n=1))
    assert (s.output_ids, s.logprobs, s.finish_reason) == ([], [], "abort")


def test_seeded_sends_one_request_per_sample_seed() -> None:
    server = Scripted()
    samples = run(server.backend(seeded=True), one(SamplingParams(max_new_tokens=3), n=3, seed=10))
    assert len(samples) == 3
    assert sorted((b["seed"], b["n"]) for b in server.bodies) == [(10, 1), (11, 1), (12, 1)]
    assert "seed" not in completion_body(
        one(SamplingParams(max_new_tokens=3)), model="m", stop_ids=[], mode="return_token_ids", n=1
    )


def test_reply_weight_versions_tag_samples_only_in_sglang_disk_mode() -> None:
    def versioned(body: dict[str, Any]) -> dict[str, Any]:
        reply = sglang_like(body)
        reply["metadata"] = {
            "weight_version": "4",
            "weight_versions": [{"version": "3", "start": 0, "end": 1}, {"version": "4"}],
        }
        return reply

    req = one(SamplingParams(max_new_tokens=3), n=1)
    payload = versioned({"n": 1, "max_tokens": 3, "return_token_ids": True})
    (s,) = parse_completion(payload, req, 1, "return_token_ids", 0, reply_tags=True)
    assert (s.policy_version, s.policy_versions) == (3, [3, 4])
    transport = httpx.MockTransport(Scripted(versioned))
    disk = SGLangDiskBackend([URL], ["m"], [EOS], transport=transport)
    (s,) = run(disk, req)
    assert s.policy_versions == [3, 4]
    frozen = Scripted(versioned).backend()  # a frozen server's label is not this run's
    frozen.set_policy_version(5)
    (s,) = run(frozen, req)
    assert s.policy_versions == [5]


def test_sglang_disk_surface_uses_the_native_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        calls.append((request.url.path, body))
        if request.url.path == "/get_weights_by_name":
            return httpx.Response(200, json=[[0.5, 1.0]])
        return httpx.Response(200, json={"success": True, "message": "ok"})

    backend = SGLangDiskBackend([URL], ["m"], [EOS], weight_dtype="float32")
    assert native_root(URL) == "http://127.0.0.1:1" and backend.weight_dtype == "float32"
    mock = httpx.MockTransport(handler)

    def routed(method: str, url: str, **kw: Any) -> httpx.Response:
        with httpx.Client(transport=mock) as c:
            return c.request(method, url, **kw)

    monkeypatch.setattr(httpx, "request", routed)
    backend.pause_generation()
    backend.update_weights_from_disk("/w/v1", 1)
    (w,) = backend.read_weights("model.norm.weight", 2)
    backend.continue_generation()
    assert [p for p, _ in calls] == [
        "/pause_generation",
        "/update_weights_from_disk",
        "/get_weights_by_name",
        "/continue_generation",
    ]
    assert calls[0][1] == {"mode": "abort"}
    assert calls[1][1]["weight_version"] == "1" and calls[1][1]["model_path"] == "/w/v1"
    assert w.tolist() == [[0.5, 1.0]]


def test_frozen_server_refuses_training_without_the_opt_in() -> None:
    sections = isolated_host(plugin).config_sections()
    ctx = tiny_context()
    base = [f"openai.base_urls={URL}", "openai.model=m"]
    with pytest.raises(ConfigError, match=r"weight_sync\.strategy=frozen"):
        make_openai_backend(config.load(overrides=base, sections=sections), ctx)
    with pytest.raises(ConfigError, match=r"openai\.base_urls"):
        make_openai_backend(
            config.load(overrides=["weight_sync.strategy=frozen"], sections=sections), ctx
        )
    cfg = config.load(overrides=[*base, "weight_sync.strategy=frozen"], sections=sections)
    backend = make_openai_backend(cfg, ctx)
    assert type(backend) is OpenAIBackend and not hasattr(backend, "update_weights_from_disk")
    assert backend.stop_ids == [ctx.tokenizer.eos_token_id]


def test_frozen_strategy_moves_neither_weights_nor_version() -> None:
    backend = Scripted().backend()
    sync = check_weight_sync(FrozenServer, backend=backend, updates=False)
    assert isinstance(sync, FrozenServer)
    assert backend.version == 0 and sync.skipped == [1, 2]
    with pytest.raises(ContractError, match=r"backend is at 0, expected 1"):
        check_weight_sync(FrozenServer, backend=Scripted().backend())  # it does not update
    (s, _) = run(backend, one(SamplingParams(max_new_tokens=3)))
    assert s.policy_version == 0 and all(math.isfinite(x) for x in s.logprobs)
