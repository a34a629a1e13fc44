"""``grpo-plug doctor``: what this machine has for training, one row per check.

A row is ``(check, status, detail, hint)`` with status ``ok``, ``warn`` or ``fail``;
a check never raises, because a broken install is what doctor is there to report.
"""

from __future__ import annotations

import importlib.util
import platform
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from grpo_plug import config as cfgmod
from grpo_plug.cli.io import err, out
from grpo_plug.cli.options import ConfigOpt, OverridesArg, PresetOpt
from grpo_plug.config import TrainConfig
from grpo_plug.errors import ModelError, PluginError
from grpo_plug.plugins import REGISTRY_HOOKS, get_host

Row = tuple[str, str, str, str]


def python_check() -> Row:
    ok = sys.version_info >= (3, 11)
    return (
        "python",
        "ok" if ok else "fail",
        platform.python_version(),
        "" if ok else "grpo-plug needs Python >= 3.11",
    )


def torch_checks(cfg: TrainConfig | None = None) -> list[Row]:
    """torch itself, then one row per CUDA device with its free memory, and whether the
    training state of ``cfg``'s model fits on the first one."""
    try:
        import torch

        rows: list[Row] = [("torch", "ok", str(torch.__version__), "")]
        if not torch.cuda.is_available():
            hint = "GPU presets need CUDA; use `grpo-plug train --preset cpu`"
            return [*rows, ("cuda", "warn", "no CUDA device", hint)]
        for i in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(i)
            detail = (
                f"{torch.cuda.get_device_name(i)}, {free / 2**30:.1f}/{total / 2**30:.1f} GiB free"
            )
            rows.append((f"cuda:{i}", "ok", detail, ""))
        if cfg is not None:
            rows.append(fits_row(cfg, torch.cuda.mem_get_info(0)[0], "cuda:0"))
        return rows
    except Exception as e:
        return [("torch", "fail", f"{type(e).__name__}: {e}", "reinstall: make setup")]


def fits_row(cfg: TrainConfig, free_bytes: int, where: str) -> Row:
    """A rough "what fits": the learner's parameters, gradients and AdamW state per rank
    against ``free_bytes`` (activations, the KV cache and servers not counted)."""
    try:
        n_params = count_parameters(cfg.actor.path)
    except Exception as e:  # no config on disk (yet): say so, never fail doctor
        return ("fits", "warn", f"{cfg.actor.path}: cannot read its config ({e})", "")
    est = training_memory(n_params, cfg, device="cuda")
    need = est.per_rank_bytes
    status = "ok" if need <= 0.8 * free_bytes else "warn"
    detail = (
        f"{cfg.actor.path}: {n_params / 1e6:.0f}M params at {est.dtype}, params + grads + "
        f"AdamW {need / 2**30:.1f} GiB per learner rank ({est.ranks} rank(s)) vs "
        f"{free_bytes / 2**30:.1f} GiB free on {where}; activations and KV cache not counted"
    )
    hint = ""
    if status != "ok":
        hint = (
            "more learner ranks shard it (allocation_mode d<N>p1t1), or a smaller actor.path; "
            "then actor.gradient_checkpointing=true, a smaller actor.mb_max_tokens"
        )
    return ("fits", status, detail, hint)


@dataclass(frozen=True)
class MemoryEstimate:
    dtype: str  # what the master weights, grads and AdamW state are kept in
    bytes_per_param: int  # weights + grads + 2 AdamW moments, at that dtype
    ranks: int
    per_rank_bytes: int


