"""The CPU thread plan: threads per process, the environment children get, the
oversubscription warning."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from grpo_plug import config as cfgmod
from grpo_plug import cpu_load, threads
from grpo_plug.metrics import names as mn
from grpo_plug.rollout.sglang import servers as srv
from grpo_plug.rollout.sglang.specs import server_specs
from grpo_plug.threads import Layout, plan_threads

CORES4 = (0, 1, 2, 3)
NO_ENV: dict[str, str] = {}


def test_a_local_run_gives_learner_and_generator_every_core_in_turn() -> None:
    plan = plan_threads(Layout(ranks=1, in_process=True), cores=CORES4, env=NO_ENV)
    assert (plan.budget, plan.learner, plan.generator, plan.servers) == (4, 4, 4, 0)
    assert plan.passive and not plan.server_cpus and not plan.learner_cpus
    env = plan.learner_env()
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "4"
    assert env["OMP_WAIT_POLICY"] == "PASSIVE" and env["KMP_BLOCKTIME"] == "0"
    assert "GOMP_SPINCOUNT" in env


def test_learner_ranks_split_the_cores_and_rank0_generates_on_all() -> None:
    plan = plan_threads(Layout(ranks=2, in_process=True), cores=CORES4, env=NO_ENV)
    assert (plan.learner, plan.generator) == (2, 4)
    three = plan_threads(Layout(ranks=3, in_process=True), cores=(0, 1), env=NO_ENV)
    assert three.learner == 1  # never 0


def test_sglang_servers_side_by_side_are_pinned_to_their_own_cores() -> None:
    lay = Layout(ranks=1, in_process=False, servers=2)
    plan = plan_threads(lay, cores=CORES4, env=NO_ENV)
    assert (plan.learner, plan.generator, plan.server) == (4, 0, 2)
    assert plan.server_cpus == ((0, 1), (2, 3))
    assert plan.server_env(1)["OMP_NUM_THREADS"] == "2"
    one = plan_threads(Layout(ranks=1, in_process=False, servers=1), cores=CORES4, env=NO_ENV)
    assert one.server == 4 and one.server_cpus == ()  # alone: every core, in turn


def test_budget_from_config_or_capped_by_omp_num_threads() -> None:
    lay = Layout(ranks=1, in_process=True)
    plan = plan_threads(lay, cpu_threads=1, cores=tuple(range(8)), env={"OMP_NUM_THREADS": "6"})
    assert (plan.budget, plan.learner, plan.generator) == (1, 1, 1)
    assert "cluster.cpu_threads=1" in plan.source
    capped = plan_threads(lay, cores=tuple(range(8)), env={"OMP_NUM_THREADS": "3"})
    assert (capped.budget, capped.learner) == (8, 3) and "OMP_NUM_THREADS=3" in capped.source
    many = plan_threads(lay, cpu_threads=16, cores=CORES4, env=NO_ENV)
    assert many.learner == 16 and any("contend" in n for n in many.notes)


def test_overlapped_generation_splits_the_cores_between_the_sides() -> None:
    lay = Layout(ranks=1, in_process=False, servers=1)
    plan = plan_threads(lay, cores=CORES4, env=NO_ENV, overlap=True)
    assert plan.server_cpus == ((0, 1),) and plan.learner_cpus == (2, 3)
    assert (plan.server, plan.learner) == (2, 2)
    inproc = plan_threads(Layout(ranks=1), cores=CORES4, env=NO_ENV, overlap=True)
    assert (inproc.generator, inproc.learner) == (2, 2)
    assert inproc.learner_cpus == ()  # one process: a pin would hold the generator too


def test_gpu_learners_keep_spinning_openmp() -> None:
    plan = plan_threads(Layout(ranks=4, gpu=True), cores=tuple(range(32)), env=NO_ENV)
    assert plan.learner == 8 and not plan.passive
    assert "OMP_WAIT_POLICY" not in plan.learner_env()
    assert threads.child_env(plan, {"PATH": "/bin"}) == {"PATH": "/bin"}  # torchrun decides


def test_layout_follows_the_allocation() -> None:
    def lay(*over: str) -> Layout:
        return threads.layout(cfgmod.load(preset="cpu", overrides=list(over)))

    assert lay() == Layout(ranks=1, in_process=True, servers=0)
    assert lay("allocation_mode=d2p1t1").ranks == 2
    sg = lay("rollout.backend=sglang", "allocation_mode=sglang:d2p1t2+d1p1t1")
    assert (sg.servers, sg.in_process) == (4, False)
    assert lay("rollout.backend=sglang", "rollout.server_addrs=[h:1]").servers == 0
    gpu = lay(
        "rollout.backend=sglang",
        "allocation_mode=sglang:d1p1t1+d1p1t1",
        "cluster.n_gpus_per_node=2",
    )
    assert gpu.gpu and gpu.servers == 0  # GPU servers use no CPU threads worth planning


def test_a_child_inherits_the_plan_only_for_the_same_run(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = cfgmod.load(preset="cpu", overrides=["cluster.cpu_threads=1"])
    plan = threads.plan_for(cfg)
    assert threads.ThreadPlan.from_json(plan.to_json()) == plan
    monkeypatch.setenv(threads.PLAN_ENV, plan.to_json())
    assert threads.plan_for(cfg) == plan
    other = cfgmod.load(preset="cpu", overrides=["allocation_mode=d2p1t1"])
    assert threads.plan_for(other).ranks == 2  # a stale plan from another run is ignored
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    with threads.exported(plan):
        assert os.environ["OMP_NUM_THREADS"] == "1"
        assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    assert os.environ["OMP_NUM_THREADS"] == "7" and "OMP_WAIT_POLICY" not in os.environ


def test_torchrun_ranks_get_the_plan_and_keep_a_users_wait_policy() -> None:
    plan = plan_threads(Layout(ranks=2), cores=CORES4, env=NO_ENV)
    env = threads.child_env(plan, {"PATH": "/bin", "OMP_WAIT_POLICY": "ACTIVE"})
    assert env["OMP_NUM_THREADS"] == "4"  # the pool rank 0 also generates with
    assert env["OMP_WAIT_POLICY"] == "ACTIVE" and env["PATH"] == "/bin"
    assert threads.ThreadPlan.from_json(env[threads.PLAN_ENV]) == plan


def test_dry_run_prints_the_plan() -> None:
    from typer.testing import CliRunner

    from grpo_plug.cli import app

    args = ["train", "--dry-run", "--preset", "cpu", "cluster.cpu_threads=3", "--no-tui"]
    res = CliRunner().invoke(
        app, [*args, "rollout.backend=sglang", "allocation_mode=sglang:d3p1t1+d1p1t1"]
    )
    assert res.exit_code == 0, res.output
    assert "CPU threads: 3 (cluster.cpu_threads=3)" in res.output
    assert "learner     1 rank(s) x 3 thread(s)" in res.output
    assert res.output.count("1 thread(s), pinned to CPUs") == (
        3 if len(threads.affinity()) >= 3 else 0
    )
    assert "OMP_WAIT_POLICY=PASSIVE" in res.output
    assert "sglang 2    1 thread(s)" in res.output  # three servers share three threads


# ----------------------------------------------------------------------- children

FAKE_SERVER = """
import json, os, sys
model = sys.argv[sys.argv.index("--model-path") + 1]
keys = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT",
        "KMP_BLOCKTIME", "SGLANG_CPU_OMP_THREADS_BIND", "SGLANG_USE_CPU_ENGINE")
