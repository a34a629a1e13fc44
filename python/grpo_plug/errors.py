"""Every error grpo-plug raises on purpose, under one base.

A :class:`GrpoPlugError` is the user's (or a plugin's) to fix: its message names the
culprit (key, plugin, file, server) and the CLI prints it as one line, exit status 2.
Anything else that escapes is a bug and keeps its traceback. The built-in Python
bases (``ValueError``, ``RuntimeError``, ``KeyError``) stay for callers that already
catch those. This module imports nothing, so every room can use it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class GrpoPlugError(Exception):
    """Base of every error the CLI reports as one line naming its culprit."""


def did_you_mean(word: str, choices: Iterable[str], *, cutoff: float = 0.6) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or ``""``."""
    hint = difflib.get_close_matches(word, [str(c) for c in choices], n=1, cutoff=cutoff)
    return f" (did you mean {hint[0]!r}?)" if hint else ""


# ----------------------------------------------------------------- config and set-up


class ConfigError(GrpoPlugError, ValueError):
    """A configuration problem; the message names the offending key."""


class SetupError(GrpoPlugError, RuntimeError):
    """The run cannot start on this machine or with this config; says why."""


class DataError(GrpoPlugError, ValueError):
    """A malformed dataset; the message names the file and line."""


class ModelError(GrpoPlugError, ValueError):
    """The model could not be found or loaded; the message says which and why."""


class CheckpointError(GrpoPlugError, RuntimeError):
    """A checkpoint is missing, corrupted or from another config; the message says which."""


# ----------------------------------------------------------------- plugins


class PluginError(GrpoPlugError, RuntimeError):
    """A plugin problem; the message names the plugin."""


class DuplicateComponentError(PluginError):
    """Two plugins registered the same name in one registry."""


class UnknownComponentError(PluginError, KeyError):
    """A name no registered component has."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class RewardError(PluginError):
    """A reward function raised or answered with the wrong shape or type."""


# ----------------------------------------------------------------- during a run


class RequestFailed(GrpoPlugError, RuntimeError):
    """A backend call failed; ``retryable`` says whether trying again may help
    (connection lost, 5xx, malformed reply) or not (400: the request itself is bad)."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class RolloutError(GrpoPlugError, RuntimeError):
    """A rollout could not be completed; the message names the request and the cause."""


class ServerError(GrpoPlugError, RuntimeError):
    """A server could not be started or died; the message names its log file."""


class WeightSyncError(GrpoPlugError, RuntimeError):
    """A sync failed or the servers' weights differ from the learner's after it."""


class ZeroRewardError(GrpoPlugError, RuntimeError):
    """Task reward stayed at 0 while servers reported errors: the run stops."""


class OutOfMemory(GrpoPlugError, RuntimeError):
    """The learner ran out of memory; the message says which knobs to lower."""


# ----------------------------------------------------------------- the Rust core


class CoreError(GrpoPlugError, ValueError):
    """An error from the Rust core (``grpo_plug._core``)."""


class CoreInputError(CoreError):
    """The Rust core refused its input (a shape, a length, a value out of range)."""


class PackingInfeasible(CoreError):
    """A sequence does not fit the micro-batch token budget (``actor.mb_max_tokens``)."""


class CoreInternalError(RuntimeError):
    """The Rust core hit a state it should never reach (a caught panic): a bug, so not a
    :class:`GrpoPlugError`; it keeps its traceback. Please report it."""
