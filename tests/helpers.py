"""Helpers shared by the test modules (the fixtures that use them are in conftest.py).

Test modules import from here, never from each other. The tiny task, logger and config
come from the plugin author's kit, grpo_plug.testing, so the project's tests and a
plugin's tests train the same way.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pytest

from grpo_plug import config as cfgmod
from grpo_plug.plugins import PluginHost
from grpo_plug.testing import CaptureLogger, SevenPlugin, build_tiny_model, tiny_config
from grpo_plug.types import Logger, RolloutBackend

if TYPE_CHECKING:
    import torch

    from grpo_plug.trainer import Summary, Trainer

REPO = Path(__file__).resolve().parents[1]

__all__ = [
    "CaptureLogger",
    "TinyModels",
    "TrainRun",
    "build_tiny_model",
    "cpu_server_overrides",
    "run_trainer",
    "sglang_python",
    "tiny_config",
    "with_seven",
]


class TinyModels(Protocol):
    """The ``tiny_models`` fixture: a tiny model folder per (seed, hidden), shared."""

    def __call__(self, *, seed: int = 0, hidden: int = 32) -> Path: ...


def with_seven(host: PluginHost) -> PluginHost:
    """``host`` with the test task ``seven`` (and the ``spread`` reward) registered."""
    host.register(SevenPlugin(), name="seven")
    return host


@dataclass
class TrainRun:
    """What :func:`run_trainer` gives back: the (closed) trainer, its summary and
    what the capture logger received."""

    trainer: Trainer
    summary: Summary
    capture: CaptureLogger


def run_trainer(
    cfg: cfgmod.TrainConfig,
    host: PluginHost,
    *,
    loggers: Sequence[Logger] | None = (),
    quiet: bool = False,
    before: Callable[[Trainer], None] = lambda trainer: None,
) -> TrainRun:
    """Build a Trainer, call ``before`` on it, train, and always close it.

    Its loggers are ``loggers`` plus a capture logger; ``loggers=None`` keeps the
    config's own loggers instead (the capture logger then stays empty)."""
    from grpo_plug.trainer import Trainer  # torch loads on use only

    capture = CaptureLogger()
    trainer = Trainer(
        cfg, host=host, loggers=None if loggers is None else [*loggers, capture], quiet=quiet
    )
    try:
        before(trainer)
        summary = trainer.train()
    finally:
        trainer.close()
    return TrainRun(trainer, summary, capture)


def sglang_python() -> str:
    """The interpreter with SGLang: $GRPO_PLUG_SGLANG_PYTHON (set by `make test`), else
    the checkout's .venv-sglang. Missing means a set-up error, never a skip."""
    path = os.environ.get("GRPO_PLUG_SGLANG_PYTHON") or str(REPO / ".venv-sglang/bin/python")
    if not Path(path).is_file():
        pytest.fail(f"no SGLang interpreter at {path}: run `make sglang-env` (or make test)")
    return path


def cpu_server_overrides() -> list[str]:
    """A small CPU server from the SGLang venv, in fp32 for exact comparisons with the
    fp32 learner."""
    return [
        f"sglang.python={sglang_python()}",
        "sglang.device=cpu",
        "sglang.dtype=float32",
        "sglang.max_total_tokens=4096",
        "sglang.mem_fraction_static=0.1",
    ]