seen = {k: os.environ.get(k) for k in keys}
seen["cpus"] = sorted(os.sched_getaffinity(0))
with open(os.path.join(model, "seen.json"), "w") as f:
    json.dump(seen, f)
"""


def test_a_launched_cpu_server_gets_the_plans_environment_and_pin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stand-in `sglang.launch_server` records what the real one would start with.
    pkg = tmp_path / "fake" / "sglang"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "launch_server.py").write_text(FAKE_SERVER)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "fake"))
    monkeypatch.delenv(threads.PLAN_ENV, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cores = threads.affinity()
    n = min(2, len(cores))
    cfg = cfgmod.load(
        preset="cpu",
        overrides=[
            "rollout.backend=sglang",
            f"allocation_mode=sglang:d{n}p1t1+d1p1t1",
            "sglang.device=cpu",
            f"sglang.python={sys.executable}",
        ],
    )
    plan = threads.plan_for(cfg)
    specs = server_specs(cfg, str(tmp_path), tmp_path / "logs")
    models = []
    for i, spec in enumerate(specs):
        model = tmp_path / f"m{i}"
        model.mkdir()
        models.append(model)
        specs[i] = srv.ServerSpec(
            spec.python,
            str(model),
            spec.port,
            spec.log_path,
            "cpu",
            args=spec.args,
            thread_env=spec.thread_env,
            cpus=spec.cpus,
        )
    started = [srv.launch(s) for s in specs]
    try:
        for s in started:
            s.proc.wait(timeout=60)
    finally:
        srv.stop_all(started)
    for i, model in enumerate(models):
        seen = json.loads((model / "seen.json").read_text())
        assert seen["OMP_NUM_THREADS"] == seen["MKL_NUM_THREADS"] == str(plan.server)
        assert seen["OMP_WAIT_POLICY"] == "PASSIVE" and seen["KMP_BLOCKTIME"] == "0"
        assert seen["SGLANG_USE_CPU_ENGINE"] == "1"
        assert seen["cpus"] == list(plan.server_pin(i) or cores)
        assert seen["SGLANG_CPU_OMP_THREADS_BIND"] is None  # see ThreadPlan.server_env
        if n == 2:  # two servers side by side: one core each, one thread each
            assert seen["cpus"] == [cores[i]] and plan.server == 1


# ----------------------------------------------------------------------- busy cores

SPIN = "import time\nend = time.time() + 60\nwhile time.time() < end: pass\n"


@pytest.fixture()
def stranger() -> Iterator[int]:
    """A process spinning on our cores that is not our descendant (its parent exits
    at once), like another user's training run."""
    out = subprocess.run(
        ["sh", "-c", f'{sys.executable} -c "{SPIN}" >/dev/null 2>&1 & echo $!'],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(out.stdout.strip())
    try:
        yield pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_oversubscription_warning_names_the_busy_process(stranger: int) -> None:
    own = subprocess.Popen([sys.executable, "-c", SPIN])  # the run's own: not counted
    try:
        time.sleep(0.3)
        busy = cpu_load.busy_elsewhere(seconds=1.5)
    finally:
        own.kill()
        own.wait()
    pids = [pid for pid, _, _ in busy.top]
    assert stranger in pids and own.pid not in pids
    mine = next(c for pid, _, c in busy.top if pid == stranger)
    assert busy.cores_busy >= mine  # other agents may add to it
    warning = busy.warning(threshold=mine)
    assert warning is not None and f"kept {busy.cores_busy:.1f} of this run's" in warning


def test_busy_threshold() -> None:
    quiet = cpu_load.Busy(0.2, 2, 1.0, ((7, "x", 0.2),))
    assert quiet.warning() is None
    loud = cpu_load.Busy(1.6, 2, 1.0, ((7, "python", 0.98), (9, "chrome", 0.62)))
    text = loud.warning()
    assert text is not None and "kept 1.6 of this run's 2 cores busy" in text
    assert "python (pid 7) 98%" in text


def test_doctor_reports_the_load(stranger: int) -> None:
    from grpo_plug.cli.doctor import cpu_load_check

    name, status, detail, _ = cpu_load_check(seconds=1.5)
    assert name == "cpu load"
    # Other agents may load the machine too; the spinner alone is over the threshold.
    assert status == "warn" and "other processes kept" in detail, detail


def test_training_starts_with_the_plan_and_the_warning(stranger: int, tmp_path: Path) -> None:
    from grpo_plug.testing.harness import run_training_step

    res = run_training_step(workdir=tmp_path, overrides=("cluster.adapt_threads=true",))
    said = "\n".join(res.messages)
    assert "CPU threads learner 1x" in said
    assert "warning: other processes kept" in said, said
    events = (res.log_dir / "events.jsonl").read_text()
    assert '"kind": "warning"' in events and "other processes kept" in events
    assert res.metrics[mn.CPU_OTHERS_BUSY] > 0 and res.metrics[mn.CPU_THREADS] >= 1


def test_adaptive_threads_leave_the_cores_others_use() -> None:
    plan = plan_threads(Layout(ranks=1), cores=(0, 1), env=NO_ENV)
    adaptive = cpu_load.Adaptive(plan)
    assert [adaptive.fit(2, busy) for busy in (0.0, 0.4, 0.6, 1.0, 1.9, 2.0)] == [2, 2, 1, 1, 1, 1]
    assert adaptive.fit(1, 0.0) == 1  # never above the plan


def test_adaptive_threads_follow_a_busy_stranger(stranger: int) -> None:
    import torch

    class Backend:
        threads = 0

    plan = threads.plan_for(cfgmod.load(preset="cpu"))
    adaptive = cpu_load.Adaptive(plan)
    before = torch.get_num_threads()
    try:
        time.sleep(1.0)
        got = adaptive.step(Backend)
        assert got[mn.CPU_OTHERS_BUSY] >= 0.05  # the stranger, at least
        want = adaptive.fit(plan.learner, got[mn.CPU_OTHERS_BUSY])
        assert got[mn.CPU_THREADS] == torch.get_num_threads() == want
        assert Backend.threads == adaptive.fit(plan.generator, got[mn.CPU_OTHERS_BUSY])
    finally:
        torch.set_num_threads(before)
