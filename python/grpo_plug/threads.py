"""How many CPU threads each process of a run may use: one frozen plan per run.

Every torch process sizes its OpenMP pool to all the cores it sees, and an idle
OpenMP worker spins (libgomp: ~300,000 iterations) before it sleeps. Two such
processes on the same cores do not each run at half speed: the spinning workers of
one steal the time slices the other's working threads need (measured: 20x slower).

So the process that starts a run decides, from ``cluster.cpu_threads`` or this
process's affinity mask, and from the allocation:
- how many threads the learner ranks, an in-process generator and each local SGLang
  CPU server get (torch intra-op threads; ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` for
  the processes it starts);
- whether OpenMP waits passively (``OMP_WAIT_POLICY=PASSIVE``), where processes take
  turns on the same cores;
- which cores a process is pinned to, where processes run side by side.

Synchronous steps (``rollout.max_head_offpolicyness=0``): generation and learning take
turns, so each side gets every core while it runs. Asynchronous ones (``>= 1``) plan
with ``overlap=True``: the cores are split between them instead. An in-process
producer is a thread of the learner's process: torch's thread count is per calling
thread once that thread has run a parallel op (OpenMP's nthreads ICV; MKL's local
setting), so each side sets its own, and OpenMP gives each its own pool. The plan
travels to child processes in ``GRPO_PLUG_THREAD_PLAN``, so every rank applies the same
one.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from grpo_plug.config import TrainConfig

PLAN_ENV = "GRPO_PLUG_THREAD_PLAN"
# Spins before an idle OpenMP worker sleeps when passive (libgomp: ~100 spins per us):
# back-to-back ops keep their workers, and a core is yielded within ~10 us.
PASSIVE_SPINCOUNT = 1000


@dataclass(frozen=True)
class ThreadPlan:
    """Threads per process of one run on one node (all counts >= 1 where used)."""

    cores: tuple[int, ...]  # CPUs this process may run on (its affinity mask)
    budget: int  # threads in all
    source: str  # where the budget came from, for people
    ranks: int  # learner ranks on this node
    learner: int  # torch intra-op threads per learner rank
    generator: int  # in-process generation in rank 0's process (0: none)
    servers: int  # local SGLang CPU server processes (tensor-parallel workers)
    server: int  # threads per server process (0: none)
    passive: bool  # OpenMP waits passively: processes take turns on the cores
    overlap: bool = False  # generation and learning run at once (split cores)
    server_cpus: tuple[tuple[int, ...], ...] = ()  # pin of each server (() = none)
    learner_cpus: tuple[int, ...] = ()  # pin of every learner rank (() = none)
    notes: tuple[str, ...] = field(default=())
    key: str = ""  # the layout and budget it was made for (an inherited plan must match)
    gpu: bool = False  # learners on GPUs: their processes' environment is left alone

    # ------------------------------------------------------------ environments

    def omp_env(self, threads: int) -> dict[str, str]:
        """OpenMP/MKL settings for a process of ``threads`` threads."""
        env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        if self.passive:
            env["OMP_WAIT_POLICY"] = "PASSIVE"  # libgomp and Intel's runtime
            env["GOMP_SPINCOUNT"] = str(PASSIVE_SPINCOUNT)  # libgomp: spin this long first
            env["KMP_BLOCKTIME"] = "0"  # Intel's runtime (MKL with iomp): sleep at once
        return env

    def learner_env(self) -> dict[str, str]:
        """What a learner rank's process starts with (torchrun ranks, this process)."""
        return {**self.omp_env(max(self.learner, self.generator)), PLAN_ENV: self.to_json()}

    def server_env(self, index: int) -> dict[str, str]:
        """What local SGLang CPU server ``index`` starts with. Not SGLang's own
        SGLANG_CPU_OMP_THREADS_BIND: it binds threads only through sgl_kernel's CPU ops
        (not on PyPI), and with it set SGLang stops sizing its CPU memory (0.5.23); the
        launcher pins the process instead (``server_pin``)."""
        return self.omp_env(self.server)

    def server_pin(self, index: int) -> tuple[int, ...]:
        return self.server_cpus[index] if self.server_cpus else ()

    # ------------------------------------------------------------ serialised

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ThreadPlan:
        raw = json.loads(text)
        raw["cores"] = tuple(raw["cores"])
        raw["server_cpus"] = tuple(tuple(c) for c in raw["server_cpus"])
        raw["learner_cpus"] = tuple(raw["learner_cpus"])
        raw["notes"] = tuple(raw["notes"])
        return cls(**raw)

    # ------------------------------------------------------------ for people

    def summary(self) -> str:
        """One line for the dashboard header."""
        parts = [f"learner {self.ranks}x{self.learner}"]
        if self.generator:
            parts.append(f"gen {self.generator}")
        if self.servers:
            parts.append(f"sglang {self.servers}x{self.server}")
        wait = "passive" if self.passive else "spinning"
        return f"threads {', '.join(parts)} (budget {self.budget}, {wait} wait)"

    def describe(self) -> str:
        """The plan as lines for a terminal (``--dry-run``)."""
        how = "split between them" if self.overlap else "each side takes them in turn"
        lines = [
            f"CPU threads: {self.budget} ({self.source}); generation and learning: {how}",
            f"  learner     {self.ranks} rank(s) x {self.learner} thread(s)"
            + (f", pinned to CPUs {_ranges(self.learner_cpus)}" if self.learner_cpus else ""),
        ]
        if self.generator:
            lines.append(f"  generation  in rank 0's process, {self.generator} thread(s)")
        for i in range(self.servers):
            pin = self.server_pin(i)
            lines.append(
                f"  sglang {i:<4} {self.server} thread(s)"
                + (f", pinned to CPUs {_ranges(pin)}" if pin else "")
            )
        if self.passive:
            lines.append(
                "  OpenMP      waits passively (OMP_WAIT_POLICY=PASSIVE, "
                f"GOMP_SPINCOUNT={PASSIVE_SPINCOUNT}, KMP_BLOCKTIME=0): idle workers "
                "yield the cores"
            )
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _ranges(cpus: Sequence[int]) -> str:
    """0,1,2,5 -> '0-2,5' (the kernel's cpu-list format)."""
    runs: list[list[int]] = []
    for c in sorted(cpus):
        if runs and c == runs[-1][1] + 1:
            runs[-1][1] = c
        else:
            runs.append([c, c])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def _slices(cores: Sequence[int], n: int) -> tuple[tuple[int, ...], ...]:
    """``cores`` cut into ``n`` contiguous, disjoint, near-equal slices (n <= len)."""
    k, extra = divmod(len(cores), n)
    out, start = [], 0
    for i in range(n):
        end = start + k + (1 if i < extra else 0)
        out.append(tuple(cores[start:end]))
        start = end
    return tuple(out)


