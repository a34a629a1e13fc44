"""The server launcher and the sglang-related config, without starting SGLang."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grpo_plug import config as cfgmod
from grpo_plug.errors import PluginError, RequestFailed, ServerError, SetupError
from grpo_plug.plugins import get_host
from grpo_plug.registry import ComponentRegistry
from grpo_plug.rollout.sglang import servers as srv
from grpo_plug.rollout.sglang.specs import launch_args, server_specs
from grpo_plug.types import WeightSyncFactory, WeightUpdateSurface
from grpo_plug.weight_sync import resolve_strategy_name
from grpo_plug.weight_sync.inplace import InplaceSync


def test_a_server_that_dies_while_starting_names_its_log(tmp_path: Path) -> None:
    # This interpreter has no sglang: the real launch command fails at once.
    spec = srv.ServerSpec(sys.executable, str(tmp_path), srv.free_port(), tmp_path / "s.log", "cpu")
    server = srv.launch(spec)
    try:
        with pytest.raises(ServerError, match=r"exited with code 1 while starting; log .*s\.log"):
            srv.wait_healthy([server], timeout=120)
        assert "No module named" in server.log_tail()
    finally:
        srv.stop_all([server])
    assert not server.alive()


def test_a_server_that_never_answers_times_out_naming_its_log(tmp_path: Path) -> None:
    spec = srv.ServerSpec(sys.executable, "m", srv.free_port(), tmp_path / "hang.log", "cpu")
    # A live process that never listens on its port.
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    server = srv.Server(spec, proc)
    try:
        with pytest.raises(ServerError, match=r"startup_timeout=2s: .*hang\.log"):
            srv.wait_healthy([server], timeout=2)
    finally:
        srv.stop_all([server])
    assert not server.alive()


def test_cpu_launch_puts_the_shim_on_the_path(tmp_path: Path) -> None:
    spec = srv.ServerSpec("py", "m", 1, tmp_path / "l", "cpu")
    env = spec.env()
    assert env["PYTHONPATH"].split(":")[0] == str(srv.CPU_SHIM)
    assert (srv.CPU_SHIM / "common_ops.py").is_file()
    assert env["SGLANG_USE_CPU_ENGINE"] == "1"
    gpu = srv.ServerSpec("py", "m", 1, tmp_path / "l", "cuda", gpu_ids=(2, 3)).env()
    assert gpu["CUDA_VISIBLE_DEVICES"] == "2,3" and str(srv.CPU_SHIM) not in gpu.get(
        "PYTHONPATH", ""
    )


def test_allocation_mode_gives_servers_devices_and_flags(tmp_path: Path) -> None:
    cfg = cfgmod.load(
        overrides=[
            "rollout.backend=sglang",
            "allocation_mode=sglang:d2p1t2+d4p1t1",
            "sglang.device=cuda",
            "sglang.context_length=2048",
            "sglang.max_total_tokens=8192",
            "sglang.extra_args=[--disable-radix-cache]",
        ]
    )
    specs = server_specs(cfg, "/m", tmp_path)
    assert [s.gpu_ids for s in specs] == [(0, 1), (2, 3)]
    assert len({s.port for s in specs}) == 2
    assert [s.log_path.name for s in specs] == ["sglang_server0.log", "sglang_server1.log"]
    args = launch_args(cfg, 1, "cuda")
    for flag, value in (
        ("--tp-size", "2"),
        ("--random-seed", "2"),
        ("--context-length", "2048"),
        ("--max-total-tokens", "8192"),
        ("--mem-fraction-static", "0.8"),
    ):
        assert args[args.index(flag) + 1] == value
    assert "--disable-radix-cache" in args and "--sleep-on-idle" not in args


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("allocation_mode=sglang.d1t1", "neither 'local' nor like"),
        ("allocation_mode=sglang.d1p2t1+d1p1t1", "pipeline-parallel"),
        ("rollout.server_addrs=[localhost]", "is not host:port"),
    ],
)
def test_bad_sglang_config_fails_naming_the_key(override: str, message: str) -> None:
    with pytest.raises(cfgmod.ConfigError, match=message):
        cfgmod.load(overrides=["rollout.backend=sglang", override])


def test_allocation_with_the_hf_backend_is_refused() -> None:
    with pytest.raises(cfgmod.ConfigError, match=r"rollout\.backend=sglang"):
        cfgmod.load(overrides=["allocation_mode=sglang.d1p1t1+d1p1t1"])


class Remote(WeightUpdateSurface):
    """A backend with weights of its own (what auto syncs by disk or broadcast)."""

    name, colocated, in_process = "remote", False, False


class Weightless:
    """A backend without weights of this run (replayed or remote completions)."""

    name, colocated, in_process = "weightless", False, False


class Local:
    name, colocated, in_process = "local", True, True


@pytest.mark.parametrize(
    ("gpus", "backend", "want"),
    [
        (0, Remote, "disk"),
        (1, Remote, "disk"),
        (8, Remote, "distributed"),
        (8, Local, "inplace"),
        (1, Weightless, "none"),
    ],
)
def test_auto_weight_sync(gpus: int, backend: type, want: str) -> None:
    cfg = cfgmod.load(overrides=[f"cluster.n_gpus_per_node={gpus}"])
    registry = get_host().weight_sync_strategies()
    assert resolve_strategy_name(cfg, backend(), registry) == want  # type: ignore[arg-type]


def test_auto_weight_sync_is_chosen_by_trait_and_refuses_an_ambiguous_layout() -> None:
    """Core code names no strategy: ``auto`` takes the one registered with the layout's
    trait, and two strategies claiming one layout is a clear error, not a silent pick."""
    cfg = cfgmod.load(overrides=["cluster.n_gpus_per_node=8"])
    registry = ComponentRegistry[WeightSyncFactory]("weight-sync strategy")
    registry.register("mine", InplaceSync, traits=["auto:devices"])
    assert resolve_strategy_name(cfg, Remote(), registry) == "mine"  # type: ignore[arg-type]
    registry.register("theirs", InplaceSync, traits=["auto:devices"])
    with pytest.raises(SetupError, match=r"auto:devices for this layout; mine .*, theirs"):
        resolve_strategy_name(cfg, Remote(), registry)  # type: ignore[arg-type]
    with pytest.raises(SetupError, match="none is registered"):
        resolve_strategy_name(cfg, Local(), registry)  # type: ignore[arg-type]
    with pytest.raises(PluginError, match="unknown trait"):
        registry.register("typo", InplaceSync, traits=["auto:device"])


def test_inplace_refuses_a_backend_with_its_own_weights() -> None:
    with pytest.raises(RuntimeError, match="keeps its own weights"):
        InplaceSync(cfgmod.TrainConfig()).sync(None, Remote(), 1)  # type: ignore[arg-type]


def test_a_server_that_cannot_restart_stops_the_backend_naming_its_log(tmp_path: Path) -> None:
    from grpo_plug.rollout.sglang.backend import SGLangBackend
    from grpo_plug.rollout.sglang.health import HealthPolicy

    # This interpreter has no sglang: the server and each restart exit at once.
    spec = srv.ServerSpec(sys.executable, str(tmp_path), srv.free_port(), tmp_path / "s.log", "cpu")
    server = srv.launch(spec)
    policy = HealthPolicy(interval=0.2, timeout=2, max_restarts=2, backoff=0.1)
    backend = SGLangBackend([spec.addr], [2], launched=[server], health=policy)
    try:
        deadline = time.monotonic() + 60
        while backend.monitor is not None and backend.monitor.fatal is None:
            assert time.monotonic() < deadline, "the monitor never gave up"
            time.sleep(0.2)
        assert backend.monitor is not None and backend.monitor.fatal is not None
        assert re.search(
            r"2 restart\(s\) failed, last: .*No module named 'sglang'.*; log .*s\.log",
            backend.monitor.fatal,
            re.S,
        )
        assert backend.stats()["rollout/health_failures"] == 1.0
        assert backend.stats()["rollout/servers_up"] == 0.0
        with pytest.raises(RequestFailed, match="2 restart"):
            asyncio.run(backend._available())
    finally:
        backend.close()
    assert all(not s.alive() for s in [server, *backend.launched])


def test_distributed_buckets_keep_the_order_and_the_byte_layout() -> None:
    import torch

    from grpo_plug.rollout.sglang.client import distributed_update_body
    from grpo_plug.weight_sync.distributed import buckets, flatten, metas

    second = torch.nn.Linear(8, 2)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), second)
    chunks = list(buckets(model, torch.float32, limit=100))  # 128 B weight alone
    names = [[n for n, _ in c] for c in chunks]
    assert names == [["0.weight"], ["0.bias", "1.weight"], ["1.bias"]]
    flat = flatten(chunks[1], "cpu")
    assert flat.dtype == torch.uint8 and flat.numel() == (8 + 16) * 4
    back = flat[32:].view(torch.float32).reshape(2, 8)
    assert torch.equal(back, second.weight.detach())
    body = distributed_update_body(metas(chunks[1]), "g", 5, last=True)
    assert body["weight_version"] == "5" and body["names"] == ["0.bias", "1.weight"]
    assert body["dtypes"] == ["float32", "float32"] and body["shapes"] == [[8], [2, 8]]
    assert "weight_version" not in distributed_update_body(metas(chunks[0]), "g", 5, last=False)


def test_distributed_is_registered_and_health_keys_are_bounded() -> None:
    from grpo_plug.plugins import get_host

    assert "distributed" in get_host().weight_sync_strategies().names()
    with pytest.raises(cfgmod.ConfigError, match=r"sglang\.max_restarts"):
        cfgmod.load(overrides=["sglang.max_restarts=-1"])
    with pytest.raises(cfgmod.ConfigError, match=r"sglang\.health_timeout"):
        cfgmod.load(overrides=["sglang.health_timeout=0"])


def test_deterministic_sampling_on_a_cpu_server_is_refused_naming_the_key() -> None:
    cfg = cfgmod.load(
        overrides=["rollout.backend=sglang", "sglang.device=cpu", "sglang.deterministic=true"]
    )
    with pytest.raises(ServerError, match=r"sglang\.deterministic=true needs a GPU"):
        launch_args(cfg, 0, "cpu")
    gpu = launch_args(cfg, 0, "cuda")
    assert "--enable-deterministic-inference" in gpu


@pytest.mark.sglang
def test_sglang_is_found_in_its_own_venv_whose_python_links_to_ours() -> None:
    from grpo_plug.preflight import sglang_importable
    from tests.helpers import sglang_python

    assert not sglang_importable(None)  # the dev venv has no sglang
    # uv venvs link bin/python to one base interpreter: resolving the link would wrongly
    # make .venv-sglang's python "this" one.
    assert sglang_importable(sglang_python())


FAKE_SERVER = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Ok(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[sys.argv.index("--port") + 1])), Ok).serve_forever()
"""


