"""What a run starts, from ``allocation_mode`` and ``cluster.*``: learner ranks and servers.

``sglang.d{dp}p{pp}t{tp}+d{dp}p{pp}t{tp}`` gives the generation layout (SGLang server
replicas x tensor parallel) and the training layout (learner data-parallel ranks,
sharded with FSDP2); ``d{N}p1t1`` alone is N learner ranks with generation colocated in
rank 0's process (``local`` is ``d1p1t1``). On each node the servers take the first GPUs
and the learner ranks the next ones; on a single GPU both share it (the seed's
single-GPU set-up: disk weight sync, ``sglang.mem_fraction_static`` leaves room for the
learner).

With more than one learner rank ``grpo-plug train`` starts torchrun itself
(:func:`run_learners`) and supervises it: Ctrl-C asks rank 0 to stop after the step,
a second Ctrl-C or SIGTERM stops every rank, and nothing it started outlives it. Rank 0
launches the SGLang servers (it owns their health checks and restarts) and knows their
addresses. ``grpo-plug train --dry-run`` prints this plan without starting anything.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

from grpo_plug.config import TrainConfig
from grpo_plug.errors import ConfigError
from grpo_plug.plan import RunPlan
from grpo_plug.plan import resolve as resolve_plan

if TYPE_CHECKING:
    pass

DEFAULT_MASTER_PORT = 29500
RUN_TOKEN = "GRPO_PLUG_RUN_TOKEN"  # in every process a supervised run starts
STOP_GRACE_S = 45.0  # torchrun's own SIGTERM -> SIGKILL grace is 30 s


@dataclass(frozen=True)
class Process:
    role: str  # "learner" or "sglang"
    node: int
    command: str
    gpus: tuple[int, ...] = ()  # CUDA_VISIBLE_DEVICES; () = the CPU
    addr: str | None = None  # host:port a server listens on
    argv: tuple[str, ...] = ()  # what `grpo-plug train` execs ((): runs in-process / by rank 0)


@dataclass(frozen=True)
class LaunchPlan:
    processes: list[Process]
    learner_ranks: int
    notes: list[str] = field(default_factory=list)

    def learner(self, node: int) -> Process:
        return next(p for p in self.processes if p.role == "learner" and p.node == node)


def entry_argv(argv0: str | None = None) -> list[str]:
    """How a rank runs this program: ``-m grpo_plug``, or the script that was started
    (a driver that registers extra plugins, e.g. the tests')."""
    arg = argv0 if argv0 is not None else sys.argv[0]
    path = Path(arg)
    if path.name not in ("grpo-plug", "__main__.py") and path.suffix == ".py" and path.is_file():
        return [str(path.resolve())]
    return ["-m", "grpo_plug"]


def rendezvous(nodes: int, node: int, env: Mapping[str, str]) -> list[str]:
    """torchrun's rendezvous flags: standalone on one node; node 0's address
    (``MASTER_ADDR``, ``MASTER_PORT``) and this node's index (``NODE_RANK``) on several."""
    if nodes == 1:
        return ["--standalone"]
    addr = env.get("MASTER_ADDR") or "$MASTER_ADDR"
    port = env.get("MASTER_PORT") or str(DEFAULT_MASTER_PORT)
    return [
        *("--nnodes", str(nodes), "--node-rank", str(node)),
        *("--master-addr", addr, "--master-port", port),
    ]


def _learner(
    cfg: TrainConfig, rp: RunPlan, train_args: Sequence[str], env: Mapping[str, str]
) -> list[Process]:
    """One learner process per node: torchrun when there is more than one rank."""
    gpus_per_node = cfg.cluster.n_gpus_per_node
    nodes, ranks = cfg.cluster.n_nodes, rp.learner_ranks
    per_node = max(1, ranks // nodes)
    gpus: tuple[int, ...]
    if ranks == 1:
        gpus = (rp.learner_gpu_offset(cfg, 0),) if gpus_per_node else ()
        cmd = shlex.join(["grpo-plug", "train", *train_args])
        return [Process("learner", 0, cmd + "  (this process)", gpus)]
    out = []
    for node in range(nodes):
        argv = [sys.executable, "-m", "torch.distributed.run", *rendezvous(nodes, node, env)]
        argv += ["--nproc-per-node", str(per_node), *entry_argv(), "train", *train_args]
        first = rp.learner_gpu_offset(cfg, node)
        gpus = tuple(range(first, first + per_node)) if gpus_per_node else ()
        out.append(Process("learner", node, shlex.join(argv), gpus, argv=tuple(argv)))
    return out


def _servers(cfg: TrainConfig, rp: RunPlan, notes: list[str]) -> list[Process]:
    alloc = rp.allocation
    assert alloc is not None
    gpus_per_node, nodes = cfg.cluster.n_gpus_per_node, cfg.cluster.n_nodes
    ranks = alloc.train_dp
    if cfg.rollout.server_addrs:
        notes.append("servers: attaching to rollout.server_addrs, none launched")
        return []
    shared = rp.shared_gpu
    if gpus_per_node and not shared and alloc.gen_gpus + ranks // nodes > gpus_per_node:
        raise ConfigError(
            f"allocation_mode: {cfg.allocation_mode!r} needs {alloc.gen_gpus} generation + "
            f"{ranks // nodes} learner GPUs on node 0 but cluster.n_gpus_per_node is "
            f"{gpus_per_node}"
        )
    from grpo_plug.rollout.sglang.specs import server_specs

    servers = []
    # The GPUs the config says, whatever this machine has: the plan of the target machine.
    device = cfg.sglang.device if cfg.sglang.device != "auto" else None
    device = device or ("cuda" if gpus_per_node else None)
    specs = server_specs(cfg, cfg.actor.path, rp.log_dir, pick_port=lambda: 0, device=device)
    for spec in specs:
        argv = [a if a != "0" or prev != "--port" else "<port>" for prev, a in _pairs(spec)]
        cmd = shlex.join(argv).replace("'<port>'", "<port>") + "  (started by rank 0)"
        gpus = spec.gpu_ids if gpus_per_node else ()
        servers.append(Process("sglang", 0, cmd, gpus, "127.0.0.1:<free port picked at launch>"))
    notes.append("rank 0 starts the servers, waits for /health and sends them its requests")
    if shared:
        notes.append(
            "server and learner share GPU 0: weight sync by disk, the server keeps "
            f"{cfg.sglang.mem_fraction_static:.0%} of its memory"
        )
    return servers


def _pairs(spec: Any) -> list[tuple[str, str]]:
    """(previous argument, argument) over the server's command line."""
    argv = spec.command()
    return list(zip(["", *argv[:-1]], argv, strict=True))


def plan(
    cfg: TrainConfig, train_args: Sequence[str] = (), env: Mapping[str, str] | None = None
) -> LaunchPlan:
    """The processes ``cfg`` needs, or a ConfigError saying why they do not fit.
    ``train_args``: the arguments of ``grpo-plug train`` the ranks get again."""
    env = os.environ if env is None else env
    rp = resolve_plan(cfg)
    alloc, nodes, ranks = rp.allocation, cfg.cluster.n_nodes, rp.learner_ranks
    if alloc is not None and (alloc.train_pp != 1 or alloc.train_tp != 1):
        raise ConfigError(
            f"allocation_mode: {cfg.allocation_mode!r}: the learner shards with FSDP only "
            "(training layout d<N>p1t1)"
        )
    if ranks % nodes:
        raise ConfigError(f"allocation_mode: {ranks} learner ranks do not split over {nodes} nodes")
    notes: list[str] = []
    servers: list[Process] = []
    if alloc is None:
        notes.append("rollouts run in rank 0's learner process")
    else:
        servers = _servers(cfg, rp, notes)
    learners = _learner(cfg, rp, train_args, env)
    if ranks > 1:
        notes.append("rank 0 trains and talks to the rollout backend; the other ranks follow it")
    if nodes > 1:
        notes.append(
            f"run the same `grpo-plug train` on each of the {nodes} nodes with MASTER_ADDR "
            f"(node 0's address), MASTER_PORT (default {DEFAULT_MASTER_PORT}) and NODE_RANK "
            f"(0..{nodes - 1}) set"
        )
    return LaunchPlan(servers + learners, ranks, notes)


def describe(p: LaunchPlan) -> str:
    """The plan as lines for a terminal."""
    lines = [f"learner ranks: {p.learner_ranks}"]
    for proc in p.processes:
        where = f"GPU {','.join(map(str, proc.gpus))}" if proc.gpus else "CPU"
        addr = f" at {proc.addr}" if proc.addr else ""
        lines.append(f"  node {proc.node}  {proc.role:<7}  {where:<10}{addr}  $ {proc.command}")
    lines += [f"note: {n}" for n in p.notes]
    return "\n".join(lines)


# ----------------------------------------------------------------------- running it


def under_torchrun(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    return "TORCHELASTIC_RUN_ID" in env or "LOCAL_RANK" in env


def needs_torchrun(cfg: TrainConfig, env: Mapping[str, str] | None = None) -> bool:
    """More than one learner rank, and this process is not one of them yet."""
    return resolve_plan(cfg).learner_ranks > 1 and not under_torchrun(env)


def this_node(cfg: TrainConfig, env: Mapping[str, str]) -> int:
    """The index of this machine among ``cluster.n_nodes`` (``NODE_RANK``)."""
    nodes = cfg.cluster.n_nodes
    if nodes == 1:
        return 0
    raw = env.get("NODE_RANK", "")
    if not env.get("MASTER_ADDR") or not raw.isdigit() or int(raw) >= nodes:
        raise ConfigError(
            f"cluster.n_nodes={nodes}: set MASTER_ADDR (node 0's address) and NODE_RANK "
            f"(0..{nodes - 1}, this node's index; now {raw or 'unset'!r}) on every node, "
            "then run the same `grpo-plug train` command there"
        )
    return int(raw)


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Linux: the kernel sends ``sig`` to this process when its parent (torchrun, or
    the supervising `grpo-plug train`) dies, so no rank outlives its launcher."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, sig)  # PR_SET_PDEATHSIG
    if os.getppid() == 1:  # the parent is already gone
        os.kill(os.getpid(), sig)


def end_rank(code: int) -> NoReturn:
    """End a rank under torchrun without the interpreter's teardown. After a clean
    ``destroy_process_group`` torch's C++ side can still call std::terminate while
    static destructors run (gloo on CPU: about 1 end in 10 here, after every output was
    written), and torchrun then reports a finished run as a failed rank."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    logging.shutdown()
    os._exit(code)


def exit_code(e: SystemExit) -> int:
    """The process exit status ``SystemExit`` stands for (a message: printed, 1)."""
    if e.code is None or isinstance(e.code, int):
        return e.code or 0
    print(e.code, file=sys.stderr)
    return 1


def run_processes(token: str) -> list[tuple[int, dict[str, str]]]:
    """(pid, environment) of every live process carrying ``RUN_TOKEN=token``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            raw = (entry / "environ").read_bytes()
        except OSError:
            continue
        env = dict(kv.split("=", 1) for kv in raw.decode(errors="replace").split("\0") if "=" in kv)
        if env.get(RUN_TOKEN) == token:
            found.append((int(entry.name), env))
    return found


class Supervisor:
    """torchrun as a child in its own session, and what signals to the parent do to it."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], say: Callable[[str], None]):
        self.token = uuid.uuid4().hex
        self.say = say
        self.stopping: float | None = None  # monotonic deadline once every rank is told to stop
        self.exit_code: int | None = None  # set when a signal decided how this ends
        self.interrupts = 0
        child_env = {**env, RUN_TOKEN: self.token}
        self.proc = subprocess.Popen(
            list(argv),
            env=child_env,
            start_new_session=True,  # the terminal's Ctrl-C reaches the parent alone
            preexec_fn=die_with_parent if sys.platform == "linux" else None,
        )

    def rank0(self) -> int | None:
        for pid, env in run_processes(self.token):
            if env.get("RANK") == "0" and "LOCAL_RANK" in env:
                return pid
        return None

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT:
            self.interrupts += 1
            pid = self.rank0() if self.interrupts == 1 else None
            if pid is not None:  # rank 0 stops after this step (a recover point) and ends all
                os.kill(pid, signal.SIGINT)
                return
        self.stop(128 + signum)

    def stop(self, exit_code: int) -> None:
        """SIGTERM torchrun: it stops every rank (SIGKILL after its grace)."""
        if self.stopping is None:
            self.say("stopping every learner rank...")
            self.stopping = time.monotonic() + STOP_GRACE_S
            self.exit_code = exit_code
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)

    def wait(self) -> int:
        while True:
            try:
                rc = self.proc.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                if self.stopping is not None and time.monotonic() > self.stopping:
                    self.sweep()
        self.sweep()
        return self.exit_code if self.exit_code is not None else rc

    def sweep(self) -> None:
        """SIGKILL whatever this run started that is still alive (no orphans)."""
        for pid, _ in run_processes(self.token):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    @contextlib.contextmanager
    def signals(self) -> Iterator[None]:
        previous = {s: signal.signal(s, self.on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


def run_learners(
    cfg: TrainConfig,
    train_args: Sequence[str],
    say: Callable[[str], None],
    env: Mapping[str, str] | None = None,
) -> int:
    """Start this node's learner ranks under torchrun and wait for them; the exit code."""
    from grpo_plug import threads

    # The ranks share this node's cores (torchrun would give each one thread).
    env = threads.child_env(threads.plan_for(cfg), os.environ if env is None else env)
    node = this_node(cfg, env)
    the_plan = plan(cfg, train_args, env)
    proc = the_plan.learner(node)
    say(f"starting {the_plan.learner_ranks} learner ranks: $ {proc.command}")
    sup = Supervisor(proc.argv, env, say)
    with sup.signals():
        return sup.wait()
