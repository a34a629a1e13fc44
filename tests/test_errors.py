"""One error family: every error grpo-plug raises on purpose derives from GrpoPlugError,
and the Rust core's errors arrive as specific classes, not a bare ValueError."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from grpo_plug import api, core, errors
from grpo_plug.errors import (
    CoreInputError,
    CoreInternalError,
    GrpoPlugError,
    PackingInfeasible,
    did_you_mean,
)


def test_every_error_class_but_a_core_bug_is_in_the_family() -> None:
    classes = [
        c
        for _, c in inspect.getmembers(errors, inspect.isclass)
        if issubclass(c, BaseException) and c.__module__ == errors.__name__
    ]
    assert len(classes) >= 18
    outside = [c.__name__ for c in classes if not issubclass(c, GrpoPlugError)]
    assert outside == ["CoreInternalError"]  # a bug keeps its traceback
    assert api.GrpoPlugError is GrpoPlugError
    assert issubclass(api.PluginError, GrpoPlugError)


def test_a_packing_that_cannot_fit_is_its_own_class() -> None:
    with pytest.raises(PackingInfeasible, match="same number of micro-batches"):
        core.pack_microbatches([[1]], [[2]], [[0.0]], np.array([1.0]), max_tokens=8, n_ranks=2)


def test_bad_input_to_the_core_is_an_input_error_and_still_a_value_error() -> None:
    with pytest.raises(CoreInputError, match="not divisible by group_size") as info:
        core.group_advantages(np.array([1.0, 2.0, 3.0], dtype=np.float32), 2)
    assert isinstance(info.value, ValueError)
    assert not isinstance(info.value, PackingInfeasible)
    assert core.InternalError is CoreInternalError


def test_did_you_mean() -> None:
    assert did_you_mean("actor.lrr", ["actor.lr", "seed"]) == " (did you mean 'actor.lr'?)"
    assert did_you_mean("zzz", ["actor.lr"]) == ""
