"""The openai backend against the real SGLang server's ``/v1/completions`` on 127.0.0.1.

One server per module (start-up takes minutes on a CPU), started here from the SGLang
interpreter ($GRPO_PLUG_SGLANG_PYTHON, as `make test` sets it, else the checkout's
.venv-sglang) on a tiny random Llama built from a config, and stopped by PID (its
process group) at the end. Skipped when no SGLang interpreter exists; a set
$GRPO_PLUG_SGLANG_PYTHON that points nowhere is a set-up error, not a skip.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from grpo_plug_openai import plugin
from grpo_plug_openai.plugin import make_openai_backend

from grpo_plug import config
from grpo_plug.api import GenerationRequest, SamplingParams, TrainConfig
from grpo_plug.testing import (
    build_tiny_model,
    check_rollout_backend,
    isolated_host,
    run_training_step,
    tiny_context,
)

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]
STARTUP_TIMEOUT_S = 900.0
STOP_GRACE_S = 30.0


def sglang_python() -> str:
    env = os.environ.get("GRPO_PLUG_SGLANG_PYTHON")
    if env:
        if not Path(env).is_file():
            pytest.fail(f"GRPO_PLUG_SGLANG_PYTHON={env} does not exist: run `make sglang-env`")
        return env
    path = REPO / ".venv-sglang/bin/python"
    if not path.is_file():
        pytest.skip(f"no SGLang interpreter ({path}; `make sglang-env` builds it)")
    return str(path)


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str  # the OpenAI API root, .../v1
    workdir: Path  # holds tiny-model/, the model the server serves
    log: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, SIGKILL it after a grace period."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass
    for _ in range(100):  # children (scheduler, detokenizer) may take a moment
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    pytest.fail(f"SGLang server group {proc.pid} still alive after stop")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    python = sglang_python()
    root = tmp_path_factory.mktemp("openai-sglang")
    model = build_tiny_model(root / "tiny-model", hidden=64)  # run_training_step reuses it
    # docs/sglang/CPU.md: an empty common_ops satisfies sgl_kernel's import
    shim = root / "cpu_shim"
    shim.mkdir()
    (shim / "common_ops.py").write_text("")
    port = free_port()
    env = {
        **os.environ,
        "SGLANG_USE_CPU_ENGINE": "1",
        "PYTHONPATH": str(shim),
        "OMP_NUM_THREADS": "1",
    }
    cmd = [
        python, "-m", "sglang.launch_server",
        "--model-path", str(model), "--host", "127.0.0.1", "--port", str(port),
        "--device", "cpu", "--dtype", "float32", "--random-seed", "1",
        "--max-total-tokens", "4096", "--mem-fraction-static", "0.1",
        "--sleep-on-idle", "--skip-server-warmup",
    ]  # fmt: skip
    log = root / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"SGLang server exited ({proc.returncode}); log {log}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"SGLang server not healthy after {STARTUP_TIMEOUT_S:g}s; log {log}")
            time.sleep(1.0)
        yield Server(proc, f"http://127.0.0.1:{port}/v1", root, log)
    finally:
        stop(proc)


def cfg_for(server: Server, *extra: str) -> TrainConfig:
    sections = isolated_host(plugin).config_sections()
    return config.load(overrides=[f"openai.base_urls={server.url}", *extra], sections=sections)


def test_contract_on_the_real_server(server: Server) -> None:
    cfg = cfg_for(server, "weight_sync.strategy=frozen")  # model name from GET /v1/models
    ctx = tiny_context(server.workdir / "tiny-model")
    check_rollout_backend(make_openai_backend, ctx=ctx, cfg=cfg, max_new_tokens=6)


def test_tokens_and_logprobs_equal_native_generate(server: Server) -> None:
    backend = make_openai_backend(
        cfg_for(server, "weight_sync.strategy=frozen"), tiny_context(server.workdir / "tiny-model")
    )
    greedy = SamplingParams(max_new_tokens=8, temperature=0.0)
    (mine,) = backend.generate([GenerationRequest("g", [1, 4, 7, 5, 2, 1], 1, greedy)])[0]
    native = httpx.post(
        server.url.removesuffix("/v1") + "/generate",
        json={
            "input_ids": [1, 4, 7, 5, 2, 1],
            "sampling_params": {"max_new_tokens": 8, "temperature": 0.0, "stop_token_ids": [2]},
            "return_logprob": True,
        },
        timeout=120,
    ).json()
    triples = native["meta_info"]["output_token_logprobs"]
    assert mine.output_ids == [t[1] for t in triples] == native["output_ids"]
    assert mine.logprobs == pytest.approx([t[0] for t in triples], abs=1e-5)
    assert mine.finish_reason == native["meta_info"]["finish_reason"]["type"]
    # Sampled: every `stop` ends with the stop id sent (EOS included), every `length` is full.
    sp = SamplingParams(max_new_tokens=12, temperature=1.0)
    groups = backend.generate(
        [GenerationRequest(f"s{i}", [1, 4 + i, 2, 1], 8, sp) for i in range(3)]
    )
    samples = [s for g in groups for s in g]
    assert {s.finish_reason for s in samples} <= {"stop", "length"}
    for s in samples:
        assert len(s.logprobs) == len(s.output_ids) and all(lp <= 0 for lp in s.logprobs)
        if s.finish_reason == "stop":
            assert s.output_ids[-1] == 2 and 2 not in s.output_ids[:-1]
        else:
            assert len(s.output_ids) == 12
    assert any(s.finish_reason == "stop" for s in samples)  # p(no EOS in 24 samples) ~ 0


def test_training_step_with_sglang_disk_sync(server: Server, tmp_path: Path) -> None:
    # disk sync verifies after every sync that the server's weights equal the learner's.
    res = run_training_step(
        plugin,
        workdir=server.workdir,
        overrides=(
            "rollout.backend=openai",
            f"openai.base_urls={server.url}",
            "openai.weights=sglang_disk",
            "weight_sync.strategy=disk",
            f"cluster.fileroot={tmp_path / 'out'}",
        ),
        steps=2,
    )
    assert res.summary.steps == 2 and res.metrics["openai/server0/requests"] > 0
    assert res.metrics["rollout/samples_stale_version"] == 0
    info = httpx.get(server.url.removesuffix("/v1") + "/model_info", timeout=30).json()
    assert info["weight_version"] == "2"  # the step's weights, loaded by the server


def test_training_on_a_frozen_server_tags_samples_stale(server: Server, tmp_path: Path) -> None:
    res = run_training_step(
        plugin,
        workdir=server.workdir,
        overrides=(
            "rollout.backend=openai",
            f"openai.base_urls={server.url}",
            "weight_sync.strategy=frozen",
            f"cluster.fileroot={tmp_path / 'out'}",
        ),
        steps=2,
    )
    assert res.summary.steps == 2
    assert res.metrics["rollout/samples_stale_version"] > 0  # step 2 samples from version 0
