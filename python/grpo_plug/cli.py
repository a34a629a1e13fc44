"""The ``grpo-plug`` command line."""

from __future__ import annotations

import dataclasses
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from grpo_plug import __version__, plugin_commands
from grpo_plug import config as cfgmod
from grpo_plug.cli_io import USER_ERRORS, err, out, user_errors
from grpo_plug.doctor import doctor_checks
from grpo_plug.metrics import commands as metric_commands
from grpo_plug.plugins import get_host
from grpo_plug.registry import PluginError
from grpo_plug.run_summary import print_category_rows, print_summary

app = typer.Typer(
    name="grpo-plug",
    help="GRPO training for math reasoning, with plugins and a Rust data path.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Inspect configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.command()(metric_commands.watch)
app.command()(metric_commands.report)
app.add_typer(plugin_commands.plugins_app, name="plugins")


def _version(value: bool) -> None:
    if value:
        out.print(f"grpo-plug {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """GRPO training for math reasoning, with plugins and a Rust data path."""


# ----------------------------------------------------------------------- presets


def preset_summary(name: str) -> dict[str, Any]:
    path = cfgmod.preset_path(name)
    purpose = ""
    for line in path.read_text().splitlines():
        if line.startswith("# Purpose:"):
            purpose = line.removeprefix("# Purpose:").strip()
            break
    cfg = cfgmod.load(preset=name)
    return {
        "name": name,
        "purpose": purpose,
        "model": cfg.actor.path,
        "task": cfg.train_dataset.task,
        "samples": cfg.train_dataset.max_samples or "all",
        "epochs": cfg.total_train_epochs,
        "n_samples": cfg.gconfig.n_samples,
        "max_new_tokens": cfg.gconfig.max_new_tokens,
        "backend": cfg.rollout.backend,
    }


@app.command()
@user_errors
def presets() -> None:
    """List the built-in presets and what each is for."""
    rows = [preset_summary(name) for name in cfgmod.preset_names()]
    table = Table(title="grpo-plug presets")
    cols = ("name", "model", "task", "samples", "epochs", "n_samples", "max_new_tokens", "backend")
    heads = ("name", "model", "task", "samples", "epochs", "n", "new tok", "backend")
    for head in heads:
        table.add_column(head, no_wrap=True)
    for row in rows:
        table.add_row(*(str(row[k]) for k in cols))
    out.print(table)
    for row in rows:
        out.print(f"[bold]{row['name']}[/bold]: {escape(row['purpose'])}")
    out.print(escape("Run one with: grpo-plug train --preset NAME [key=value ...]"))


# ----------------------------------------------------------------------- config

PresetOpt = Annotated[
    str | None, typer.Option("--preset", "-p", help="Preset name (see `grpo-plug presets`).")
]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="A YAML config file instead of a preset.")
]
OverridesArg = Annotated[
    list[str] | None,
    typer.Argument(
        help="Overrides with the seed's dotted names, e.g. actor.lr=1e-6.", show_default=False
    ),
]


@config_app.command("show")
@user_errors
def config_show(
    preset: PresetOpt = None, config: ConfigOpt = None, overrides: OverridesArg = None
) -> None:
    """Print the fully resolved configuration as YAML."""
    cfg = cfgmod.load(preset=preset, config_file=config, overrides=overrides or [])
    out.print(cfgmod.dump_yaml(cfg), end="", markup=False)


@config_app.command("keys")
def config_keys() -> None:
    """List every configuration key with its type, default and help."""
    table = Table(title="configuration keys")
    for col in ("key", "type", "default", "help"):
        table.add_column(col, overflow="fold")
    for key, tp, help_text, default in cfgmod.field_help():
        table.add_row(key, tp, repr(default), help_text)
    out.print(table)


# ----------------------------------------------------------------------- train / eval


def _train_errors() -> tuple[type[Exception], ...]:
    from grpo_plug.builtin.tasks import DataError
    from grpo_plug.checkpoint import CheckpointError
    from grpo_plug.models import ModelError
    from grpo_plug.preflight import SetupError

    return (*USER_ERRORS, DataError, ModelError, SetupError, CheckpointError)


NoTuiOpt = Annotated[
    bool,
    typer.Option(
        "--no-tui",
        help="Plain one-line-per-step logs instead of the live dashboard (also the default "
        "when stdout is not a terminal or TERM=dumb).",
    ),
]


@app.command()
def train(
    preset: PresetOpt = None,
    config: ConfigOpt = None,
    overrides: OverridesArg = None,
    no_tui: NoTuiOpt = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Print the processes and devices the allocation would use; start nothing.",
        ),
    ] = False,
) -> None:
    """Train with GRPO: `grpo-plug train --preset cpu` runs anywhere, no GPU needed."""
    from grpo_plug import launch, threads

    tui = metric_commands.wants_tui(sys.stdout, no_tui)
    try:
        name = preset if preset or config else "cpu"
        cfg = cfgmod.load(preset=name, config_file=config, overrides=overrides or [])
        source = ["--config", str(config)] if config else ["--preset", name]
        train_args = [*source, *(overrides or []), *(["--no-tui"] if no_tui else [])]
        plan = threads.plan_for(cfg)
        if dry_run:
            text = f"{launch.describe(launch.plan(cfg, train_args))}\n{plan.describe()}"
            out.print(escape(text), highlight=False)
            return
    except _train_errors() as e:
        err.print(f"[red]error:[/red] {escape(str(e))}")
        raise typer.Exit(2) from None
    # Before torch loads (OpenMP reads its wait policy once); undone after the run.
    with threads.exported(plan):
        _train(cfg, name, config, train_args, tui=tui)


def _train(
    cfg: cfgmod.TrainConfig,
    name: str | None,
    config: Path | None,
    train_args: list[str],
    *,
    tui: bool,
) -> None:
    from grpo_plug import interactive, launch

    try:
        if launch.needs_torchrun(cfg):  # more than one learner rank: torchrun starts them
            _run_learners(cfg, train_args)
            return
        from grpo_plug.learner import dist

        if launch.under_torchrun():
            launch.die_with_parent()  # no rank outlives torchrun
        if not dist.from_env().is_main:  # under torchrun: rank 0 trains, the others follow
            _follow(cfg)
            return
        from grpo_plug.trainer import Trainer

        loggers_cfg = cfg
        if tui:  # the dashboard replaces the console lines
            loggers_cfg = dataclasses.replace(
                cfg, loggers=[n for n in cfg.loggers if n != "console"]
            )
            out.print(f"grpo-plug: loading {cfg.actor.path} for the {name} run...")
        trainer = Trainer(loggers_cfg, preset=None if config else name, quiet=tui)
    except _train_errors() as e:
        err.print(f"[red]error:[/red] {escape(str(e))}")
        raise typer.Exit(2) from None
    try:
        summary = interactive.run(trainer, tui=tui, console=out)
    except interactive.run_errors() as e:
        err.print(f"[red]error:[/red] {escape(str(e))}")
        err.print(
            f"the last recover point (if any) is kept; after fixing the cause, resume with: "
            f"{escape(interactive.resume_command())}"
        )
        raise typer.Exit(1) from None
    if summary is None:
        raise typer.Exit(130)
    print_summary(cfg, summary)


def _run_learners(cfg: cfgmod.TrainConfig, train_args: list[str]) -> None:
    """This node's learner ranks under torchrun, supervised; exits with their code."""
    from grpo_plug import launch

    rc = launch.run_learners(cfg, train_args, say=lambda m: err.print(escape(m)))
    if rc == 0:
        return
    resume = escape(shlex.join(["grpo-plug", "train", *train_args]))
    if rc in (130, 143):  # stopped on request (second Ctrl-C, SIGTERM)
        err.print(f"stopped every learner rank on request; resume with: {resume}")
    else:
        err.print(
            f"[red]error:[/red] the learner ranks ended with exit code {rc} (torchrun's report "
            "above names the rank that failed); every rank is stopped. The last recover point "
            f"(if any) is kept; after fixing the cause, resume with: {resume}"
        )
    raise typer.Exit(rc)


def _follow(cfg: cfgmod.TrainConfig) -> None:
    """A rank other than 0: follow rank 0; an out-of-memory ends with the advice."""
    from grpo_plug.learner.group import follow
    from grpo_plug.learner.oom import OutOfMemory

    try:
        follow(cfg)
    except OutOfMemory as e:
        err.print(f"[red]error:[/red] {escape(str(e))}")
        raise typer.Exit(1) from None


@app.command("eval")
def eval_cmd(
    model_path: Annotated[
        str, typer.Option("--model-path", help="Checkpoint dir, hub id or embedded:NAME.")
    ] = "embedded:smollm2-135m",
    max_samples: Annotated[
        int | None, typer.Option("--max-samples", min=1, help="Evaluate the first N problems.")
    ] = None,
    task: Annotated[str, typer.Option(help="Task plugin: gsm8k, arith, ...")] = "gsm8k",
    data: Annotated[
        str | None, typer.Option(help="Local JSONL/parquet file (default: the task's own).")
    ] = None,
    split: Annotated[str, typer.Option(help="Dataset split.")] = "test",
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Generation length.")] = 512,
    batch_size: Annotated[int, typer.Option(min=1, help="Problems generated together.")] = 32,
    output: Annotated[
        Path | None, typer.Option(help="Predictions JSONL (default: eval_<task>.jsonl here).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed (arith problems).")] = 1,
    overrides: Annotated[
        list[str] | None,
        typer.Argument(
            help="Task knobs as dataset keys, e.g. arith_style=plain.", show_default=False
        ),
    ] = None,
) -> None:
    """Greedy accuracy of a checkpoint; writes every prediction to JSONL."""
    from rich.progress import Progress

    try:
        from grpo_plug.evaluation import build_task, evaluate, load_examples
        from grpo_plug.models import load_model, load_tokenizer

        base = {"task": task, "path": data, "split": split, "max_samples": max_samples}
        prefixed = [f"valid_dataset.{o}" for o in overrides or []]
        nested = cfgmod.apply_overrides({"valid_dataset": base}, prefixed)
        eval_cfg = cfgmod.from_dict(nested)
        ds = eval_cfg.valid_dataset
        task_obj = build_task(get_host().tasks().get(task), ds, seed, eval_cfg)
        examples = load_examples(task_obj, ds)
        tok = load_tokenizer(model_path)
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        model = load_model(model_path, device=device)
        from grpo_plug.rollout.hf import HFBackend

        backend = HFBackend(model, tok, max_batch_size=batch_size)
    except _train_errors() as e:
        err.print(f"[red]error:[/red] {escape(str(e))}")
        raise typer.Exit(2) from None
    with Progress(console=err, transient=True) as bar:
        job = bar.add_task(f"evaluating {len(examples)} {task} problems", total=len(examples))
        res = evaluate(
            backend,
            tok,
            task_obj,
            examples,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            progress=lambda done, total: bar.update(job, completed=done),
        )
    from grpo_plug.evaluation import write_jsonl

    path = output or Path(f"eval_{task}.jsonl")
    write_jsonl(path, res.records)
    out.print(
        f"accuracy {100 * res.accuracy:.1f}% ({sum(r['correct'] for r in res.records)}"
        f"/{res.n}) on {task} {split}; predictions in {path}"
    )
    print_category_rows(res.records)


@app.command()
def checkpoints(
    experiment: Annotated[
        str | None, typer.Argument(help="Experiment name (all if omitted).")
    ] = None,
    trial: Annotated[str | None, typer.Argument(help="Trial name (all if omitted).")] = None,
    fileroot: Annotated[str, typer.Option(help="cluster.fileroot of the runs.")] = "outputs/grpo",
    user: Annotated[str | None, typer.Option(help="User folder (default: you).")] = None,
) -> None:
    """List checkpoints and recover points with step, time and validity."""
    import getpass
    import time as _time

    from grpo_plug.checkpoint import list_hf_checkpoints, list_recover_points

    base = Path(fileroot) / "checkpoints" / (user or getpass.getuser())
    trials = sorted(p for p in base.glob(f"{experiment or '*'}/{trial or '*'}") if p.is_dir())
    if not trials:
        err.print(f"no runs under {base}" + (f"/{experiment}" if experiment else ""))
        raise typer.Exit(1)
    table = Table(title=f"checkpoints under {base}")
    for col in (
        "experiment",
        "trial",
        "kind",
        "epoch",
        "epoch step",
        "global step",
        "saved",
        "valid",
        "folder",
    ):
        table.add_column(col, overflow="fold")
    for run_dir in trials:
        for c in [*list_hf_checkpoints(run_dir), *list_recover_points(run_dir)]:
            saved = _time.strftime("%m-%d %H:%M", _time.localtime(c.time)) if c.time else "-"
            valid = "[green]yes[/green]" if c.valid else f"[red]no[/red] ({escape(c.problem)})"
            table.add_row(
                run_dir.parent.name,
                run_dir.name,
                c.kind,
                str(c.epoch),
                str(c.epoch_step),
                str(c.global_step),
                saved,
                valid,
                str(c.path.relative_to(run_dir)),
            )
    out.print(table)


# ----------------------------------------------------------------------- doctor


@app.command()
def doctor(
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


_COMMANDS_ADDED = False


def main() -> None:
    """Entry point: add plugin commands, then run."""
    global _COMMANDS_ADDED
    if not _COMMANDS_ADDED:
        try:
            get_host().add_commands(app)
        except PluginError as e:
            err.print(f"[red]error:[/red] {escape(str(e))}")
            raise SystemExit(2) from None
        _COMMANDS_ADDED = True
    from grpo_plug import launch

    if not launch.under_torchrun():
        app()
        return
    try:
        app()
        code = 0
    except SystemExit as e:
        code = launch.exit_code(e)
    launch.end_rank(code)
