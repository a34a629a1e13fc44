"""Contract tests: every example in tests/data/sglang (an SGLang endpoint's request and
reply) is produced by the client (method, path and body, sent over real loopback HTTP)
and its reply parsed by it."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from grpo_plug.rollout.sglang.backend import SGLangBackend
from grpo_plug.rollout.sglang.client import (
    ServerClient,
    distributed_update_body,
    init_group_body,
)
from grpo_plug.rollout.sglang.client import generate_body as make_generate_body
from grpo_plug.types import GenerationRequest, SamplingParams

EXAMPLES = Path(__file__).resolve().parent / "data" / "sglang"


class Canned:
    """A real HTTP server that answers every request with one canned reply and
    records what it received."""

    def __init__(self) -> None:
        self.reply: dict[str, Any] = {"status": 200, "content_type": None, "body": None}
        self.seen: list[dict[str, Any]] = []
        canned = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(n) if n else b""
                canned.seen.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "body": json.loads(raw) if raw else None,
                    }
                )
                r = canned.reply
                body = r["body"]
                data = b""
                if r["content_type"] == "application/json":
                    data = json.dumps(body).encode()
                elif body is not None:
                    data = str(body).encode()
                self.send_response(r["status"])
                if r["content_type"]:
                    self.send_header("content-type", r["content_type"])
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.addr = f"127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def canned() -> Iterator[Canned]:
    c = Canned()
    yield c
    c.httpd.shutdown()


def example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text())
    return data


def test_every_example_has_a_case() -> None:
    assert {p.stem for p in EXAMPLES.glob("*.json")} == set(CASES)


def _generate(c: Canned, ex: dict[str, Any]) -> Any:
    body = ex["request"]["body"]
    sp = body["sampling_params"]
    req = GenerationRequest(
        "rid-1",
        body["input_ids"],
        1,
        SamplingParams(sp["max_new_tokens"], sp["temperature"], sp["top_p"], sp["top_k"]),
    )
    sent = make_generate_body(req, sp["stop_token_ids"])
    assert sent.pop("rid") == "rid-1"  # ours, so a request can be aborted by id
    client = ServerClient(c.addr)

    async def go() -> Any:
        try:
            return await client.generate(sent, req, default_version=0)
        finally:
            await client.aclose()

    (sample,) = asyncio.run(go())
    meta = ex["response"]["body"]["meta_info"]
    assert sample.output_ids == ex["response"]["body"]["output_ids"]
    assert sample.logprobs == [t[0] for t in meta["output_token_logprobs"]]
    assert sample.finish_reason == "stop"
    assert sample.policy_versions == [3]  # meta_info.weight_version "3"
    return None


def _backend(c: Canned) -> SGLangBackend:
    return SGLangBackend([c.addr], [2])


CASES: dict[str, Callable[[Canned, dict[str, Any]], Any]] = {
    "generate": _generate,
    "pause_generation": lambda c, ex: _backend(c).pause_generation(),
    "continue_generation": lambda c, ex: _backend(c).continue_generation(),
    "flush_cache": lambda c, ex: _backend(c).flush_cache(),
    "abort_request": lambda c, ex: _backend(c).abort_all(),
    "model_info": lambda c, ex: _backend(c).weight_versions(),
    "release_memory_occupation": lambda c, ex: _backend(c).release_memory(
        ex["request"]["body"]["tags"]
    ),
    "update_weights_from_disk": lambda c, ex: _backend(c).update_weights_from_disk(
        ex["request"]["body"]["model_path"], int(ex["request"]["body"]["weight_version"])
    ),
    "init_weights_update_group": lambda c, ex: ServerClient(c.addr).post_ok(
        "/init_weights_update_group", init_group_body(**_init_args(ex["request"]["body"]))
    ),
    "update_weights_from_distributed": lambda c, ex: ServerClient(c.addr).post_ok(
        "/update_weights_from_distributed", _distributed_body(ex["request"]["body"])
    ),
}

# Keys the client adds beyond a fixture's body, each on purpose.
EXTRA_KEYS = {"update_weights_from_disk": {"flush_cache"}}


def _init_args(body: dict[str, Any]) -> dict[str, Any]:
    keys = ("master_address", "master_port", "rank_offset", "world_size")
    return {**{k: body[k] for k in keys}, "group": body["group_name"], "backend": body["backend"]}


def _distributed_body(body: dict[str, Any]) -> dict[str, Any]:
    named = list(zip(body["names"], body["dtypes"], body["shapes"], strict=True))
    out = distributed_update_body(named, body["group_name"], int(body["weight_version"]), last=True)
    # The fixture's single bucket leaves the flush to a later call; ours flushes on the last.
    out["flush_cache"] = body["flush_cache"]
    return out


@pytest.mark.parametrize("name", sorted(p.stem for p in EXAMPLES.glob("*.json")))
def test_example_round_trip(canned: Canned, name: str) -> None:
    ex = example(name)
    canned.reply = ex["response"]
    canned.seen.clear()
    result = CASES[name](canned, ex)
    (seen,) = canned.seen
    want = ex["request"]
    assert (seen["method"], seen["path"]) == (want["method"], want["path"])
    got = dict(seen["body"] or {})
    for key in EXTRA_KEYS.get(name, set()):
        got.pop(key)
    assert got == (want["body"] or {})
    if name == "model_info":
        assert result == ["4"]


def test_errors_map_to_retryable_or_not(canned: Canned) -> None:
    from grpo_plug.errors import RequestFailed

    client = ServerClient(canned.addr)
    for status, retryable in ((400, False), (503, True), (500, True)):
        canned.reply = {
            "status": status,
            "content_type": "application/json",
            "body": {"error": {"message": f"boom {status}"}},
        }
        with pytest.raises(RequestFailed, match=f"HTTP {status}: boom {status}") as info:
            client.call("POST", "/generate", {})
        assert info.value.retryable is retryable
    canned.reply = {"status": 200, "content_type": "application/json", "body": None}
    assert client.call("GET", "/model_info") is None  # a literal JSON null


def test_each_token_gets_the_version_of_its_weight_versions_span() -> None:
    """A weight update that lands mid-request: the server's spans ([start, end) over the
    output) give each token its version; spans that do not cover the output are not
    trusted and every token counts at the oldest version."""
    from grpo_plug.rollout.sglang.client import parse_sample

    def reply(spans: list[dict[str, Any]]) -> dict[str, Any]:
        meta = {
            "finish_reason": {"type": "length", "length": 5},
            "output_token_logprobs": [[-0.5, t, None] for t in (11, 12, 13, 14, 15)],
            "weight_version": "4",
            "weight_versions": spans,
        }
        return {"output_ids": [11, 12, 13, 14, 15], "meta_info": meta}

    spans = [{"version": "3", "start": 0, "end": 2}, {"version": "4", "start": 2, "end": 5}]
    s = parse_sample(reply(spans), "r", default_version=0)
    assert (s.policy_version, s.policy_versions) == (3, [3, 4])
    assert s.token_versions == [3, 3, 4, 4, 4]
    short = parse_sample(reply(spans[:1]), "r", default_version=0)  # covers 2 of 5 tokens
    assert short.token_versions == [3] * 5
