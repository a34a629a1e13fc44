"""SGLang server processes: launch on free ports, wait for ``/health``, stop by PID.

Each server runs ``python -m sglang.launch_server`` in its own session (process group),
so stopping it reaches the scheduler and detokenizer children too. Servers are stopped
when the trainer exits, on Ctrl-C, on SIGTERM, and (Linux) when the trainer dies
without cleaning up: the launcher process gets SIGTERM from the kernel then
(``PR_SET_PDEATHSIG``) and takes its children down with it.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from grpo_plug.errors import ServerError

# On CPU, sgl_kernel's import of its CUDA library falls back to this empty module.
CPU_SHIM = Path(__file__).resolve().parent / "cpu_shim"
STOP_GRACE_S = 20.0  # SIGTERM shutdown takes ~10 s on a busy 2-core machine


@dataclass(frozen=True)
class ServerSpec:
    """Everything needed to start one server."""

    python: str
    model_path: str
    port: int
    log_path: Path
    device: str  # "cpu" or "cuda"
    gpu_ids: tuple[int, ...] = ()
    args: tuple[str, ...] = ()  # further launch_server flags
    host: str = "127.0.0.1"
    # From the run's thread plan (grpo_plug.threads): OpenMP settings, and the CPUs
    # the server is pinned to (() = not pinned).
    thread_env: tuple[tuple[str, str], ...] = ()
    cpus: tuple[int, ...] = ()

    @property
    def addr(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self) -> list[str]:
        return [
            self.python,
            *("-m", "sglang.launch_server"),
            *("--model-path", self.model_path),
            *("--host", self.host, "--port", str(self.port)),
            *("--device", self.device),
            *self.args,
        ]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.device == "cpu":
            env["SGLANG_USE_CPU_ENGINE"] = "1"  # else Llama's rotary embedding imports vllm
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(CPU_SHIM), env.get("PYTHONPATH", "")) if p
            )
            # Unplanned: one thread, as two spinning ones beside another busy process
            # cut throughput ~10x (docs/sglang/CPU.md); the plan makes OpenMP wait
            # passively instead.
            env.setdefault("OMP_NUM_THREADS", "1")
            env.update(self.thread_env)
        else:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, self.gpu_ids))
        return env

    def preexec(self) -> Callable[[], None] | None:
        """Runs in the child before exec (Linux): die with the trainer, take the pin."""
        if sys.platform != "linux":
            return None
        cpus = self.cpus

        def setup() -> None:
            _die_with_parent()
            if cpus:
                with contextlib.suppress(OSError):  # a CPU gone offline: run unpinned
                    os.sched_setaffinity(0, cpus)

        return setup


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on now (the server binds it a minute later; a clash then
    shows up as a failed start naming the log)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it when the trainer dies (Linux)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


@dataclass(eq=False)  # hashable by identity: kept in the set of live servers
class Server:
    spec: ServerSpec
    proc: subprocess.Popen[bytes]
    started: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.spec.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def stop(self, grace: float = STOP_GRACE_S) -> None:
        """SIGTERM the server's process group, SIGKILL it after ``grace`` seconds."""
        if self.proc.poll() is not None:
            _reap_group(self.pid)
            return
        _signal_group(self.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal_group(self.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        _reap_group(self.pid)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)  # the server was started as its own session leader


def _reap_group(pid: int) -> None:
    """Children of a server that exited on its own may linger: end them too."""
    _signal_group(pid, signal.SIGKILL)


def launch(spec: ServerSpec) -> Server:
    spec.log_path.parent.mkdir(parents=True, exist_ok=True)
    with spec.log_path.open("ab") as log:
        log.write(f"$ {' '.join(spec.command())}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            spec.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=spec.env(),
            start_new_session=True,
            preexec_fn=spec.preexec(),
        )
    server = Server(spec, proc)
    with _LOCK:
        _LIVE.add(server)
    return server


def wait_healthy(
    servers: Sequence[Server],
    timeout: float,
    *,
    progress: Callable[[str], None] | None = None,
    every: float = 20.0,
) -> None:
    """Poll every server's ``/health`` until all answer 200; fail naming the log."""
    deadline = time.monotonic() + timeout
    pending = list(servers)
    next_note = time.monotonic() + every
    with httpx.Client(timeout=10.0) as client:
        while pending:
            for s in list(pending):
                if not s.alive():
                    raise ServerError(
                        f"SGLang server {s.spec.addr} (pid {s.pid}) exited with code "
                        f"{s.proc.returncode} while starting; log {s.spec.log_path}:\n"
                        f"{s.log_tail()}"
                    )
                try:
                    if client.get(f"http://{s.spec.addr}/health").status_code == 200:
                        pending.remove(s)
                except httpx.HTTPError:
                    pass  # not listening yet: the port opens once the model is loaded
            if not pending:
                return
            now = time.monotonic()
            if now > deadline:
                names = ", ".join(f"{s.spec.addr} (log {s.spec.log_path})" for s in pending)
                raise ServerError(
                    f"SGLang server not healthy after sglang.startup_timeout={timeout:g}s: {names}"
                )
            if progress is not None and now >= next_note:
                waited = now - min(s.started for s in pending)
                progress(
                    f"waiting for {len(pending)} SGLang server(s) to answer /health "
                    f"({waited:.0f}s so far; log {pending[0].spec.log_path})"
                )
                next_note = now + every
            time.sleep(1.0)


def start(
    specs: Sequence[ServerSpec],
    timeout: float,
    *,
    progress: Callable[[str], None] | None = None,
) -> list[Server]:
    """Launch ``specs`` and wait until every one is healthy; on any failure (or Ctrl-C)
    the ones started are stopped before the error goes on."""
    servers = [launch(s) for s in specs]
    try:
        wait_healthy(servers, timeout, progress=progress)
    except BaseException:
        stop_all(servers)
        raise
    return servers


# ----------------------------------------------------------------------- cleanup

_LIVE: set[Server] = set()
_LOCK = threading.Lock()
_HANDLERS_SET = False


def stop_all(servers: Sequence[Server] | None = None) -> None:
    """Stop ``servers`` (default: every server this process launched), in parallel."""
    with _LOCK:
        targets = list(_LIVE if servers is None else servers)
        for s in targets:
            _LIVE.discard(s)
    threads = [threading.Thread(target=s.stop) for s in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _on_sigterm(signum: int, frame: Any) -> None:
    # SystemExit unwinds through every `finally` and atexit, which stop the servers.
    raise SystemExit(128 + signum)


def install_cleanup() -> None:
    """Stop launched servers at exit and on SIGTERM (when no one else handles it)."""
    global _HANDLERS_SET
    if _HANDLERS_SET:
        return
    atexit.register(stop_all)
    if threading.current_thread() is threading.main_thread() and signal.getsignal(
        signal.SIGTERM
    ) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _on_sigterm)
    _HANDLERS_SET = True
