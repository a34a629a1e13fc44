"""``grpo-plug train`` (one process, or torchrun's ranks) and ``grpo-plug eval``."""

from __future__ import annotations

import dataclasses
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from grpo_plug import config as cfgmod
from grpo_plug.cli import metrics as metric_commands
from grpo_plug.cli.io import err, out
from grpo_plug.cli.options import (
    ConfigOpt,
    DebugOpt,
    DialectOpt,
    NoTuiOpt,
    OverridesArg,
    PresetOpt,
    wants_debug,
)
from grpo_plug.cli.summary import print_category_rows, print_summary
from grpo_plug.errors import GrpoPlugError
from grpo_plug.plugins import get_host
from grpo_plug.types import Example, RolloutBackend, RolloutContext, Task

DryRunOpt = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="Print the processes and devices the allocation would use; start nothing.",
    ),
]
RehearseOpt = Annotated[
    bool,
    typer.Option(
        "--rehearse",
        help="Dress rehearsal on this CPU: the config's servers, learner ranks, weight "
        "sync, data, eval, save and recover schedule, watchdog and Ctrl-C, with a small "
        "model and two short steps; ends with a checklist (exit 0 when every stage ran).",
    ),
]


def train(
    preset: PresetOpt = None,
    config: ConfigOpt = None,
    overrides: OverridesArg = None,
    no_tui: NoTuiOpt = False,
    dry_run: DryRunOpt = False,
    rehearse: RehearseOpt = False,
    debug: DebugOpt = False,
    dialect: DialectOpt = "auto",
) -> None:
    """Train with GRPO: `grpo-plug train --preset cpu` runs anywhere, no GPU needed."""
    from grpo_plug import launch, threads

    debug = debug or wants_debug()
    tui = metric_commands.wants_tui(sys.stdout, no_tui)
    name = preset if preset or config else "cpu"
    try:
        got = cfgmod.load_verbose(
            preset=name, config_file=config, overrides=overrides or [], dialect=dialect
        )
        cfg = got.config
        if got.translation is not None and not launch.under_torchrun():
            for note in got.translation.notes:  # e.g. an unset ${oc.env:WANDB_API_KEY}
                err.print(f"note: {escape(note)}")
        source = ["--config", str(config)] if config else ["--preset", name]
        source += ["--dialect", dialect] if config and dialect != "auto" else []
        train_args = [*source, *(overrides or []), *(["--no-tui"] if no_tui else [])]
        if rehearse:
            raise typer.Exit(_rehearse(cfg, config, name, dry_run=dry_run, debug=debug))
        thread_plan = threads.plan_for(cfg)
        if dry_run:
            from grpo_plug.plan import resolve as resolve_plan

            plan_lines = "\n".join(f"  {line}" for line in resolve_plan(cfg).lines())
            text = (
                f"{launch.describe(launch.plan(cfg, train_args))}\n{thread_plan.describe()}\n"
                f"run plan:\n{plan_lines}"
            )
            out.print(escape(text), highlight=False)
            return
    except GrpoPlugError as e:
        if debug:
            raise
        err.print(f"[red]error:[/red] {escape(str(e))}")
        raise typer.Exit(2) from None
    # Before torch loads (OpenMP reads its wait policy once); undone after the run.
    with threads.exported(thread_plan):
        _train(cfg, name, config, train_args, tui=tui, debug=debug)


def _rehearse(
    cfg: cfgmod.TrainConfig, config: Path | None, name: str | None, *, dry_run: bool, debug: bool
) -> int:
    """``--rehearse``: the config's layout on this CPU, shrunk (grpo_plug.rehearsal)."""
    from grpo_plug import rehearsal

    registry = get_host().weight_sync_strategies()
    auto: dict[str, str] = {}
    for layout in ("colocated", "one-device", "devices"):
        found = registry.with_trait(f"auto:{layout}")
        if len(found) == 1:
            auto[layout] = found[0].name
    return rehearsal.rehearse(
        cfg,
        label=str(config) if config else f"--preset {name}",
        auto=auto,
        say=lambda line: out.print(escape(line), highlight=False),
        dry_run=dry_run,
        debug=debug,
    )


