//! Output buffers recycled between calls.
//!
//! Packing writes ~28 bytes per token; into fresh memory every 4 KiB page
//! costs a fault, which on virtual machines takes longer than the packing
//! itself. The arrays `pack_microbatches` returns are views of a [`Buffer`];
//! when Python frees the last view, the buffer's memory goes back to a small
//! pool and the next call writes into warm pages.

use std::sync::{Mutex, MutexGuard};

use numpy::ndarray::ArrayView1;
use numpy::{Element, PyArray1};

use pyo3::prelude::*;

/// Buffers kept per element type.
const MAX_POOLED: usize = 8;
/// Larger buffers are freed instead of kept.
const MAX_POOLED_BYTES: usize = 512 << 20;

/// A pool of spare vectors of one element type.
pub struct Pool<T> {
    spare: Mutex<Vec<Vec<T>>>,
}

impl<T> Pool<T> {
    const fn new() -> Pool<T> {
        Pool {
            spare: Mutex::new(Vec::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Vec<T>>> {
        self.spare
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A vector (stale contents, any length) whose capacity is closest to
    /// `want` from above, else the largest spare, else a new one.
    pub fn take(&self, want: usize) -> Vec<T> {
        let mut spare = self.lock();
        let fit = spare
            .iter()
            .enumerate()
            .filter(|(_, v)| v.capacity() >= want)
            .min_by_key(|(_, v)| v.capacity())
            .or_else(|| spare.iter().enumerate().max_by_key(|(_, v)| v.capacity()))
            .map(|(i, _)| i);
        fit.map_or_else(Vec::new, |i| spare.swap_remove(i))
    }

    /// Keep `v` for a later call (or free it).
    pub fn give(&self, v: Vec<T>) {
        if v.capacity() == 0 || v.capacity() * std::mem::size_of::<T>() > MAX_POOLED_BYTES {
            return;
        }
        let mut spare = self.lock();
        if spare.len() < MAX_POOLED {
            spare.push(v);
        }
    }
}

/// Spare token-id and position buffers.
pub static I64_POOL: Pool<i64> = Pool::new();
/// Spare float buffers.
pub static F32_POOL: Pool<f32> = Pool::new();

enum Data {
    I64(Vec<i64>),
    F32(Vec<f32>),
}

/// Owner of the memory behind the arrays of one field of one call (their
/// numpy `base`). Never resized, so views of it stay valid while it lives.
#[pyclass(frozen, module = "grpo_plug._core")]
pub struct Buffer {
    data: Option<Data>,
}

impl Drop for Buffer {
    fn drop(&mut self) {
        match self.data.take() {
            Some(Data::I64(v)) => I64_POOL.give(v),
            Some(Data::F32(v)) => F32_POOL.give(v),
            None => {}
        }
    }
}

/// Element types a [`Buffer`] can hold.
pub trait Pooled: Element + Copy {
    fn wrap(v: Vec<Self>) -> Buffer;
}

impl Pooled for i64 {
    fn wrap(v: Vec<i64>) -> Buffer {
        Buffer {
            data: Some(Data::I64(v)),
        }
    }
}

impl Pooled for f32 {
    fn wrap(v: Vec<f32>) -> Buffer {
        Buffer {
            data: Some(Data::F32(v)),
        }
    }
}

/// One writable array per `(start, end)` range of `v`, all views of one
/// [`Buffer`] that owns `v` and returns it to its pool once they are freed.
pub fn views<'py, T: Pooled>(
    py: Python<'py>,
    v: Vec<T>,
    ranges: &[(usize, usize)],
) -> PyResult<Vec<Bound<'py, PyAny>>> {
    let (ptr, len) = (v.as_ptr(), v.len());
    if let Some(bad) = ranges.iter().find(|(a, b)| a > b || *b > len) {
        return Err(crate::error::InternalError::new_err(format!(
            "view {bad:?} outside a buffer of {len} values"
        )));
    }
    let owner = Bound::new(py, T::wrap(v))?.into_any();
    ranges
        .iter()
        .map(|&(a, b)| {
            // SAFETY: `a..b` lies inside the vector (checked above), whose heap
            // memory did not move into `owner` and is never resized or freed
            // while `owner` lives; `owner` becomes each array's base object.
            let array = unsafe {
                let view = ArrayView1::from_shape_ptr(b - a, ptr.add(a));
                PyArray1::borrow_from_array(&view, owner.clone())
            };
            Ok(array.into_any())
        })
        .collect()
}
