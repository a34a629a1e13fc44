"""`grpo-plug train --dry-run`: the processes and devices an allocation would use."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from grpo_plug import config as cfgmod
from grpo_plug import launch
from grpo_plug.cli import app
from grpo_plug.learner import dist
from grpo_plug.plan import resolve as resolve_plan


def plan(*overrides: str, preset: str = "fast") -> launch.LaunchPlan:
    return launch.plan(cfgmod.load(preset=preset, overrides=list(overrides)))


def test_local_cpu_is_one_process_on_the_cpu() -> None:
    p = plan(preset="cpu")
    assert p.learner_ranks == 1
    (proc,) = p.processes
    assert proc.role == "learner" and proc.gpus == () and "torchrun" not in proc.command


def test_single_gpu_shares_it_between_server_and_learner() -> None:
    p = plan()  # the seed's sglang.d1p1t1+d1p1t1 on one GPU
    assert [(x.role, x.gpus) for x in p.processes] == [("sglang", (0,)), ("learner", (0,))]
    assert any("share GPU 0" in n for n in p.notes)


def test_servers_take_the_first_gpus_and_torchrun_the_next() -> None:
    p = plan("allocation_mode=sglang.d2p1t2+d4p1t1", "cluster.n_gpus_per_node=8")
    servers = [x for x in p.processes if x.role == "sglang"]
    (learner,) = [x for x in p.processes if x.role == "learner"]
    assert [s.gpus for s in servers] == [(0, 1), (2, 3)]
    assert learner.gpus == (4, 5, 6, 7)
    assert "-m torch.distributed.run --standalone --nproc-per-node 4" in learner.command
    # The ranks get exactly those devices: local rank r -> cuda:(4 + r).
    cfg = cfgmod.load(preset="fast", overrides=["allocation_mode=sglang.d2p1t2+d4p1t1"])
    assert resolve_plan(cfg).learner_gpu_offset(cfg, 0) == 4
    import torch

    if torch.cuda.device_count() < 5:  # this machine cannot hold that layout: said plainly
        with pytest.raises(ValueError, match="needs GPU 4"):
            dist.from_env({"WORLD_SIZE": "1"}, cuda=True, gpu_offset=4)


def test_two_nodes_rendezvous_and_attached_servers() -> None:
    p = plan(
        "allocation_mode=sglang.d1p1t1+d4p1t1", "cluster.n_gpus_per_node=4", "cluster.n_nodes=2"
    )
    learners = [x for x in p.processes if x.role == "learner"]
    assert [(x.node, x.gpus) for x in learners] == [(0, (1, 2)), (1, (0, 1))]
    assert all("--nnodes 2" in x.command for x in learners)
    p = plan("allocation_mode=sglang.d2p1t1+d2p1t1", "rollout.server_addrs=[10.0.0.1:30000]")
    assert [x.role for x in p.processes] == ["learner"]


def test_allocations_that_do_not_fit_are_refused() -> None:
    with pytest.raises(cfgmod.ConfigError, match="needs 4 generation \\+ 4 learner GPUs"):
        plan("allocation_mode=sglang.d4p1t1+d4p1t1", "cluster.n_gpus_per_node=4")
    with pytest.raises(cfgmod.ConfigError, match="FSDP only"):
        plan("allocation_mode=sglang.d1p1t1+d1p1t2", "cluster.n_gpus_per_node=4")


def test_dry_run_prints_the_plan_and_starts_nothing() -> None:
    args = ["train", "--dry-run", "--preset", "full", "allocation_mode=sglang.d2p1t1+d2p1t1"]
    res = CliRunner().invoke(app, [*args, "cluster.n_gpus_per_node=4"])
    assert res.exit_code == 0, res.output
    assert "learner ranks: 2" in res.output
    assert res.output.count("sglang.launch_server") == 2
    assert "GPU 2,3" in res.output and "torch.distributed.run" in res.output
    assert "run plan:" in res.output and "dtypes: learner bfloat16" in res.output


def test_dry_run_prints_the_server_command_the_backend_launches(tmp_path: Path) -> None:
    """Not a summary of a few flags: every flag of the spec the backend starts."""
    from grpo_plug.rollout.sglang.specs import server_specs

    over = ["allocation_mode=sglang.d1p1t1+d1p1t1", "sglang.max_total_tokens=4096"]
    over += ["sglang.extra_args=[--chunked-prefill-size 512]", "cluster.n_gpus_per_node=2"]
    res = CliRunner().invoke(app, ["train", "--dry-run", "--preset", "fast", *over])
    assert res.exit_code == 0, res.output
    cfg = cfgmod.load(preset="fast", overrides=over)
    (spec,) = server_specs(cfg, cfg.actor.path, tmp_path, pick_port=lambda: 0, device="cuda")
    flags = spec.command()[spec.command().index("--device") :]
    assert " ".join(flags) in res.output
    assert "--max-total-tokens 4096" in res.output and "--chunked-prefill-size 512" in res.output


def test_an_allocation_for_more_ranks_than_started_is_refused() -> None:
    from grpo_plug.errors import SetupError
    from grpo_plug.preflight import check_world_size

    cfg = cfgmod.load(preset="fast", overrides=["allocation_mode=sglang.d1p1t1+d2p1t1"])
    with pytest.raises(SetupError, match=r"trains on 2 learner rank.*has 1.*--nproc-per-node 2"):
        check_world_size(cfg, 1)
    check_world_size(cfg, 2)
    check_world_size(cfgmod.load(preset="cpu"), 2)  # local: any number of ranks


def test_colocated_ranks_run_under_torchrun_started_by_train() -> None:
    """d2p1t1: 2 FSDP learner ranks, generation in rank 0; `train` execs exactly this."""
    p = plan("allocation_mode=d2p1t1", preset="cpu")
    assert p.learner_ranks == 2
    (learner,) = p.processes
    assert list(learner.argv) == [
        *(sys.executable, "-m", "torch.distributed.run", "--standalone"),
        *("--nproc-per-node", "2", "-m", "grpo_plug", "train"),
    ]
    cfg = cfgmod.load(preset="cpu", overrides=["allocation_mode=d2p1t1"])
    assert launch.needs_torchrun(cfg, {})
    assert not launch.needs_torchrun(cfg, {"LOCAL_RANK": "0", "TORCHELASTIC_RUN_ID": "x"})
    assert not launch.needs_torchrun(cfgmod.load(preset="cpu"), {})
    with pytest.raises(cfgmod.ConfigError, match="d<N>p1t1"):
        cfgmod.load(preset="cpu", overrides=["allocation_mode=d2p1t2"])


def test_two_node_rendezvous_comes_from_the_environment() -> None:
    cfg = cfgmod.load(preset="cpu", overrides=["allocation_mode=d4p1t1", "cluster.n_nodes=2"])
    env = {"MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29400", "NODE_RANK": "1"}
    p = launch.plan(cfg, ["--preset", "cpu"], env)
    argv = list(p.learner(1).argv)
    i = argv.index("--nnodes")
    assert argv[i : i + 10] == [
        *("--nnodes", "2", "--node-rank", "1", "--master-addr", "10.0.0.1"),
        *("--master-port", "29400", "--nproc-per-node", "2"),
    ]
    assert launch.this_node(cfg, env) == 1
    with pytest.raises(cfgmod.ConfigError, match=r"set MASTER_ADDR .* and NODE_RANK"):
        launch.this_node(cfg, {"NODE_RANK": "1"})
    with pytest.raises(cfgmod.ConfigError, match="NODE_RANK"):
        launch.this_node(cfg, {"MASTER_ADDR": "h", "NODE_RANK": "2"})
    assert "$MASTER_ADDR" in launch.plan(cfg, [], {}).learner(0).command  # dry run, no env


def test_ranks_rerun_the_script_that_started_train(tmp_path: Path) -> None:
    script = tmp_path / "driver.py"
    script.write_text("")
    assert launch.entry_argv(str(script)) == [str(script.resolve())]
    assert launch.entry_argv("/venv/bin/grpo-plug") == ["-m", "grpo_plug"]
    assert launch.entry_argv("/x/grpo_plug/__main__.py") == ["-m", "grpo_plug"]


def test_dry_run_prints_the_exact_torchrun_command() -> None:
    args = ["train", "--dry-run", "--preset", "cpu", "allocation_mode=d2p1t1", "--no-tui"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert (
        f"{sys.executable} -m torch.distributed.run --standalone --nproc-per-node 2 -m "
        "grpo_plug train --preset cpu allocation_mode=d2p1t1 --no-tui"
    ) in res.output
    assert "rollouts run in rank 0's learner process" in res.output


def test_colocated_layout_checks_the_ranks_started() -> None:
    from grpo_plug.errors import SetupError
    from grpo_plug.preflight import check_world_size

    cfg = cfgmod.load(preset="cpu", overrides=["allocation_mode=d2p1t1"])
    with pytest.raises(SetupError, match=r"trains on 2 learner rank.*has 1"):
        check_world_size(cfg, 1)
    check_world_size(cfg, 2)


@pytest.mark.parametrize(
    ("args", "code", "stream", "text"),
    [
        (["--version"], 0, "stdout", "grpo-plug"),
        (["train", "--preset", "no-such-preset"], 2, "stderr", "no-such-preset"),
    ],
)
def test_a_rank_under_torchrun_ends_with_its_code_and_every_line_printed(
    args: list[str], code: int, stream: str, text: str
) -> None:
    """Under torchrun `grpo-plug` ends by os._exit (no interpreter teardown): the exit
    status is the command's and buffered output still reaches the pipe."""
    import os
    import subprocess

    env = {**os.environ, "LOCAL_RANK": "0", "RANK": "0", "WORLD_SIZE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "grpo_plug", *args], env=env, capture_output=True, text=True
    )
    assert proc.returncode == code, proc.stderr
    assert text in getattr(proc, stream)


def test_exit_code_of_system_exit(capsys: pytest.CaptureFixture[str]) -> None:
    assert launch.exit_code(SystemExit()) == 0
    assert launch.exit_code(SystemExit(3)) == 3
    assert launch.exit_code(SystemExit("bad thing")) == 1
    assert "bad thing" in capsys.readouterr().err
