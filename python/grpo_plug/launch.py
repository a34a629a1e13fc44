"""What a run starts, from ``allocation_mode`` and ``cluster.*``: learner ranks and servers.

``sglang.d{dp}p{pp}t{tp}+d{dp}p{pp}t{tp}`` gives the generation layout (SGLang server
replicas x tensor parallel) and the training layout (learner data-parallel ranks,
sharded with FSDP2). On each node the servers take the first GPUs and the learner
ranks the next ones; on a single GPU both share it (the seed's single-GPU set-up:
disk weight sync, ``sglang.mem_fraction_static`` leaves room for the learner).
``grpo-plug train --dry-run`` prints this plan without starting anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from grpo_plug.config import ConfigError, TrainConfig, parse_allocation

if TYPE_CHECKING:
    from grpo_plug.learner.dist import DistInfo


@dataclass(frozen=True)
class Process:
    role: str  # "learner" or "sglang"
    node: int
    command: str
    gpus: tuple[int, ...] = ()  # CUDA_VISIBLE_DEVICES; () = the CPU
    addr: str | None = None  # host:port a server listens on


@dataclass(frozen=True)
class LaunchPlan:
    processes: list[Process]
    learner_ranks: int
    notes: list[str] = field(default_factory=list)


def _shared_gpu(cfg: TrainConfig) -> bool:
    """One GPU in all: server and learner share it (the seed's single-GPU set-up)."""
    alloc = parse_allocation(cfg.allocation_mode)
    one = cfg.cluster.n_gpus_per_node == 1 and cfg.cluster.n_nodes == 1
    return alloc is not None and one and alloc.gen_gpus == 1 and alloc.train_dp == 1


def learner_gpu_offset(cfg: TrainConfig, node: int) -> int:
    """The first GPU of this node's learner ranks: after the servers' GPUs on node 0
    (servers run there only), 0 elsewhere, when sharing one GPU or when attaching."""
    alloc = parse_allocation(cfg.allocation_mode)
    if alloc is None or node != 0 or cfg.rollout.server_addrs or _shared_gpu(cfg):
        return 0
    return alloc.gen_gpus if cfg.cluster.n_gpus_per_node else 0


def _learner(cfg: TrainConfig, ranks: int, args: str) -> list[Process]:
    """One learner process per node: torchrun when there is more than one rank."""
    gpus_per_node = cfg.cluster.n_gpus_per_node
    nodes = cfg.cluster.n_nodes
    per_node = max(1, ranks // nodes)
    gpus: tuple[int, ...]
    if ranks == 1:
        gpus = (learner_gpu_offset(cfg, 0),) if gpus_per_node else ()
        return [Process("learner", 0, f"grpo-plug train {args}".strip(), gpus)]
    out = []
    for node in range(nodes):
        rdzv = (
            "--standalone"
            if nodes == 1
            else f"--nnodes {nodes} --node-rank {node} --rdzv-endpoint MASTER_HOST:29500"
        )
        first = learner_gpu_offset(cfg, node)
        gpus = tuple(range(first, first + per_node)) if gpus_per_node else ()
        cmd = f"torchrun {rdzv} --nproc-per-node {per_node} -m grpo_plug train {args}"
        out.append(Process("learner", node, cmd.strip(), gpus))
    return out


def plan(cfg: TrainConfig, args: str = "") -> LaunchPlan:
    """The processes ``cfg`` needs, or a ConfigError saying why they do not fit."""
    alloc = parse_allocation(cfg.allocation_mode)
    gpus_per_node, nodes = cfg.cluster.n_gpus_per_node, cfg.cluster.n_nodes
    if alloc is None:  # local: one process, generation colocated with the learner
        return LaunchPlan(_learner(cfg, 1, args), 1, ["rollouts run in the learner process"])
    ranks = alloc.train_dp
    if alloc.train_pp != 1 or alloc.train_tp != 1:
        raise ConfigError(
            f"allocation_mode: {cfg.allocation_mode!r}: the learner shards with FSDP only "
            "(training layout d<N>p1t1)"
        )
    if ranks % nodes:
        raise ConfigError(f"allocation_mode: {ranks} learner ranks do not split over {nodes} nodes")
    notes: list[str] = []
    servers: list[Process] = []
    gen_gpus = alloc.gen_gpus
    if cfg.rollout.server_addrs:
        notes.append("servers: attaching to rollout.server_addrs, none launched")
    else:
        shared = _shared_gpu(cfg)
        if gpus_per_node and not shared and gen_gpus + ranks // nodes > gpus_per_node:
            raise ConfigError(
                f"allocation_mode: {cfg.allocation_mode!r} needs {gen_gpus} generation + "
                f"{ranks // nodes} learner GPUs on node 0 but cluster.n_gpus_per_node is "
                f"{gpus_per_node}"
            )
        tp = alloc.gen_tp
        for i in range(alloc.gen_dp):
            gpus = tuple(range(i * tp, (i + 1) * tp)) if gpus_per_node else ()
            servers.append(
                Process(
                    "sglang",
                    0,
                    f"python -m sglang.launch_server --tp-size {tp} "
                    f"--mem-fraction-static {cfg.sglang.mem_fraction_static}",
                    gpus,
                    "127.0.0.1:<free port picked at launch>",
                )
            )
        if shared:
            notes.append(
                "server and learner share GPU 0: weight sync by disk, the server keeps "
                f"{cfg.sglang.mem_fraction_static:.0%} of its memory"
            )
    learners = _learner(cfg, ranks, args)
    notes.append("rank 0 trains and talks to the servers; the other ranks follow it")
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


def learner_dist(cfg: TrainConfig) -> DistInfo:
    """This process's rank and device: torchrun's variables, GPUs after the servers'."""
    from grpo_plug.learner import dist

    return dist.from_env(gpu_offset=learner_gpu_offset(cfg, dist.node_rank()))
