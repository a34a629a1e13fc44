"""Faults between the backend and the real SGLang server: a small HTTP proxy written
here sits in front of the session's server (conftest.sglang_server) and hangs, answers
400/503 or malformed JSON, or goes away; and a launched server SIGKILLed mid-rollout is
restarted, brought to the synced weights, and no prompt group is lost or doubled."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch

from grpo_plug.errors import RolloutError
from grpo_plug.rollout.controller import Limits, RolloutController
from grpo_plug.rollout.sglang.backend import SGLangBackend
from grpo_plug.rollout.sglang.health import HealthPolicy
from grpo_plug.types import GenerationRequest, SamplingParams

pytestmark = [pytest.mark.slow, pytest.mark.sglang]


class FaultProxy:
    """Forwards HTTP to ``target``; ``faults`` (a list, consumed front first) replaces
    the answer to the next ``/generate`` calls: ``hang``, ``400``, ``503``, ``badjson``."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.faults: list[str] = []
        self.generates = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._forward(None)

            def do_POST(self) -> None:
                self._forward(self.rfile.read(int(self.headers.get("Content-Length", 0))))

            def _forward(self, body: bytes | None) -> None:
                fault = ""
                if self.path == "/generate":
                    proxy.generates += 1
                    fault = proxy.faults.pop(0) if proxy.faults else ""
                if fault == "hang":
                    time.sleep(30)  # longer than the request timeout under test
                    return
                if fault in ("400", "503"):
                    self._reply(
                        int(fault), b'{"error": {"message": "injected %s"}}' % fault.encode()
                    )
                    return
                if fault == "badjson":
                    self._reply(200, b'{"meta_info": ')
                    return
                resp = httpx.request(
                    self.command,
                    f"http://{proxy.target}{self.path}",
                    content=body,
                    headers={"Content-Type": "application/json"},
                    timeout=120,
                )
                self._reply(resp.status_code, resp.content, resp.headers.get("content-type"))

            def _reply(self, status: int, data: bytes, ctype: str | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype or "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.addr = f"127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def proxy(sglang_server: Any) -> Iterator[FaultProxy]:
    server, _model = sglang_server
    p = FaultProxy(server.spec.addr)
    yield p
    p.close()


SP = SamplingParams(max_new_tokens=4, temperature=1.0)


def requests(n: int, tag: str) -> list[GenerationRequest]:
    return [GenerationRequest(f"{tag}{i}", [1, 4 + i, 5, 1], 2, SP) for i in range(n)]


def controller(addr: str, **limits: Any) -> RolloutController:
    backend = SGLangBackend([addr], [2], dtype="float32")
    return RolloutController(backend, Limits(backoff_base=0.1, **limits))


def test_a_hung_request_times_out_and_the_retry_answers(proxy: FaultProxy) -> None:
    ctl = controller(proxy.addr, timeout=5, retries=2)
    proxy.faults = ["hang"]
    try:
        (group,) = ctl.generate(requests(1, "hung"))
        assert len(group) == 2 and all(s.finish_reason != "abort" for s in group)
        stats = ctl.pop_metrics()
        assert (stats["rollout/timeouts"], stats["rollout/retries"]) == (1.0, 1.0)
        assert proxy.generates == 2
    finally:
        ctl.close()


@pytest.mark.parametrize(
    ("faults", "message", "attempts"),
    [
        (["400"], r"HTTP 400: injected 400", 1),  # the request is bad: no retry
        (["503"] * 3, r"HTTP 503: injected 503 \(gave up after 2 attempts", 2),
        (["badjson"] * 3, r"malformed JSON.*gave up after 2 attempts", 2),
    ],
)
def test_bad_answers_are_clear_errors(
    proxy: FaultProxy, faults: list[str], message: str, attempts: int
) -> None:
    ctl = controller(proxy.addr, timeout=60, retries=1)
    proxy.faults = list(faults)
    try:
        with pytest.raises(RolloutError, match=message):
            ctl.generate(requests(1, "bad"))
        assert proxy.generates == attempts
    finally:
        ctl.close()


def test_a_503_then_an_answer_is_retried(proxy: FaultProxy) -> None:
    ctl = controller(proxy.addr, timeout=60, retries=2)
    proxy.faults = ["503"]
    try:
        groups = ctl.generate(requests(2, "r"))
        assert [len(g) for g in groups] == [2, 2]
        assert ctl.pop_metrics()["rollout/retries"] == 1.0
    finally:
        ctl.close()


def test_every_server_down_stops_with_the_cause(proxy: FaultProxy) -> None:
    policy = HealthPolicy(interval=0.5, timeout=5, max_restarts=2, backoff=0.1)
    backend = SGLangBackend([proxy.addr], [2], dtype="float32", health=policy)
    ctl = RolloutController(backend, Limits(timeout=60, retries=3, backoff_base=0.1))
    try:
        assert [len(g) for g in ctl.generate(requests(1, "ok"))] == [2]
        proxy.close()  # the only server goes away
        start = time.monotonic()
        with pytest.raises(RolloutError, match=rf"{proxy.addr} is unreachable.*not restartable"):
            ctl.generate(requests(2, "down"))
        assert time.monotonic() - start < 30
        assert backend.stats()["rollout/servers_up"] == 0.0
    finally:
        ctl.close()


# ----------------------------------------------------------------------- SIGKILL


@pytest.fixture(scope="module")
def own_server(tmp_path_factory: pytest.TempPathFactory, sglang_server: Any) -> Iterator[Any]:
    """A server of this module's own, so killing it spares the session's."""
    from grpo_plug import config as cfgmod
    from grpo_plug.rollout.sglang import servers as srv
    from grpo_plug.rollout.sglang.specs import server_specs
    from tests.helpers import cpu_server_overrides

    _server, model = sglang_server
    cfg = cfgmod.load(overrides=["rollout.backend=sglang", *cpu_server_overrides()])
    logs = tmp_path_factory.mktemp("faults") / "logs"
    (server,) = srv.start(server_specs(cfg, str(model), logs), timeout=900)
    try:
        yield server, model
    finally:
        srv.stop_all([server])


def test_a_server_killed_mid_rollout_is_restarted_with_the_synced_weights(
    own_server: Any, tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM

    from grpo_plug import config as cfgmod
    from grpo_plug.weight_sync.disk import DiskSync

    server, model_dir = own_server
    policy = HealthPolicy(interval=1, timeout=60, max_restarts=2, backoff=1, startup_timeout=900)
    backend = SGLangBackend(
        [server.spec.addr], [2], dtype="float32", launched=[server], health=policy
    )
    ctl = RolloutController(backend, Limits(max_concurrent=4, timeout=900, retries=3))
    sync = DiskSync(cfgmod.load(overrides=[f"weight_sync.disk_dir={tmp_path / 'w'}"]))
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    with torch.no_grad():
        model.model.norm.weight.mul_(0.5)
    try:
        sync.sync(model, backend, 1)  # the version a restarted server must come back at
        reqs = [
            GenerationRequest(f"p{i}", [1, 4 + i % 7, 5, 1], 2, SamplingParams(64, 1.0))
            for i in range(12)
        ]
        killer = threading.Thread(target=kill_when_busy, args=(backend,))
        killer.start()
        start = time.monotonic()
        groups = ctl.generate(reqs)
        restart_s = time.monotonic() - start
        killer.join()
        # Every prompt group answered exactly once, in order, n samples each.
        assert [g[0].rid for g in groups] == [r.rid for r in reqs]
        assert all(len(g) == 2 and {s.rid for s in g} == {g[0].rid} for g in groups)
        assert all(s.finish_reason in ("stop", "length") for g in groups for s in g)
        stats = ctl.pop_metrics()
        assert stats["rollout/server_restarts"] == 1.0 and stats["rollout/retries"] >= 1
        new = backend.servers[0]
        assert new is not None and new.pid != server.pid and new.alive()
        assert backend.weight_versions() == ["1"]  # back at the synced weights
        (norm,) = backend.read_weights("model.norm.weight", rows=1 << 20)
        assert torch.equal(norm, model.model.norm.weight.detach())
        assert backend.monitor is not None
        print(f"rollout with one restart: {restart_s:.0f}s; {backend.monitor.restart_seconds}")

        # Killed during a weight sync: the sync completes without it, and the server
        # comes back at the version of that sync, not the one before.
        with torch.no_grad():
            model.model.norm.weight.mul_(0.5)
        os.killpg(new.pid, signal.SIGKILL)
        sync.sync(model, backend, 2)
        assert 0 in backend.missed or backend.monitor.state[0] != "up"
        deadline = time.monotonic() + 900
        while backend.monitor.up() != [0] and time.monotonic() < deadline:
            assert backend.monitor.fatal is None, backend.monitor.fatal
            time.sleep(1)
        assert backend.monitor.restarts == 2 and backend.weight_versions() == ["2"]
        (norm,) = backend.read_weights("model.norm.weight", rows=1 << 20)
        assert torch.equal(norm, model.model.norm.weight.detach())
    finally:
        ctl.close()  # stops the restarted server too
        sync.close()


def kill_when_busy(backend: SGLangBackend) -> None:
    deadline = time.monotonic() + 120
    while backend.clients[0].in_flight == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    server = backend.servers[0]
    assert server is not None
    os.killpg(server.pid, signal.SIGKILL)
