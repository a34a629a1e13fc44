"""Health of the SGLang servers: notice a dead or hung one, restart it, bring it back.

A thread checks every server each ``sglang.health_interval`` seconds: a launched
server whose process exited is dead; one whose ``/health_generate`` fails or takes
longer than ``sglang.health_timeout`` is hung. Either is taken out of rotation, killed
(process group) and launched again on the same port, with a doubling backoff between
tries; once healthy it is brought to the last synced weights (the backend's
``bring_up``, which also resyncs a server that missed an update while it was out)
before it serves again, or ``waiting`` until the strategy can. Several servers down at
once restart at once, each in its own thread. Requests it had in flight fail and the rollout
controller retries them on a server that is up, so each prompt group is answered
exactly once. After ``sglang.max_restarts`` failed restarts, or when every server is
down with none restarting, the backend fails with the cause and the server's log.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import httpx

from grpo_plug.errors import ServerError
from grpo_plug.rollout.sglang import servers as srv
from grpo_plug.rollout.sglang.client import ServerClient

State = Literal["up", "suspect", "restarting", "waiting", "failed"]


@dataclass(frozen=True)
class HealthPolicy:
    interval: float = 5.0
    timeout: float = 60.0
    max_restarts: int = 3
    backoff: float = 5.0
    startup_timeout: float = 600.0


class ServerMonitor:
    """Watches ``clients`` (``servers[i]`` is the process behind client ``i``, or None
    for an attached server, which can be checked but not restarted)."""

    def __init__(
        self,
        clients: Sequence[ServerClient],
        servers: list[srv.Server | None],
        policy: HealthPolicy,
        *,
        bring_up: Callable[[int, bool], None],
        message: Callable[[str], None] | None = None,
    ) -> None:
        self.clients = list(clients)
        self.servers = servers  # shared with the backend: restarts replace entries
        self.policy = policy
        # bring_up(i, restarted): to the current weights if needed, then state "up".
        self.bring_up = bring_up
        self.message = message
        self.state: list[State] = ["up"] * len(clients)
        self.fatal: str | None = None  # why the backend must stop
        self.restarts = 0
        self.health_failures = 0
        self.restart_seconds: list[float] = []
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sglang-health", daemon=True)
        self._restarts: list[threading.Thread] = []
        self._count = threading.Lock()
        # Servers die with the thread that launched them (PR_SET_PDEATHSIG is per
        # thread), so restarts launch from this one, which lives as long as the monitor.
        self._launcher = ThreadPoolExecutor(1, thread_name_prefix="sglang-launch")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for t in [self._thread, *self._restarts]:
            if t.is_alive():
                t.join(timeout=30)
        self._launcher.shutdown(wait=False)  # its servers are stopped next anyway

    def up(self) -> list[int]:
        return [i for i, s in enumerate(self.state) if s == "up"]

    def can_restart(self, index: int) -> bool:
        return self.servers[index] is not None and self.policy.max_restarts > 0

    def suspect(self, index: int) -> None:
        """A request to server ``index`` failed in transport: stop routing to it and
        check it now rather than at the next interval."""
        if self.state[index] == "up":
            self.state[index] = "suspect"
        self._wake.set()

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        while not self._stop.is_set():
            for i in range(len(self.clients)):
                if self._stop.is_set():
                    return
                if self.state[i] in ("up", "suspect", "waiting"):
                    self._check(i)
            self._give_up_if_all_down()
            self._wake.wait(self.policy.interval)
            self._wake.clear()

    def _check(self, i: int) -> None:
        cause = self.problem(i)
        if cause is None:
            if self.state[i] != "up":  # a transport blip: back, resynced if it missed one
                try:
                    self.bring_up(i, False)
                except Exception as e:
                    self.fail(i, f"is back, but could not get the current weights: {e}")
            return
        self.health_failures += 1
        self._note(f"SGLang server {self.clients[i].addr} {cause}")
        if self.servers[i] is None:
            self.fail(i, f"{cause}; it is attached (rollout.server_addrs), not restartable")
        elif self.policy.max_restarts == 0:
            self.fail(i, f"{cause}; sglang.max_restarts=0")
        else:
            self.state[i] = "restarting"
            t = threading.Thread(
                target=self._restart, args=(i, cause), name=f"sglang-restart-{i}", daemon=True
            )
            self._restarts = [r for r in self._restarts if r.is_alive()] + [t]
            t.start()

    def problem(self, i: int) -> str | None:
        """Why server ``i`` cannot serve, or None when it is healthy."""
        server = self.servers[i]
        if server is not None and not server.alive():
            return f"exited with code {server.proc.returncode}"
        try:
            resp = httpx.get(
                f"{self.clients[i].base}/health_generate",
                timeout=httpx.Timeout(self.policy.timeout, connect=10.0),
            )
        except httpx.TimeoutException:
            return f"did not answer /health_generate within {self.policy.timeout:g}s (hung)"
        except httpx.HTTPError as e:
            return f"is unreachable ({type(e).__name__}: {e})"
        if resp.status_code != 200:
            return f"answered /health_generate with HTTP {resp.status_code}"
        return None

    def _restart(self, i: int, cause: str) -> None:
        old = self.servers[i]
        assert old is not None
        last = cause
        for attempt in range(self.policy.max_restarts):
            delay = self.policy.backoff * (2 ** (attempt - 1)) if attempt else 0.0
            if self._stop.wait(delay):
                return
            start = time.monotonic()
            srv.stop_all([old])
            self._note(f"restarting SGLang server {old.spec.addr} (try {attempt + 1})")
            new = self._launcher.submit(srv.launch, old.spec).result()
            self.servers[i] = old = new
            try:
                srv.wait_healthy([new], self.policy.startup_timeout)
            except ServerError as e:
                last = str(e)
                continue
            try:
                self.bring_up(i, True)  # the last synced weights before it serves again
            except Exception as e:
                self.fail(i, f"restarted, but could not get the current weights: {e}")
                return
            with self._count:  # restarts run in parallel threads
                self.restarts += 1
                self.restart_seconds.append(time.monotonic() - start)
            self._note(f"SGLang server {new.spec.addr} back after {time.monotonic() - start:.0f}s")
            return
        self.fail(i, f"{cause}; {self.policy.max_restarts} restart(s) failed, last: {last}")

    def fail(self, i: int, why: str) -> None:
        self.state[i] = "failed"
        server = self.servers[i]
        log = f"; log {server.spec.log_path}" if server is not None else ""
        self.fatal = f"SGLang server {self.clients[i].addr} {why}{log}"
        self._note(self.fatal)

    def _give_up_if_all_down(self) -> None:
        if self.fatal is None and not any(s in ("up", "restarting", "waiting") for s in self.state):
            logs = [str(s.spec.log_path) for s in self.servers if s is not None]
            self.fatal = "every SGLang server is down" + (
                f" (logs: {', '.join(logs)})" if logs else ""
            )

    def _note(self, text: str) -> None:
        if self.message is not None:
            with contextlib.suppress(Exception):
                self.message(text)