def test_servers_killed_at_once_are_restarted_and_stay_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Restarts run in their own threads, but a server dies with the thread that
    launched it (PR_SET_PDEATHSIG): they must outlive the restart. A stand-in
    ``sglang.launch_server`` that answers 200 to everything plays the server."""
    import os
    import signal

    from grpo_plug.rollout.sglang.backend import SGLangBackend
    from grpo_plug.rollout.sglang.health import HealthPolicy

    (tmp_path / "sglang").mkdir()
    (tmp_path / "sglang" / "__init__.py").write_text("")
    (tmp_path / "sglang" / "launch_server.py").write_text(FAKE_SERVER)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    specs = [
        srv.ServerSpec(sys.executable, "m", srv.free_port(), tmp_path / f"{i}.log", "cuda")
        for i in range(2)
    ]
    servers = srv.start(specs, timeout=60)
    policy = HealthPolicy(interval=0.2, timeout=5, max_restarts=2, backoff=0.1)
    backend = SGLangBackend([s.addr for s in specs], [2], launched=servers, health=policy)
    try:
        for s in servers:
            os.killpg(s.pid, signal.SIGKILL)
        monitor = backend.monitor
        assert monitor is not None
        deadline = time.monotonic() + 60
        while monitor.restarts < 2 or monitor.state != ["up", "up"]:
            assert monitor.fatal is None, monitor.fatal
            assert time.monotonic() < deadline, f"restarts {monitor.restarts}, {monitor.state}"
            time.sleep(0.1)
        new = list(backend.launched)
        time.sleep(1.0)  # the restart threads have finished by now
        assert all(s.alive() for s in new) and {s.pid for s in new}.isdisjoint(
            s.pid for s in servers
        )
        assert monitor.restarts == 2 and monitor.state == ["up", "up"]
    finally:
        backend.close()
    assert not any(s.alive() for s in backend.launched)
