"""The dress rehearsal, ``grpo-plug train --rehearse``: a config's real process layout
on this CPU, cut to a few short steps, ending with a checklist.

:mod:`.shrink` cuts the config (pure config -> config, every change listed),
:mod:`.model` picks the model (a tiny one shaped like ``actor.path``, or the embedded
one), :mod:`.run` runs it as ``grpo-plug train --config`` (twice with recover points:
a Ctrl-C, then the resume) and :mod:`.checklist` reads the runs' events into the
checklist.
"""

from grpo_plug.rehearsal.checklist import Leg, Stage, stages
from grpo_plug.rehearsal.run import cuts, describe, prepare, rehearse
from grpo_plug.rehearsal.shrink import STEPS, Change, Shrunk, gpu_only, shrink, target_layout

__all__ = [
    "STEPS",
    "Change",
    "Leg",
    "Shrunk",
    "Stage",
    "cuts",
    "describe",
    "gpu_only",
    "prepare",
    "rehearse",
    "shrink",
    "stages",
    "target_layout",
]
