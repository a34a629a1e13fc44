"""What a CPU SGLang server burns while the learner trains: CPU% of its processes.

    GRPO_PLUG_SGLANG_PYTHON=.venv-sglang/bin/python \
        python bench/bench_sglang_idle.py [--window 20] [--variants default,threads2,...]

For each launch variant (threads, OpenMP wait policy as the thread plan sets it,
--sleep-on-idle) one real server is started by the project's launcher on SmolLM2-135M
(the cpu preset's server settings), then:
  - ``burst``: a rollout-sized batch (8 prompts x 8 samples x 64 tokens), timed;
  - ``after``: CPU% in the ``--window`` seconds right after the burst (what the learner's
    train step competes with: OpenMP workers spinning, a busy-polling scheduler);
  - ``health``: the same window while ``/health_generate`` is polled every
    ``sglang.health_interval`` seconds, as the trainer's monitor does.
CPU% sums utime+stime of every process in the server's session over the window
(100% = one core); the busiest threads are named. Start-up takes 1-2 minutes a variant.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

from grpo_plug import config as cfgmod  # noqa: E402
from grpo_plug import threads  # noqa: E402
from grpo_plug.models import resolve_model_path  # noqa: E402
from grpo_plug.rollout.sglang import servers as srv  # noqa: E402
from grpo_plug.rollout.sglang.specs import server_specs  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Variant:
    threads: int
    passive: bool
    sleep_on_idle: bool = True

    def env(self) -> dict[str, str]:
        """What the launcher sets: the thread plan's server environment."""
        lay = threads.Layout(ranks=1, in_process=False, servers=1, gpu=not self.passive)
        plan = threads.plan_threads(lay, cpu_threads=self.threads)
        return plan.server_env(0)


VARIANTS = {
    "old": Variant(1, passive=False),  # what the launcher did before the thread plan
    "threads2": Variant(2, passive=False),  # two threads, OpenMP's spinning default
    "plan": Variant(2, passive=True),  # what the plan gives one server on 2 cores
    "plan1": Variant(1, passive=True),
    "no_sleep_on_idle": Variant(1, passive=False, sleep_on_idle=False),
}


def session_pids(sid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid:  # field 6 (session) after the comm
                out.append(int(entry.name))
    return out


def thread_ticks(pids: list[int]) -> dict[str, float]:
    """CPU seconds per "pid/thread-name" of ``pids``."""
    out: dict[str, float] = {}
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                raw = (task / "stat").read_text()
            except OSError:
                continue
            name = raw[raw.index("(") + 1 : raw.rindex(")")]
            fields = raw.rsplit(")", 1)[1].split()
            key = f"{pid}/{name}"
            out[key] = out.get(key, 0.0) + (int(fields[11]) + int(fields[12])) / TICK
    return out


def window(pid: int, seconds: float) -> tuple[float, list[tuple[str, float]]]:
    """CPU% of the server's session over ``seconds``, and its busiest threads."""
    pids = session_pids(pid)
    before, t0 = thread_ticks(pids), time.monotonic()
    time.sleep(seconds)
    after, wall = thread_ticks(pids), time.monotonic() - t0
    total = (sum(after.values()) - sum(before.values())) / wall * 100
    busy = sorted(
        ((k, (v - before.get(k, 0.0)) / wall * 100) for k, v in after.items()),
        key=lambda kv: -kv[1],
    )
    return total, busy[:3]


def burst(addr: str, timeout: float) -> float:
    """A rollout-sized batch: 8 prompts x 8 samples x 64 new tokens; seconds (inf when
    it took longer than ``timeout``: the batch is aborted then)."""
    body = {
        "input_ids": [[1, 520 + i, 33, 44, 55, 66, 77, 88] for i in range(8)],
        "sampling_params": {"max_new_tokens": 64, "temperature": 1.0, "n": 8, "ignore_eos": True},
    }
    t0 = time.perf_counter()
    try:
        r = httpx.post(f"http://{addr}/generate", json=body, timeout=timeout)
    except httpx.TimeoutException:
        httpx.post(f"http://{addr}/abort_request", json={"abort_all": True}, timeout=60)
        return float("inf")
    r.raise_for_status()
    return time.perf_counter() - t0


def poll_health(addr: str, every: float, stop: threading.Event) -> None:
    with httpx.Client(timeout=60) as c:
        while not stop.wait(every):
            c.get(f"http://{addr}/health_generate")


def run_variant(name: str, v: Variant, args: argparse.Namespace, log_dir: Path) -> None:
    cfg = cfgmod.load(
        preset="cpu",
        overrides=["rollout.backend=sglang", f"sglang.python={args.python}"],
    )
    (spec,) = server_specs(cfg, resolve_model_path(cfg.actor.path), log_dir / name)
    flags = tuple(a for a in spec.args if v.sleep_on_idle or a != "--sleep-on-idle")
    spec = dataclasses.replace(spec, args=flags)
    spec = dataclasses.replace(spec, thread_env=tuple(v.env().items()))
    t0 = time.monotonic()
    (server,) = srv.start([spec], 900)
    try:
        up = time.monotonic() - t0
        idle, _ = window(server.pid, args.window)
        secs = burst(spec.addr, args.burst_timeout)  # the first batch also warms up
        if secs != float("inf"):
            secs = burst(spec.addr, args.burst_timeout)
        after, top = window(server.pid, args.window)
        stop = threading.Event()
        poller = threading.Thread(target=poll_health, args=(spec.addr, 5.0, stop))
        poller.start()
        try:
            health, _ = window(server.pid, args.window)
        finally:
            stop.set()
            poller.join()
        busiest = ", ".join(f"{k} {p:.0f}%" for k, p in top)
        print(
            f"| {name} | {v.threads} | {'passive' if v.passive else 'default'} | "
            f"{'yes' if v.sleep_on_idle else 'no'} | {up:.0f} | {secs:.1f} | {64 * 64 / secs:.0f} "
            f"| {idle:.1f} | {after:.1f} | {health:.1f} | {busiest} |",
            flush=True,
        )
    finally:
        srv.stop_all([server])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--python", default=os.environ.get("GRPO_PLUG_SGLANG_PYTHON"))
    p.add_argument("--window", type=float, default=20.0, help="seconds per CPU%% window")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated")
    p.add_argument("--burst-timeout", type=float, default=600.0, help="seconds")
    p.add_argument("--log-dir", type=Path, default=Path("outputs/bench_sglang_idle"))
    args = p.parse_args()
    if not args.python:
        p.error("set --python or GRPO_PLUG_SGLANG_PYTHON to the SGLang venv's interpreter")
    print(
        "| variant | threads | OpenMP wait | --sleep-on-idle | start s | burst s | tok/s "
        "| idle CPU% | CPU% after burst | CPU% with health checks | busiest threads after |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.variants.split(","):
        run_variant(name, VARIANTS[name], args, args.log_dir)


if __name__ == "__main__":
    main()
