"""grpo_plug.core.group_advantages against a NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from grpo_plug import core


def reference(
    rewards: np.ndarray, g: int, mode: str, eps: float = 1e-6, normalize_batch: bool = False
) -> np.ndarray:
    r = rewards.astype(np.float64).reshape(-1, g)
    mean = r.mean(axis=1, keepdims=True)
    uniform = (r == r[:, :1]).all(axis=1, keepdims=True)
    centred = r - mean
    if mode == "rloo":
        centred = centred * (g / (g - 1)) if g > 1 else np.zeros_like(r)
    elif mode == "grpo" and not normalize_batch:
        std = r.std(axis=1, ddof=1, keepdims=True) if g > 1 else np.zeros_like(mean)
        centred = centred / (std + eps)
    centred = np.where(uniform, 0.0, centred)
    if normalize_batch:
        flat = centred.reshape(-1)
        std = flat.std(ddof=1) if flat.size > 1 else 0.0
        centred = np.zeros_like(centred) if std == 0 else centred / (std + eps)
    return centred.reshape(-1).astype(np.float32)


@given(
    groups=st.integers(1, 30),
    g=st.integers(1, 9),
    mode=st.sampled_from(["grpo", "dr_grpo", "rloo"]),
    normalize_batch=st.booleans(),
    binary=st.booleans(),
    data=st.data(),
)
@settings(max_examples=300, deadline=None)
def test_matches_reference(
    groups: int, g: int, mode: str, normalize_batch: bool, binary: bool, data: st.DataObject
) -> None:
    elems = st.sampled_from([0.0, 1.0]) if binary else st.floats(-100, 100, width=32)
    rewards = data.draw(hnp.arrays(np.float64, groups * g, elements=elems))
    got = core.group_advantages(rewards, g, mode=mode, normalize_batch=normalize_batch)
    want = reference(rewards, g, mode, normalize_batch=normalize_batch)
    assert got.dtype == np.float32
    assert got.shape == rewards.shape
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # zero mean per group, exact zeros for uniform groups
    per_group = got.reshape(-1, g).astype(np.float64)
    assert np.all(np.abs(per_group.mean(axis=1)) < 1e-3 * (1 + np.abs(per_group).max()))
    uniform = (rewards.reshape(-1, g) == rewards.reshape(-1, g)[:, :1]).all(axis=1)
    assert np.all(per_group[uniform] == 0.0)


def test_examples() -> None:
    a = core.group_advantages([1.0, 0.0, 0.0, 0.0], 4)
    np.testing.assert_allclose(a, [1.5, -0.5, -0.5, -0.5], rtol=1e-5)
    assert core.group_advantages([1, 0, 1, 1], 2, mode="dr_grpo").tolist() == [0.5, -0.5, 0, 0]
    assert core.group_advantages([1, 0], 2, mode="rloo").tolist() == [1.0, -1.0]
    assert core.group_advantages(np.ones(8, dtype=np.float32), 4).tolist() == [0.0] * 8
    assert core.group_advantages([], 3).shape == (0,)


def test_errors() -> None:
    with pytest.raises(ValueError, match="divisible"):
        core.group_advantages([1.0, 2.0, 3.0], 2)
    with pytest.raises(ValueError, match=r"rewards\[1\]"):
        core.group_advantages([1.0, float("nan")], 2)
    with pytest.raises(ValueError, match="ppo"):
        core.group_advantages([1.0, 2.0], 2, mode="ppo")
    with pytest.raises(ValueError, match="group_size"):
        core.group_advantages([1.0, 2.0], 0)
    with pytest.raises(ValueError, match="eps"):
        core.group_advantages([1.0, 2.0], 2, eps=-1.0)
    with pytest.raises(ValueError, match="1-D"):
        core.group_advantages([[1.0, 2.0]], 2)


def test_large_batch_is_thread_independent() -> None:
    rng = np.random.default_rng(0)
    rewards = rng.integers(0, 2, size=1 << 17).astype(np.float64)
    before = core.get_num_threads()
    try:
        core.set_num_threads(1)
        one = core.group_advantages(rewards, 8, normalize_batch=True)
        core.set_num_threads(2)
        two = core.group_advantages(rewards, 8, normalize_batch=True)
    finally:
        core.set_num_threads(before)
    assert np.array_equal(one, two)
    np.testing.assert_allclose(
        one, reference(rewards, 8, "grpo", normalize_batch=True), rtol=1e-5, atol=1e-6
    )


def test_input_dtypes() -> None:
    want = core.group_advantages(np.array([1.0, 0.0, 1.0, 1.0]), 2)
    for rewards in (
        np.array([1, 0, 1, 1], dtype=np.float32),
        np.array([1, 0, 1, 1], dtype=np.int64),
        np.array([True, False, True, True]),
        [1, 0, 1, 1],
        (1.0, 0.0, 1.0, 1.0),
        np.array([1.0, 9.0, 0.0, 9.0, 1.0, 9.0, 1.0, 9.0])[::2],  # not contiguous
        np.array([1, 9, 0, 9, 1, 9, 1, 9], dtype=np.float32)[::2],
        np.array([1, 0, 1, 1], dtype=np.float16),
    ):
        assert np.array_equal(core.group_advantages(rewards, 2), want), rewards


def test_matches_numpy_bit_for_bit_on_dense_rewards() -> None:
    rng = np.random.default_rng(3)
    rewards = rng.normal(size=8192)
    got = core.group_advantages(rewards, 8, mode="dr_grpo")
    want = (rewards.reshape(-1, 8) - rewards.reshape(-1, 8).mean(axis=1, keepdims=True)).reshape(-1)
    assert np.array_equal(got, want.astype(np.float32))