@dataclass(frozen=True)
class Layout:
    """The processes of one node that use CPU threads."""

    ranks: int = 1  # learner ranks
    in_process: bool = True  # rank 0 generates (hf backend)
    servers: int = 0  # local SGLang CPU server processes
    gpu: bool = False  # the learner computes on GPUs (its threads only feed them)


def layout(cfg: TrainConfig, *, gpu: bool | None = None, node: int = 0) -> Layout:
    """The processes ``cfg`` runs on node ``node``. ``gpu``: whether the learner and
    servers use GPUs (None: ``cluster.n_gpus_per_node > 0``; this needs no torch)."""
    from grpo_plug.plan import allocation_of

    on_gpu = cfg.cluster.n_gpus_per_node > 0 if gpu is None else gpu
    alloc, all_ranks = allocation_of(cfg)
    ranks = max(1, all_ranks // cfg.cluster.n_nodes)
    sglang = cfg.rollout.backend == "sglang"
    servers = 0
    cpu_servers = cfg.sglang.device == "cpu" or (cfg.sglang.device == "auto" and not on_gpu)
    if sglang and not cfg.rollout.server_addrs and node == 0 and cpu_servers:
        servers = alloc.gen_dp * alloc.gen_tp if alloc else 1
    return Layout(ranks, in_process=not sglang, servers=servers, gpu=on_gpu)


def affinity() -> tuple[int, ...]:
    """The CPUs this process may run on (taskset, cgroups' cpusets), not the machine's."""
    if hasattr(os, "sched_getaffinity"):
        return tuple(sorted(os.sched_getaffinity(0)))
    return tuple(range(os.cpu_count() or 1))


def plan_threads(
    lay: Layout,
    *,
    cpu_threads: int | None = None,
    cores: Sequence[int] | None = None,
    env: Mapping[str, str] | None = None,
    overlap: bool = False,
) -> ThreadPlan:
    """The thread plan of a node running ``lay`` (pure: cores and env are inputs).

    ``cpu_threads`` (``cluster.cpu_threads``) is the budget; without it, the cores of
    ``cores`` (default: this process's affinity), each process capped by a
    ``OMP_NUM_THREADS`` the user set. ``overlap``: generation runs while the learner
    trains, so the budget is split between them and each side pinned to its cores.
    """
    cores = tuple(cores) if cores is not None else affinity()
    budget, source, cap = _budget(cpu_threads, cores, os.environ if env is None else env)
    notes: list[str] = []
    if budget > len(cores):
        notes.append(f"{budget} threads on {len(cores)} cores: processes will contend")

    def fit(n: int) -> int:
        return max(1, min(n, cap) if cap else n)

    servers, ranks = lay.servers, lay.ranks
    gen_share, learn_share, server_cores, learner_cpus = _split(lay, budget, cores, overlap)
    learner = fit(learn_share // ranks)
    generator = fit(gen_share) if lay.in_process else 0
    server = fit(gen_share // servers) if servers else 0
    server_cpus: tuple[tuple[int, ...], ...] = ()
    if servers and (servers > 1 or overlap) and len(server_cores) >= servers:
        server_cpus = _slices(server_cores, servers)  # servers generate side by side
        server = min(server, min(len(c) for c in server_cpus))  # no more than their cores
    if learner_cpus:
        learner = max(1, min(learner, len(learner_cpus) // ranks))
    # Processes that take turns on the same cores wait passively; so does a lone CPU
    # process, which then yields to whatever else runs on the machine.
    passive = not lay.gpu
    if lay.gpu:
        notes.append("learner on GPU: its threads feed the GPU; OpenMP left to spin")
    return ThreadPlan(
        cores=cores,
        budget=budget,
        source=source,
        ranks=ranks,
        learner=learner,
        generator=generator,
        servers=servers,
        server=server,
        passive=passive,
        overlap=overlap,
        server_cpus=server_cpus,
        learner_cpus=learner_cpus,
        notes=tuple(notes),
        key=_key(lay, cpu_threads, overlap),
        gpu=lay.gpu,
    )


def _split(
    lay: Layout, budget: int, cores: tuple[int, ...], overlap: bool
) -> tuple[int, int, tuple[int, ...], tuple[int, ...]]:
    """(generation's threads, the learner's, the servers' cores, the learner's pin).
    Turns (no ``overlap``): each side gets the whole budget and every core. Overlap:
    half each, and local servers and the learner pinned to their own cores."""
    if not overlap or not (lay.servers or lay.in_process):
        return budget, budget, cores, ()
    gen_share = max(1, budget // 2)
    learn_share = max(1, budget - gen_share)
    if len(cores) < 2 or not lay.servers:  # in-process generation shares the learner's pin
        return gen_share, learn_share, cores, ()
    cut = max(1, len(cores) * gen_share // budget)
    return gen_share, learn_share, cores[:cut], cores[cut:]


def _budget(
    cpu_threads: int | None, cores: Sequence[int], env: Mapping[str, str]
) -> tuple[int, str, int | None]:
    """(threads in all, where that came from, a per-process cap the user set)."""
    if cpu_threads is not None:
        return cpu_threads, f"cluster.cpu_threads={cpu_threads}", None
    source = f"{len(cores)} cores this process may use ({_ranges(cores)})"
    raw = env.get("OMP_NUM_THREADS", "")
    if raw.isdigit() and int(raw) > 0:
        return len(cores), f"{source}, each process capped by OMP_NUM_THREADS={raw}", int(raw)
    return len(cores), source, None


def plan_for(cfg: TrainConfig, *, gpu: bool | None = None) -> ThreadPlan:
    """This run's plan: the one a parent process handed down, else a new one."""
    node = int(os.environ.get("NODE_RANK", "0") or 0) if cfg.cluster.n_nodes > 1 else 0
    lay = layout(cfg, gpu=gpu, node=node)
    overlap = cfg.rollout.max_head_offpolicyness > 0  # generation beside learning
    inherited = os.environ.get(PLAN_ENV)
    if inherited:
        with contextlib.suppress(ValueError, TypeError, KeyError):
            plan = ThreadPlan.from_json(inherited)
            if plan.key == _key(lay, cfg.cluster.cpu_threads, overlap):
                return plan
    return plan_threads(lay, cpu_threads=cfg.cluster.cpu_threads, overlap=overlap)


def _key(lay: Layout, cpu_threads: int | None, overlap: bool = False) -> str:
    return f"{lay}|{cpu_threads}" + ("|overlap" if overlap else "")


def child_env(plan: ThreadPlan, base: Mapping[str, str]) -> dict[str, str]:
    """``base`` with a learner process's settings from ``plan``; a wait policy the
    user set in ``base`` is kept. GPU runs: ``base`` as it is."""
    if plan.gpu:  # torchrun's and SGLang's own defaults stand
        return dict(base)
    keep = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
    return {
        **base,
        **{k: v for k, v in plan.learner_env().items() if k not in keep or k not in base},
    }


@contextlib.contextmanager
def exported(plan: ThreadPlan) -> Iterator[None]:
    """This process's environment set from ``plan`` inside the block, as it was after.
    Enter it before torch is imported (OpenMP reads its wait policy once, when the
    library loads); the processes started inside inherit it. A wait policy the user
    set is kept."""
    before = {k: os.environ.get(k) for k in plan.learner_env()}
    os.environ.update(child_env(plan, dict(os.environ)))
    try:
        yield
    finally:
        for key, old in before.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def apply_learner(plan: ThreadPlan) -> None:
    """In a learner rank: torch's thread counts and the pin. Before heavy work: the
    OpenMP pool is created on first use and inherits the pin then."""
    import torch

    if plan.learner_cpus and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, plan.learner_cpus)
    torch.set_num_threads(plan.learner)
    # The learner runs no inter-op parallel work; fewer idle threads to schedule.
    with contextlib.suppress(RuntimeError):  # refused once inter-op work has started
        torch.set_num_interop_threads(1)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch intra-op threads of the calling thread set to ``n`` inside the block."""
    import torch

    before = torch.get_num_threads()
    if n <= 0 or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
