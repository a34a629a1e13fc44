//! `grpo_plug._core`: thin PyO3 bindings over `grpo-core`.
//!
//! Every call copies its Python inputs into owned Rust values first, then
//! runs with the GIL released; batch work runs on a dedicated rayon pool
//! (see `pool.rs`). Panics are caught and raised as `InternalError`; all
//! other errors are mapped in `error.rs`. The public, typed API is
//! `grpo_plug.core`; the stub `_core.pyi` mirrors this module exactly.

mod convert;
mod error;
mod pool;

use std::panic::{catch_unwind, AssertUnwindSafe};

use grpo_core::{AdvantageConfig, AdvantageMode, CoreError, MicroBatch, PackInput};
use numpy::{PyArray1, PyReadonlyArray1};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

use crate::error::{core_error, panic_error, InternalError};

/// Below this many rewards, advantages run on the calling thread.
const ADVANTAGES_PARALLEL_MIN: usize = 1 << 16;

/// Run `f` without the GIL on the calling thread, catching panics.
fn detached<T, F>(py: Python<'_>, f: F) -> PyResult<T>
where
    F: FnOnce() -> Result<T, CoreError> + Send,
    T: Send,
{
    match py.detach(move || catch_unwind(AssertUnwindSafe(f))) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(core_error(e)),
        Err(payload) => Err(panic_error(payload)),
    }
}

/// Run `f` without the GIL on the grpo-core rayon pool, catching panics.
fn parallel<T, F>(py: Python<'_>, f: F) -> PyResult<T>
where
    F: FnOnce() -> Result<T, CoreError> + Send,
    T: Send,
{
    let pool = pool::current().map_err(InternalError::new_err)?;
    detached(py, move || pool.install(f))
}

fn positive(value: i64, name: &str) -> PyResult<usize> {
    match usize::try_from(value) {
        Ok(v) if v >= 1 => Ok(v),
        _ => Err(PyValueError::new_err(format!(
            "{name} must be >= 1, got {value}"
        ))),
    }
}

/// Extract the final answer of one completion, normalised (`"1000"`,
/// `"1/2"`, `"-3.5"`), or None.
#[pyfunction]
fn extract_answer(py: Python<'_>, text: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
    let text = convert::text(text, "text")?;
    detached(py, move || {
        Ok(grpo_core::extract_answer(&text).map(|a| a.to_string()))
    })
}

/// Grade completions against reference answers: float32 array of 1.0 / 0.0.
#[pyfunction]
fn grade<'py>(
    py: Python<'py>,
    completions: &Bound<'py, PyAny>,
    golds: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyArray1<f32>>> {
    if let (Ok(a), Ok(b)) = (completions.len(), golds.len()) {
        if a != b {
            return Err(core_error(CoreError::LengthMismatch {
                what: "completions and golds".into(),
                left: a,
                right: b,
            }));
        }
    }
    let completions = convert::text_batch(completions, "completions")?;
    let golds = match convert::text_batch(golds, "golds") {
        Ok(g) => g,
        Err(e) => {
            convert::TEXT_SPARES.give(completions);
            return Err(e);
        }
    };
    let (scores, completions, golds) = parallel(py, move || {
        let scores = grpo_core::grade_batch(&completions, &golds);
        Ok((scores, completions, golds))
    })?;
    convert::TEXT_SPARES.give(completions);
    convert::TEXT_SPARES.give(golds);
    let scores = scores.map_err(core_error)?;
    Ok(PyArray1::from_vec(py, scores))
}

/// Group-relative advantages (float32) of float32 or float64 rewards.
#[pyfunction]
fn group_advantages<'py>(
    py: Python<'py>,
    rewards: &Bound<'py, PyAny>,
    group_size: i64,
    mode: &str,
    eps: f64,
    normalize_batch: bool,
) -> PyResult<Bound<'py, PyArray1<f32>>> {
    let mode: AdvantageMode = mode.parse().map_err(core_error)?;
    let group_size = positive(group_size, "group_size")?;
    let rewards = convert::float64_values(rewards, "rewards")?;
    let cfg = AdvantageConfig {
        mode,
        eps,
        normalize_batch,
    };
    // Parallelism only pays off for large batches; the result is the same.
    let big = rewards.len() >= ADVANTAGES_PARALLEL_MIN;
    let work = move || grpo_core::group_advantages(&rewards, group_size, &cfg);
    let out = if big {
        parallel(py, work)?
    } else {
        detached(py, work)?
    };
    Ok(PyArray1::from_vec(py, out))
}