def training_memory(n_params: int, cfg: TrainConfig, *, device: str) -> MemoryEstimate:
    """Parameters + gradients + AdamW's two moments of an ``n_params`` model, per rank.

    AdamW keeps its moments in the parameters' dtype; FSDP with ``actor.mixed_precision``
    keeps fp32 master weights. Sharded over the learner ranks; rank 0 also holds an
    unsharded copy of the weights for rollouts when there is more than one rank, and a
    reference model (``actor.kl_ctl > 0``) adds its weights.
    """
    from grpo_plug.models import torch_dtype
    from grpo_plug.plan import resolve as resolve_plan

    ranks = resolve_plan(cfg).learner_ranks
    dtype = torch_dtype(cfg.actor.dtype, device)
    if ranks > 1 and cfg.actor.mixed_precision and device.startswith("cuda"):
        import torch

        dtype = torch.float32
    width = dtype.itemsize
    per_param = 4 * width  # weights, grads, exp_avg, exp_avg_sq
    total = n_params * per_param + (n_params * width if cfg.actor.kl_ctl > 0 else 0)
    per_rank = -(-total // ranks) + (n_params * width if ranks > 1 else 0)
    return MemoryEstimate(str(dtype).removeprefix("torch."), per_param, ranks, per_rank)


def count_parameters(model_path: str) -> int:
    """Parameters of the model at ``model_path`` from its config alone (meta device: no
    weights read, no memory used). ``embedded:NAME`` once converted; hub ids from cache."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from grpo_plug import models

    where = model_path
    if model_path.startswith("embedded:"):
        where = str(models.embedded_cache_dir(model_path.removeprefix("embedded:")))
    config = AutoConfig.from_pretrained(where, local_files_only=True)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)  # type: ignore[no-untyped-call]
    return sum(p.numel() for p in model.parameters())


def attention_check(cfg: TrainConfig) -> Row:
    """What ``actor.attention`` runs on this machine (a derived setting, see the README)."""
    try:
        import torch

        from grpo_plug.learner.attention import resolve, unavailable
        from grpo_plug.plan import resolve as resolve_plan

        device = "cuda" if torch.cuda.is_available() else "cpu"
        ranks = resolve_plan(cfg).learner_ranks
        a = cfg.actor
        got = resolve(a.attention, world_size=ranks, device=device)
    except Exception as e:  # an impossible choice (or a broken torch): say which
        return ("attention", "fail", f"{type(e).__name__}: {e}", "set actor.attention=auto")
    detail = (
        f"actor.attention={a.attention} -> {got} ({device}, {ranks} learner rank(s), "
        f"gradient checkpointing {'on' if a.gradient_checkpointing else 'off'})"
    )
    hint = ""
    if device == "cuda" and unavailable("packed_flash", device):
        hint = "pip install flash-attn for packed_flash"
    return ("attention", "ok", detail, hint)


def core_check() -> Row:
    try:
        from grpo_plug import _core

        return ("rust core", "ok", f"grpo_plug._core {_core.__version__}", "")
    except Exception as e:
        return ("rust core", "fail", f"{type(e).__name__}: {e}", "build it: make build")


def plugins_check() -> Row:
    host = get_host()
    try:
        listed = host.plugins()
        for hook in REGISTRY_HOOKS:  # a register_* hook that raises is broken too
            host.collect(hook, strict=False)
    except PluginError as e:
        return ("plugins", "fail", str(e), "fix or block it with GRPO_PLUG_DISABLE_PLUGINS")
    broken = host.broken()
    if broken:
        return ("plugins", "fail", "; ".join(broken.values()), host.disable_hint())
    return ("plugins", "ok", f"{len(listed)} loaded", "")


def disk_check(fileroot: str) -> Row:
    probe = Path(fileroot).resolve()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free_gb = shutil.disk_usage(probe).free / 2**30
    status = "ok" if free_gb >= 5 else ("warn" if free_gb >= 1 else "fail")
    hint = "" if free_gb >= 5 else "checkpoints need room; set cluster.fileroot elsewhere"
    return ("disk", status, f"{free_gb:.1f} GiB free at {probe}", hint)


def embedded_model_check(name: str = "smollm2-135m") -> Row:
    """Does ``embedded:NAME`` resolve, and is it converted in the cache yet?"""
    from grpo_plug import models

    check = f"embedded:{name}"
    try:
        gguf = models.embedded_gguf(name)
    except ModelError as e:
        return (check, "fail", str(e).removeprefix("actor.path: "), "make setup")
    target = models.embedded_cache_dir(name)
    if models.is_converted(target):
        return (check, "ok", f"{gguf.name}, converted in {target}", "")
    hint = f"the first `grpo-plug train --preset cpu` converts it into {target} (~15 s, once)"
    return (check, "ok", f"{gguf} (not converted yet)", hint)


SGLANG_VENV = Path(".venv-sglang/bin/python")  # what `make sglang-env` builds


def sglang_check(cfg: TrainConfig | None = None) -> Row:
    """Whether the interpreter a run would launch servers with has SGLang:
    ``sglang.python`` when set, else this one; else says where `make sglang-env` put it."""
    from grpo_plug.preflight import sglang_importable

    python = cfg.sglang.python if cfg is not None else None
    if python is not None:
        if sglang_importable(python):
            return ("sglang", "ok", f"importable by sglang.python={python}", "")
        hint = "point sglang.python at an interpreter with SGLang (`make sglang-env`)"
        return ("sglang", "warn", f"sglang.python={python} cannot import sglang", hint)
    if importlib.util.find_spec("sglang") is not None:
        return ("sglang", "ok", "importable", "")
    if SGLANG_VENV.is_file() and sglang_importable(str(SGLANG_VENV)):
        where = SGLANG_VENV.absolute()
        return (
            "sglang",
            "warn",
            f"not in this interpreter; importable by {SGLANG_VENV}",
            f"SGLang runs need sglang.python={where}",
        )
    return (
        "sglang",
        "warn",
        "not installed",
        "GPU presets need it: pip install 'grpo-plug[sglang]', or `make sglang-env` and "
        "sglang.python=.venv-sglang/bin/python",
    )


def cpu_load_check(seconds: float = 1.0) -> Row:
    """Other processes busy on the cores a run here would use (a 2-core machine
    shared with another training run makes both crawl)."""
    from grpo_plug import cpu_load

    try:
        busy = cpu_load.busy_elsewhere(seconds=seconds)
    except Exception as e:  # no /proc, no psutil: say so, never fail doctor
        return ("cpu load", "warn", f"cannot sample it ({type(e).__name__}: {e})", "")
    detail = f"others use {busy.cores_busy:.1f} of {busy.cores} cores (over {busy.seconds:.1f}s)"
    warning = busy.warning()
    if warning is None:
        return ("cpu load", "ok", detail, "")
    return ("cpu load", "warn", warning, "")


def wandb_check() -> Row:
    from grpo_plug.metrics.loggers import wandb_has_credentials

    if wandb_has_credentials():
        return ("wandb", "ok", "credentials found", "")
    return (
        "wandb",
        "warn",
        "no credentials",
        "set WANDB_API_KEY or keep wandb.mode=disabled/offline",
    )


def doctor_checks(fileroot: str, cfg: TrainConfig | None = None) -> list[Row]:
    """Every check, in the order doctor prints them (``cfg``: the run to size up)."""
    return [
        python_check(),
        *torch_checks(cfg),
        *([attention_check(cfg)] if cfg is not None else []),
        core_check(),
        plugins_check(),
        disk_check(fileroot),
        embedded_model_check(),
        sglang_check(cfg),
        cpu_load_check(),
        wandb_check(),
    ]


def doctor_command(
    fileroot: Annotated[
        str, typer.Option(help="Where checkpoints go (checked for free space).")
    ] = "outputs/grpo",
    preset: PresetOpt = None,
    config: ConfigOpt = None,
    overrides: OverridesArg = None,
) -> None:
    """Check this machine: Python, torch, CUDA, Rust core, plugins, disk, SGLang, WandB;
    on a GPU, whether the configured model's training state fits (default config, or
    --preset / --config / key=value)."""
    cfg: cfgmod.TrainConfig | None = None
    try:
        cfg = cfgmod.load(preset=preset, config_file=config, overrides=overrides or [])
    except cfgmod.ConfigError as e:
        err.print(f"[red]error:[/red] {escape(str(e))}")
        raise typer.Exit(2) from None
    except PluginError:
        pass  # a broken plugin: the plugins row names it and how to disable it
    rows = doctor_checks(fileroot, cfg)
    colour = {"ok": "green", "warn": "yellow", "fail": "red"}
    for check, status, detail, hint in rows:
        line = f"[{colour[status]}]{status:>4}[/{colour[status]}]  {check:<10} {escape(detail)}"
        if hint:
            line += f"  [dim]({escape(hint)})[/dim]"
        out.print(line)
    if any(r[1] == "fail" for r in rows):
        raise typer.Exit(1)
