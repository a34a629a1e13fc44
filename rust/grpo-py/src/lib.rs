//! `grpo_plug._core`: thin PyO3 bindings over `grpo-core`.
//!
//! Every call copies its Python inputs into owned Rust values first, then
//! runs with the GIL released; batch work runs on a dedicated rayon pool
//! (see `pool.rs`). Panics are caught and raised as `InternalError`; all
//! other errors are mapped in `error.rs`. The public, typed API is
//! `grpo_plug.core`; the stub `_core.pyi` mirrors this module exactly.

mod buffers;
mod convert;
mod error;
mod pool;

use std::panic::{catch_unwind, AssertUnwindSafe};

use grpo_core::{AdvantageConfig, AdvantageMode, CoreError, PackInput, Packed};
use numpy::{PyArray1, PyReadonlyArray1};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

use crate::buffers::{F32_POOL, I64_POOL};
use crate::error::{core_error, panic_error, InfeasibleError, InputError, InternalError};

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
/// With `literal_only`, answers computed inside a box are refused.
#[pyfunction]
fn grade<'py>(
    py: Python<'py>,
    completions: &Bound<'py, PyAny>,
    golds: &Bound<'py, PyAny>,
    literal_only: bool,
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
        let opts = grpo_core::GradeOptions { literal_only };
        let scores = grpo_core::grade_batch(&completions, &golds, opts);
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
    let cfg = AdvantageConfig {
        mode,
        eps,
        normalize_batch,
    };
    let out = match convert::float_values(rewards, "rewards")? {
        convert::Floats::F32(r) => match r.as_slice() {
            Ok(s) => advantages_of(py, s, group_size, &cfg)?,
            Err(_) => advantages_of(py, &r.as_array().to_vec(), group_size, &cfg)?,
        },
        convert::Floats::F64(r) => match r.as_slice() {
            Ok(s) => advantages_of(py, s, group_size, &cfg)?,
            Err(_) => advantages_of(py, &r.as_array().to_vec(), group_size, &cfg)?,
        },
    };
    Ok(PyArray1::from_vec(py, out))
}

/// Read in place (no copy) without the GIL; parallel only for large batches
/// (the result is the same).
fn advantages_of<R: grpo_core::Reward>(
    py: Python<'_>,
    rewards: &[R],
    group_size: usize,
    cfg: &AdvantageConfig,
) -> PyResult<Vec<f32>> {
    let work = move || grpo_core::group_advantages(rewards, group_size, cfg);
    if rewards.len() >= ADVANTAGES_PARALLEL_MIN {
        parallel(py, work)
    } else {
        detached(py, work)
    }
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

/// Pack sequences into micro-batches: `[rank][micro_batch]` tuples of
/// `(input_ids, position_ids, loss_mask, old_logprobs, advantages,
/// cu_seqlens, seq_indices)`. The token fields of all micro-batches are views
/// of one pooled buffer per field (see `buffers.rs`).
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
    let prompts = convert::int_rows(prompt_ids, "prompt_ids")?;
    let completions = convert::int_rows(completion_ids, "completion_ids")?;
    let logprobs = convert::float_rows(completion_logprobs, "completion_logprobs")?;
    let adv_copy;
    let adv = match advantages.as_slice() {
        Ok(s) => s,
        Err(_) => {
            adv_copy = advantages.as_array().to_vec();
            &adv_copy
        }
    };
    let input = PackInput {
        prompt_ids: prompts.slices(),
        completion_ids: completions.slices(),
        completion_logprobs: logprobs.slices(),
        advantages: adv,
    };
    let tokens: usize = (input.prompt_ids.iter())
        .chain(&input.completion_ids)
        .map(|r| r.len())
        .sum();
    let mut packed = Packed {
        input_ids: I64_POOL.take(tokens),
        position_ids: I64_POOL.take(tokens),
        loss_mask: F32_POOL.take(tokens),
        old_logprobs: F32_POOL.take(tokens),
        advantages: F32_POOL.take(tokens),
        ..Packed::default()
    };
    let result = parallel(py, || {
        grpo_core::pack_microbatches_into(&input, max_tokens, n_ranks, &mut packed)
    });
    drop(input);
    prompts.recycle();
    completions.recycle();
    logprobs.recycle();
    let Packed {
        input_ids,
        position_ids,
        loss_mask,
        old_logprobs,
        advantages,
        cu_seqlens,
        seq_indices,
        token_offsets,
        seq_offsets,
        per_rank,
        ..
    } = packed;
    if let Err(e) = result {
        I64_POOL.give(input_ids);
        I64_POOL.give(position_ids);
        F32_POOL.give(loss_mask);
        F32_POOL.give(old_logprobs);
        F32_POOL.give(advantages);
        return Err(e);
    }
    let tok: Vec<(usize, usize)> = token_offsets.windows(2).map(|w| (w[0], w[1])).collect();
    let fields = [
        buffers::views(py, input_ids, &tok)?,
        buffers::views(py, position_ids, &tok)?,
        buffers::views(py, loss_mask, &tok)?,
        buffers::views(py, old_logprobs, &tok)?,
        buffers::views(py, advantages, &tok)?,
    ];
    let out = PyList::empty(py);
    for r in 0..n_ranks {
        let rank = PyList::empty(py);
        for k in r * per_rank..(r + 1) * per_rank {
            let (sa, sb) = (seq_offsets[k], seq_offsets[k + 1]);
            // cu_seqlens of micro-batch k: one entry more than its sequences.
            let cu = PyArray1::from_slice(py, &cu_seqlens[sa + k..=sb + k]).into_any();
            let seqs = PyArray1::from_slice(py, &seq_indices[sa..sb]).into_any();
            let item = PyTuple::new(
                py,
                [
                    fields[0][k].clone(),
                    fields[1][k].clone(),
                    fields[2][k].clone(),
                    fields[3][k].clone(),
                    fields[4][k].clone(),
                    cu,
                    seqs,
                ],
            )?;
            rank.append(item)?;
        }
        out.append(rank)?;
    }
    Ok(out)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("InternalError", m.py().get_type::<InternalError>())?;
    m.add("InputError", m.py().get_type::<InputError>())?;
    m.add("InfeasibleError", m.py().get_type::<InfeasibleError>())?;
    m.add_function(wrap_pyfunction!(extract_answer, m)?)?;
    m.add_function(wrap_pyfunction!(grade, m)?)?;
    m.add_function(wrap_pyfunction!(group_advantages, m)?)?;
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(get_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(pack_microbatches, m)?)?;
    Ok(())
}
