"""Logger ``csv_table``: a wide CSV file, one row per step and one column per metric.

- A metric name seen for the first time adds a column; the file is rewritten (to a
  temporary file, then renamed) with the earlier rows kept, their new cells empty.
- Every other step appends one line and flushes it (and fsyncs), so the file is
  complete up to the last step even if the process is killed.
- A row logged for the step of the previous row (the evaluation after a training
  step) is merged into it: one row per step.
- A run that starts where the file exists reads it back and appends; ``resume(step)``
  (after a recover point is restored) drops the rows logged after that step.

Keys ``csv_table.*``: ``filename`` (in the run's log folder) and ``prefix``.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from grpo_plug.api import ComponentRegistry, LoggerFactory, RunInfo, TrainConfig, hookimpl, option

STEP = "global_step"
EPOCH = "epoch"
FIXED = (STEP, EPOCH)


@dataclass
class CsvTableConfig:
    """Keys ``csv_table.*`` (see ``grpo-plug config keys``)."""

    filename: str = option("metrics_table.csv", "csv_table logger: file in the run's log folder.")
    prefix: str = option("", "csv_table logger: only metrics whose names start with this.")


def _cell(value: float) -> str:
    return repr(float(value))  # round-trips exactly; nan and inf as Python writes them


class CsvTableLogger:
    """One CSV row per step, one column per metric, columns grown as metrics appear."""

    name = "csv_table"

    def __init__(self, cfg: TrainConfig, run: RunInfo) -> None:
        settings = cfg.section(CsvTableConfig)
        self.prefix = settings.prefix
        self.path = Path(run.log_dir) / settings.filename
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.columns: list[str] = []  # metric columns, in order of first appearance
        self.rows: list[dict[str, str]] = []
        self._fh: IO[str] | None = None
        if self.path.exists():
            torn = self._read()
            if torn:
                self._rewrite()
        else:
            self._rewrite()

    # -- the file --------------------------------------------------------------------

    def _read(self) -> bool:
        """Load the existing file; True when a torn line (a crash mid-write) was dropped."""
        with self.path.open(newline="", encoding="utf-8") as fh:
            records = list(csv.reader(fh))
        if not records:
            return True
        header = records[0]
        if tuple(header[:2]) != FIXED or len(set(header)) != len(header):
            raise ValueError(
                f"{self.path}: not a csv_table file (header starts {header[:3]}); "
                "set csv_table.filename to another file"
            )
        self.columns = header[2:]
        torn = False
        for record in records[1:]:
            if len(record) != len(header) or not record[0].isdigit():
                torn = True
                continue
            self.rows.append(dict(zip(header, record, strict=True)))
        return torn

    def _line(self, row: Mapping[str, str]) -> str:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(
            [row.get(c, "") for c in (*FIXED, *self.columns)]
        )
        return buf.getvalue()

    def _rewrite(self) -> None:
        """The whole table, written to a temporary file and renamed over the old one."""
        if self._fh is not None:
            self._fh.close()
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w", newline="", encoding="utf-8") as fh:
            fh.write(self._line({c: c for c in (*FIXED, *self.columns)}))
            fh.writelines(self._line(r) for r in self.rows)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        self._fh = self.path.open("a", newline="", encoding="utf-8")

    def _append(self, row: Mapping[str, str]) -> None:
        if self._fh is None:
            self._fh = self.path.open("a", newline="", encoding="utf-8")
        self._fh.write(self._line(row))
        self._fh.flush()
        os.fsync(self._fh.fileno())

    # -- the Logger interface ------------------------------------------------------------

    def log(self, metrics: Mapping[str, float], step: int, epoch: int) -> None:
        cells = {k: _cell(v) for k, v in metrics.items() if k.startswith(self.prefix)}
        new = sorted(k for k in cells if k not in self.columns)
        self.columns.extend(new)
        if self.rows and self.rows[-1][STEP] == str(step):  # evaluation of the step just logged
            self.rows[-1].update(cells)
            self._rewrite()
            return
        row = {STEP: str(step), EPOCH: str(epoch), **cells}
        self.rows.append(row)
        if new:
            self._rewrite()
        else:
            self._append(row)

    def message(self, text: str) -> None:
        pass  # status lines are not metrics

    def resume(self, global_step: int) -> None:
        """Drop the rows logged after ``global_step`` (and columns only they had)."""
        self.rows = [r for r in self.rows if int(r[STEP]) <= global_step]
        self.columns = [c for c in self.columns if any(r.get(c) for r in self.rows)]
        self._rewrite()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


@hookimpl
def register_loggers(registry: ComponentRegistry[LoggerFactory]) -> None:
    registry.register("csv_table", CsvTableLogger, config=CsvTableConfig)
