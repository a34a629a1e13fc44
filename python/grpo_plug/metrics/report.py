"""``grpo-plug report``: PNG plots and a Markdown summary of one or more runs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grpo_plug.metrics import names as m
from grpo_plug.metrics.run import RunState, read_run


@dataclass
class RunSummary:
    label: str
    steps: int
    accuracy_before: float | None
    accuracy_after: float | None
    best_eval: float | None
    best_step: int | None
    best_checkpoint: str | None
    seconds: float | None
    tokens: float
    peak_rss_gb: float | None


def run_label(log_dir: Path) -> str:
    """``experiment/trial`` from ``{fileroot}/logs/{user}/{experiment}/{trial}``."""
    parts = log_dir.resolve().parts
    return "/".join(parts[-2:]) if len(parts) >= 2 else str(log_dir)


def _checkpoint_at(log_dir: Path, step: int) -> str | None:
    """The HF checkpoint a run saved at ``step``, if it saved one (the seed's layout)."""
    parts = log_dir.resolve().parts
    if "logs" not in parts:
        return None
    i = len(parts) - 1 - parts[::-1].index("logs")
    ckpt_root = Path(*parts[:i], "checkpoints", *parts[i + 1 :], "default")
    found = sorted(ckpt_root.glob(f"epoch*epochstep*globalstep{step}"))
    return str(found[-1]) if found else None


def summarise(st: RunState) -> RunSummary:
    evals = st.series(m.EVAL_ACCURACY)
    saved: dict[str, Any] = {}
    summary_file = st.log_dir / "summary.json"
    if summary_file.is_file():
        saved = json.loads(summary_file.read_text())
    best_step, best = max(evals, key=lambda e: (e[1], -e[0])) if evals else (None, None)
    steps = st.steps()
    tokens = sum(r.get(m.GEN_TOKENS_PER_S, 0.0) * r.get(m.TIME_ROLLOUT, 0.0) for r in steps)
    rss = [v for _, v in st.series(m.PEAK_RSS_GB)]
    seconds = saved.get("seconds")
    if seconds is None and len(st.rows) >= 2:
        seconds = float(st.rows[-1]["timestamp"]) - float(st.rows[0]["timestamp"])
    return RunSummary(
        label=run_label(st.log_dir),
        steps=st.global_step,
        accuracy_before=saved.get("accuracy_before", evals[0][1] if evals else None),
        accuracy_after=saved.get("accuracy_after", evals[-1][1] if len(evals) > 1 else None),
        best_eval=best,
        best_step=best_step,
        best_checkpoint=_checkpoint_at(st.log_dir, best_step) if best_step is not None else None,
        seconds=seconds,
        tokens=tokens,
        peak_rss_gb=max(rss) if rss else saved.get("peak_rss_gb"),
    )


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def markdown(summaries: list[RunSummary]) -> str:
    lines = [
        "# grpo-plug report",
        "",
        "| run | steps | accuracy before | after | best eval (step) | best checkpoint "
        "| time | tokens generated | peak memory |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        best = f"{_pct(s.best_eval)} ({s.best_step})" if s.best_eval is not None else "-"
        lines.append(
            f"| {s.label} | {s.steps} | {_pct(s.accuracy_before)} | {_pct(s.accuracy_after)} "
            f"| {best} | {s.best_checkpoint or '-'} "
            f"| {'-' if s.seconds is None else f'{s.seconds / 60:.1f} min'} "
            f"| {s.tokens:,.0f} "
            f"| {'-' if s.peak_rss_gb is None else f'{s.peak_rss_gb:.2f} GiB'} |"
        )
    return "\n".join(lines) + "\n"


def plot(runs: list[RunState], out: Path) -> dict[Path, list[str]]:
    """One PNG per entry of ``names.PLOTS`` with every run on the same axes; returns
    each file written with the labels of the series drawn in it."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    written: dict[Path, list[str]] = {}
    for stem, title, keys in m.PLOTS:
        fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
        drawn: list[str] = []
        for st in runs:
            for key in keys:
                pts = st.series(key)
                if not pts:
                    continue
                label = (
                    run_label(st.log_dir) if len(keys) == 1 else f"{run_label(st.log_dir)} {key}"
                )
                marker = "o" if key == m.EVAL_ACCURACY else None
                ax.plot([p[0] for p in pts], [p[1] for p in pts], label=label, marker=marker)
                drawn.append(label)
        if not drawn:
            plt.close(fig)
            continue
        ax.set_title(title)
        ax.set_xlabel("global step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / f"{stem}.png"
        fig.savefig(path)
        plt.close(fig)
        written[path] = drawn
    return written


def write_report(log_dirs: list[Path], out: Path) -> tuple[dict[Path, list[str]], Path]:
    """Plots and ``report.md`` for the runs in ``log_dirs``; returns what was written."""
    runs = [read_run(d) for d in log_dirs]
    out.mkdir(parents=True, exist_ok=True)
    pngs = plot(runs, out)
    md = out / "report.md"
    body = markdown([summarise(r) for r in runs])
    body += "\n" + "".join(f"![{p.stem}]({p.name})\n" for p in pngs)
    md.write_text(body)
    return pngs, md