/// Set the number of worker threads for batch calls (1 turns parallelism
/// off; 0 restores the default).
#[pyfunction]
fn set_num_threads(n: i64) -> PyResult<()> {
    let n = usize::try_from(n)
        .map_err(|_| PyValueError::new_err(format!("n must be >= 0, got {n}")))?;
    pool::set_num_threads(n);
    Ok(())
}

/// The number of worker threads batch calls use.
#[pyfunction]
fn get_num_threads() -> usize {
    pool::get_num_threads()
}

type MicroBatchTuple<'py> = (
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<f32>>,
    Bound<'py, PyArray1<f32>>,
    Bound<'py, PyArray1<f32>>,
    Bound<'py, PyArray1<i32>>,
    Bound<'py, PyArray1<i64>>,
);

fn micro_batch_tuple(py: Python<'_>, mb: MicroBatch) -> MicroBatchTuple<'_> {
    (
        PyArray1::from_vec(py, mb.input_ids),
        PyArray1::from_vec(py, mb.position_ids),
        PyArray1::from_vec(py, mb.loss_mask),
        PyArray1::from_vec(py, mb.old_logprobs),
        PyArray1::from_vec(py, mb.advantages),
        PyArray1::from_vec(py, mb.cu_seqlens),
        PyArray1::from_vec(py, mb.seq_indices),
    )
}

/// Pack sequences into micro-batches: `[rank][micro_batch]` tuples of
/// `(input_ids, position_ids, loss_mask, old_logprobs, advantages,
/// cu_seqlens, seq_indices)`.
#[pyfunction]
fn pack_microbatches<'py>(
    py: Python<'py>,
    prompt_ids: &Bound<'py, PyAny>,
    completion_ids: &Bound<'py, PyAny>,
    completion_logprobs: &Bound<'py, PyAny>,
    advantages: PyReadonlyArray1<'py, f64>,
    max_tokens: i64,
    n_ranks: i64,
) -> PyResult<Bound<'py, PyList>> {
    let max_tokens = positive(max_tokens, "max_tokens")?;
    let n_ranks = positive(n_ranks, "n_ranks")?;
    let input = PackInput {
        prompt_ids: convert::int_rows(prompt_ids, "prompt_ids")?,
        completion_ids: convert::int_rows(completion_ids, "completion_ids")?,
        completion_logprobs: convert::float_rows(completion_logprobs, "completion_logprobs")?,
        advantages: match advantages.as_slice() {
            Ok(s) => s.to_vec(),
            Err(_) => advantages.as_array().to_vec(),
        },
    };
    let (ranks, input) = parallel(py, move || {
        let ranks = grpo_core::pack_microbatches(&input, max_tokens, n_ranks);
        Ok((ranks, input))
    })?;
    convert::INT_SPARES.give(input.prompt_ids);
    convert::INT_SPARES.give(input.completion_ids);
    convert::FLOAT_SPARES.give(input.completion_logprobs);
    let ranks = ranks.map_err(core_error)?;
    let out = PyList::empty(py);
    for rank in ranks {
        let items: Vec<Bound<'py, PyTuple>> = rank
            .into_iter()
            .map(|mb| micro_batch_tuple(py, mb).into_pyobject(py))
            .collect::<PyResult<_>>()?;
        out.append(PyList::new(py, items)?)?;
    }
    Ok(out)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("InternalError", m.py().get_type::<InternalError>())?;
    m.add_function(wrap_pyfunction!(extract_answer, m)?)?;
    m.add_function(wrap_pyfunction!(grade, m)?)?;
    m.add_function(wrap_pyfunction!(group_advantages, m)?)?;
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(get_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(pack_microbatches, m)?)?;
    Ok(())
}