class Observer:
    """Wraps the trainer's real strategy: after each sync, reads every parameter back
    from the server in full and compares it with the learner's."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.checked: list[tuple[int, str]] = []
        self.snapshots: list[Any] = []  # torch tensors (torch loads on use only)

    def sync(self, model: Any, backend: RolloutBackend, version: int) -> Any:
        import torch

        from grpo_plug.rollout.sglang.backend import SGLangBackend

        phases = self.inner.sync(model, backend, version)
        assert isinstance(backend, SGLangBackend)
        for name, p in model.named_parameters():
            (got,) = backend.read_weights(name, rows=1 << 20)
            got = got[: p.shape[0]]  # the server pads the embedding's vocabulary rows
            assert torch.equal(got, p.detach().float()), f"{name} differs at version {version}"
        self.snapshots.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
        (served,) = backend.weight_versions()
        self.checked.append((version, served))
        return phases

    def close(self) -> None:
        self.inner.close()


def train_through_server(
    sglang_server: Any,
    tmp_path: Path,
    host: PluginHost,
    *extra: str,
    inspect: Callable[[Any], None] = lambda trainer: None,
) -> tuple[list[dict[str, Any]], CaptureLogger]:
    """Three GRPO steps on the session's server; checks what every strategy must give
    (the server's weights equal the learner's after each step, and they moved) and
    returns the step rows and the captured logs. ``inspect`` sees the trainer first."""
    import torch

    server, model = sglang_server
    cfg = tiny_config(
        tmp_path,
        model,
        "rollout.backend=sglang",
        f"rollout.server_addrs=[{server.spec.addr}]",
        "sglang.dtype=float32",
        "total_train_steps=3",
        "rollout.request_timeout=300",
        # Cut completions score below stopped ones: some reward variance in every run,
        # whatever the shared server's sampling state, so the weights always move.
        "reward.no_eos_reward=-1.0",
        *extra,
    )
    observers: list[Observer] = []

    def observe(trainer: Any) -> None:
        inspect(trainer)
        observers.append(Observer(trainer.weight_sync))
        trainer.weight_sync = observers[0]

    run = run_trainer(cfg, with_seven(host), before=observe)
    (obs,) = observers
    assert run.summary.steps == 3
    # Server weights equal the learner's after every step, under the step's version.
    assert obs.checked == [(1, "1"), (2, "2"), (3, "3")]
    # ... and those weights moved: each sync carried a new policy.
    assert not torch.equal(obs.snapshots[0], obs.snapshots[-1])
    rows = [r for r in run.capture.rows if "grpo_actor/lr" in r]
    assert len(rows) == 3
    assert all(r["rollout/samples_current_version"] == 32.0 for r in rows)
    # The learner's log-probs of the server's tokens match the server's (fp32 both).
    learned = [r for r in rows if "grpo_actor/logprob_abs_diff" in r]
    assert learned and all(r["grpo_actor/logprob_abs_diff"] < 1e-3 for r in learned)
    return rows, run.capture


# ----------------------------------------------------------------------- run outcomes

VOLATILE = ("timestamp", "timeperf/", "perf/", "grpo_actor/gen_tokens_per_s")


def outcome(root: Path) -> dict[str, Any]:
    """A finished run's recover point (weights, optimizer, state) and metric rows, less
    what legitimately differs between runs (times)."""
    import json

    import torch
    from safetensors.torch import load_file

    from grpo_plug.recovery import store

    run = root / "out" / "checkpoints"
    rec = next(run.rglob(store.RECOVER_DIR))
    store.verify_dir(rec)
    rows = []
    for line in next((root / "out" / "logs").rglob("metrics.jsonl")).read_text().splitlines():
        row = json.loads(line)
        rows.append({k: v for k, v in row.items() if not k.startswith(VOLATILE)})
    return {
        "model": load_file(str(rec / "model.safetensors")),
        "optimizer": torch.load(rec / "optimizer.pt", weights_only=True),
        "state": json.loads((rec / "state.json").read_text()),
        "metrics": rows,
    }


def assert_same(a: Any, b: Any, where: str = "") -> None:
    """``a == b`` bit for bit, tensors included; ``where`` names the first difference."""
    import torch

    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


CRASH_DRIVER = Path(__file__).resolve().parent / "crash_driver.py"


def launch_crash_driver(config: Path, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    """``grpo-plug train --config`` in a child through tests/crash_driver.py, optionally
    with a fault point (``GRPO_PLUG_FAULT_AT``) that SIGKILLs it."""
    env = {k: v for k, v in os.environ.items() if k != "GRPO_PLUG_FAULT_AT"}
    if fault:
        env["GRPO_PLUG_FAULT_AT"] = fault
    return subprocess.run(
        [sys.executable, str(CRASH_DRIVER), "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


MARK = "GRPO_PLUG_TEST_MARK"  # inherited by every process a run starts: finds orphans


def marked(mark: str) -> list[int]:
    """Live processes whose environment has ``MARK=mark`` (a run and all it started)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if f"{MARK}={mark}".encode() in environ.split(b"\0"):
            pids.append(int(entry.name))
    return pids


def load_for_training(
    model_dir: Path, dtype: torch.dtype | None = None, device: str = "cpu"
) -> Any:
    """A saved model in train mode (fp32 unless ``dtype``)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype or torch.float32)
    model.to(device)
    model.train()
    return model


def packed_micro_batch(seed: int = 1, n: int = 7, group: int = 1) -> Any:
    """``n`` random documents of different lengths in one packed micro-batch (seeded);
    ``group``: that many consecutive documents share their prompt (a GRPO group)."""
    import numpy as np

    from grpo_plug import core

    rng = np.random.default_rng(seed)
    prompts, comps, lps = [], [], []
    for i in range(n):
        if i % group == 0:
            prompt = rng.integers(3, 14, size=int(rng.integers(2, 20))).tolist()
        prompts.append(prompt)
        comps.append(rng.integers(3, 14, size=int(rng.integers(1, 16))).tolist())
        lps.append([-1.0] * len(comps[-1]))
    adv = rng.normal(size=n).astype(np.float32)
    (mbs,) = core.pack_microbatches(prompts, comps, lps, adv, max_tokens=10_000)
    (mb,) = mbs
    return mb