def _train(
    cfg: cfgmod.TrainConfig,
    name: str | None,
    config: Path | None,
    train_args: list[str],
    *,
    tui: bool,
    debug: bool,
) -> None:
    """Start torchrun's ranks, follow rank 0, or train here; one line per error."""
    from grpo_plug import launch
    from grpo_plug.cli import interactive

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
            terminal = {e.name for e in get_host().loggers().with_trait("terminal")}
            loggers_cfg = dataclasses.replace(
                cfg, loggers=[n for n in cfg.loggers if n not in terminal]
            )
            out.print(f"grpo-plug: loading {cfg.actor.path} for the {name} run...")
        trainer = Trainer(loggers_cfg, preset=None if config else name, quiet=tui)
    except GrpoPlugError as e:
        if debug:
            raise
        err.print(f"[red]error:[/red] {escape(str(e))}")
        raise typer.Exit(2) from None
    try:
        summary = interactive.run(trainer, tui=tui, console=out)
    except GrpoPlugError as e:
        if debug:
            raise
        # One line: the culprit (the message names it) and what a rerun will do.
        note = trainer.checkpointer.rerun_note()
        err.print(
            f"[red]error:[/red] {escape(str(e))} [dim]({escape(note)}, after fixing the cause: "
            f"{escape(interactive.resume_command())})[/dim]"
        )
        raise typer.Exit(2) from None
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
    from grpo_plug.errors import OutOfMemory
    from grpo_plug.learner.ranks import follow

    try:
        follow(cfg)
    except OutOfMemory as e:
        err.print(f"[red]error:[/red] {escape(str(e))}")
        raise typer.Exit(1) from None


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
            help="Task knobs as dataset keys, e.g. arith_style=plain (shuffle=true: a seeded "
            "random sample of --max-samples); train_dataset.arith_*=...: the training "
            "problems an arith held-out set leaves out.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Greedy accuracy of a checkpoint; writes every prediction to JSONL."""
    from rich.progress import Progress

    from grpo_plug.evaluation import evaluate, write_jsonl

    try:
        task_obj, examples, tok, backend = _eval_inputs(
            model_path,
            task=task,
            data=data,
            split=split,
            max_samples=max_samples,
            batch_size=batch_size,
            seed=seed,
            overrides=overrides or [],
        )
    except GrpoPlugError as e:
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
    path = output or Path(f"eval_{task}.jsonl")
    write_jsonl(path, res.records)
    out.print(
        f"accuracy {100 * res.accuracy:.1f}% ({sum(r['correct'] for r in res.records)}"
        f"/{res.n}) on {task} {split}; predictions in {path}"
    )
    print_category_rows(res.records)


def _eval_inputs(
    model_path: str,
    *,
    task: str,
    data: str | None,
    split: str,
    max_samples: int | None,
    batch_size: int,
    seed: int,
    overrides: list[str],
) -> tuple[Task, list[Example], Any, RolloutBackend]:
    """``eval``'s task, its examples, the tokenizer and the rollout backend with the
    model loaded (on CUDA when there is one)."""
    import torch

    from grpo_plug.data.tasks import build_task, held_out_dataset, held_out_examples
    from grpo_plug.models import load_model, load_tokenizer

    base = {"task": task, "path": data, "split": split, "max_samples": max_samples}
    keys = [o if o.startswith("train_dataset.") else f"valid_dataset.{o}" for o in overrides]
    eval_cfg = cfgmod.from_dict(cfgmod.apply_overrides({"valid_dataset": base}, keys))
    ds = eval_cfg.valid_dataset
    task_obj = build_task(get_host().tasks().get(task), held_out_dataset(ds), seed, eval_cfg)
    examples = held_out_examples(task_obj, ds, seed)
    tok = load_tokenizer(model_path)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_model(model_path, device=device)
    # The default config's backend, through the registry: eval names no built-in.
    run_cfg = cfgmod.from_dict({"rollout": {"max_batch_size": batch_size}})
    ctx = RolloutContext(tokenizer=tok, model=model, device=device)
    backend = get_host().rollout_backends().get(run_cfg.rollout.backend)(run_cfg, ctx)
    return task_obj, examples, tok, backend
