//! Copying Python inputs into owned Rust values (with the GIL held), so the
//! work itself can run without it. Type errors name the argument and index.
//!
//! The copies go into buffers kept between calls ([`Spares`]): a fresh
//! multi-megabyte buffer costs a page fault per 4 KiB page on first write,
//! which on virtual machines can take longer than the work itself.

use std::sync::{Mutex, MutexGuard};

use grpo_core::{Ragged, TextBatch};
use numpy::{PyArray1, PyArrayDescrMethods, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

/// Buffers that can be emptied and refilled.
pub trait Reusable: Default {
    /// Empty, keeping capacity.
    fn clear(&mut self);
    /// Allocated bytes.
    fn capacity_bytes(&self) -> usize;
}

impl Reusable for TextBatch {
    fn clear(&mut self) {
        TextBatch::clear(self);
    }
    fn capacity_bytes(&self) -> usize {
        TextBatch::capacity_bytes(self)
    }
}

impl<T: Copy> Reusable for Ragged<T> {
    fn clear(&mut self) {
        Ragged::clear(self);
    }
    fn capacity_bytes(&self) -> usize {
        Ragged::capacity_bytes(self)
    }
}

/// A few spare buffers of one kind, at most [`MAX_SPARE_BYTES`] each.
pub struct Spares<T> {
    items: Mutex<Vec<T>>,
}

/// Larger buffers are freed instead of kept.
const MAX_SPARE_BYTES: usize = 256 << 20;
/// At most this many buffers of one kind are kept.
const MAX_SPARES: usize = 4;

impl<T: Reusable> Spares<T> {
    const fn new() -> Spares<T> {
        Spares {
            items: Mutex::new(Vec::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<T>> {
        self.items
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// An empty buffer, reused if one is spare.
    pub fn take(&self) -> T {
        self.lock().pop().unwrap_or_default()
    }

    /// Keep `item` for a later call (or free it).
    pub fn give(&self, mut item: T) {
        if item.capacity_bytes() <= MAX_SPARE_BYTES {
            item.clear();
            let mut items = self.lock();
            if items.len() < MAX_SPARES {
                items.push(item);
            }
        }
    }
}

/// Spare text buffers (completions and golds).
pub static TEXT_SPARES: Spares<TextBatch> = Spares::new();
/// Spare token-id buffers (prompts and completions).
pub static INT_SPARES: Spares<Ragged<i64>> = Spares::new();
/// Spare log-prob buffers.
pub static FLOAT_SPARES: Spares<Ragged<f32>> = Spares::new();

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map_or_else(|_| "?".to_owned(), |n| n.to_string())
}

fn reject_str(obj: &Bound<'_, PyAny>, name: &str, what: &str) -> PyResult<()> {
    if obj.is_instance_of::<PyString>() || obj.is_instance_of::<PyBytes>() {
        return Err(PyTypeError::new_err(format!(
            "{name} must be a sequence of {what}, not {}",
            type_name(obj)
        )));
    }
    Ok(())
}

/// Call `f(index, item)` for each item of a list, tuple or other iterable.
fn for_each_item<'py>(
    obj: &Bound<'py, PyAny>,
    mut f: impl FnMut(usize, Bound<'py, PyAny>) -> PyResult<()>,
) -> PyResult<()> {
    if let Ok(list) = obj.cast::<PyList>() {
        for (i, item) in list.iter().enumerate() {
            f(i, item)?;
        }
    } else if let Ok(tuple) = obj.cast::<PyTuple>() {
        for (i, item) in tuple.iter().enumerate() {
            f(i, item)?;
        }
    } else {
        for (i, item) in obj.try_iter()?.enumerate() {
            f(i, item?)?;
        }
    }
    Ok(())
}

/// A sequence of `str` as one [`TextBatch`]. Strings that are not valid
/// UTF-8 (lone surrogates) are copied with U+FFFD replacements.
pub fn text_batch(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<TextBatch> {
    reject_str(obj, name, "str")?;
    let mut batch = TEXT_SPARES.take();
    // Rollouts usually repeat the same reference object for a whole group.
    let mut prev: Option<Bound<'_, PyAny>> = None;
    let result = for_each_item(obj, |i, item| {
        if prev.as_ref().is_some_and(|p| p.is(&item)) {
            batch.push_repeat();
            return Ok(());
        }
        let s = item.cast::<PyString>().map_err(|_| {
            PyTypeError::new_err(format!("{name}[{i}] must be str, not {}", type_name(&item)))
        })?;
        match s.to_str() {
            Ok(v) => batch.push(v),
            Err(_) => batch.push(&s.to_string_lossy()),
        }
        prev = Some(item);
        Ok(())
    });
    match result {
        Ok(()) => Ok(batch),
        Err(e) => {
            TEXT_SPARES.give(batch);
            Err(e)
        }
    }
}

/// One `str` argument, copied (lossily for lone surrogates).
pub fn text(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<String> {
    let s = obj
        .cast::<PyString>()
        .map_err(|_| PyTypeError::new_err(format!("{name} must be str, not {}", type_name(obj))))?;
    Ok(match s.to_str() {
        Ok(v) => v.to_owned(),
        Err(_) => s.to_string_lossy().into_owned(),
    })
}

/// For a numpy array of another dtype: a 1-D copy as `target` ("int64" or
/// "float64") when its dtype kind is one of `kinds`; `None` for non-arrays.
fn convert_array<'py>(
    item: &Bound<'py, PyAny>,
    kinds: &[u8],
    target: &str,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let Ok(arr) = item.cast::<PyUntypedArray>() else {
        return Ok(None);
    };
    if arr.ndim() != 1 {
        return Err(PyTypeError::new_err(format!(
            "expected a 1-D array, got {} dimensions",
            arr.ndim()
        )));
    }
    let kind = arr.dtype().kind();
    if !kinds.contains(&kind) {
        return Err(PyTypeError::new_err(format!(
            "expected an array of {target}-compatible dtype, got dtype kind {:?}",
            char::from(kind)
        )));
    }
    Ok(Some(item.call_method1("astype", (target,))?))
}

/// Values of one list: exact `int` / `float` items through the C API (no
/// Python code can run, so the list cannot change under us), anything else
/// through PyO3's checked extraction.
trait ListValue: Copy {
    /// # Safety
    /// `item` must be a valid object pointer and the GIL must be held.
    unsafe fn fast(item: *mut ffi::PyObject) -> Option<Self>;
    fn slow(item: &Bound<'_, PyAny>) -> PyResult<Self>;
}

impl ListValue for i64 {
    unsafe fn fast(item: *mut ffi::PyObject) -> Option<i64> {
        // SAFETY: the caller guarantees a valid object and the GIL. For an
        // int (or subclass) PyLong_AsLongLong reads the value directly; on
        // overflow it sets an exception, which the slow path re-raises.
        unsafe {
            if ffi::PyLong_Check(item) == 0 {
                return None;
            }
            let v = ffi::PyLong_AsLongLong(item);
            if v == -1 && !ffi::PyErr_Occurred().is_null() {
                ffi::PyErr_Clear();
                return None;
            }
            Some(v)
        }
    }

    fn slow(item: &Bound<'_, PyAny>) -> PyResult<i64> {
        item.extract()
    }
}

impl ListValue for f32 {
    unsafe fn fast(item: *mut ffi::PyObject) -> Option<f32> {
        // SAFETY: as above; PyFloat_AsDouble on a float reads it directly.
        unsafe {
            if ffi::PyFloat_Check(item) == 0 {
                return None;
            }
            Some(ffi::PyFloat_AsDouble(item) as f32)
        }
    }

    fn slow(item: &Bound<'_, PyAny>) -> PyResult<f32> {
        item.extract::<f64>().map(|v| v as f32)
    }
}

fn push_list<T: ListValue>(out: &mut Ragged<T>, list: &Bound<'_, PyList>) -> PyResult<()> {
    out.reserve(list.len());
    for i in 0..list.len() {
        // SAFETY: the GIL is held and `list` is alive; PyList_GetItem
        // bounds-checks and returns a borrowed reference used right away.
        let item = unsafe { ffi::PyList_GetItem(list.as_ptr(), i as ffi::Py_ssize_t) };
        // SAFETY: `item` is either null (checked by `fast`'s caller below)
        // or a valid object.
        let fast = if item.is_null() {
            None
        } else {
            unsafe { T::fast(item) }
        };
        let value = match fast {
            Some(v) => Ok(v),
            None => list.get_item(i).and_then(|obj| T::slow(&obj)),
        };
        match value {
            Ok(v) => out.push_value(v),
            Err(e) => {
                out.discard_open_row();
                return Err(e);
            }
        }
    }
    out.end_row();
    Ok(())
}

fn push_int_row(out: &mut Ragged<i64>, item: &Bound<'_, PyAny>) -> PyResult<()> {
    if let Ok(arr) = item.cast::<PyArray1<i64>>() {
        let ro = arr.readonly();
        match ro.as_slice() {
            Ok(s) => out.push_row(s),
            Err(_) => out.push_row(&ro.as_array().to_vec()),
        }
        return Ok(());
    }
    if let Ok(arr) = item.cast::<PyArray1<i32>>() {
        for v in arr.readonly().as_array() {
            out.push_value(i64::from(*v));
        }
        out.end_row();
        return Ok(());
    }
    if let Some(conv) = convert_array(item, b"iub", "int64")? {
        return push_int_row(out, &conv);
    }
    if item.is_instance_of::<PyString>() || item.is_instance_of::<PyBytes>() {
        return Err(PyTypeError::new_err(
            "expected a sequence of int, not str/bytes",
        ));
    }
    if let Ok(list) = item.cast::<PyList>() {
        return push_list(out, list);
    }
    let v: Vec<i64> = item.extract()?;
    out.push_row(&v);
    Ok(())
}

fn push_float_row(out: &mut Ragged<f32>, item: &Bound<'_, PyAny>) -> PyResult<()> {
    if let Ok(arr) = item.cast::<PyArray1<f32>>() {
        let ro = arr.readonly();
        match ro.as_slice() {
            Ok(s) => out.push_row(s),
            Err(_) => out.push_row(&ro.as_array().to_vec()),
        }
        return Ok(());
    }
    if let Ok(arr) = item.cast::<PyArray1<f64>>() {
        for v in arr.readonly().as_array() {
            out.push_value(*v as f32);
        }
        out.end_row();
        return Ok(());
    }
    if let Some(conv) = convert_array(item, b"fiub", "float64")? {
        return push_float_row(out, &conv);
    }
    if item.is_instance_of::<PyString>() || item.is_instance_of::<PyBytes>() {
        return Err(PyTypeError::new_err(
            "expected a sequence of float, not str/bytes",
        ));
    }
    if let Ok(list) = item.cast::<PyList>() {
        return push_list(out, list);
    }
    let v: Vec<f64> = item.extract()?;
    for x in v {
        out.push_value(x as f32);
    }
    out.end_row();
    Ok(())
}

fn rows<T: Copy>(
    obj: &Bound<'_, PyAny>,
    name: &str,
    what: &str,
    spares: &Spares<Ragged<T>>,
    push: impl Fn(&mut Ragged<T>, &Bound<'_, PyAny>) -> PyResult<()>,
) -> PyResult<Ragged<T>> {
    reject_str(obj, name, what)?;
    let mut out = spares.take();
    let result = for_each_item(obj, |i, item| {
        push(&mut out, &item).map_err(|e| {
            PyTypeError::new_err(format!(
                "{name}[{i}] must be a 1-D sequence of {what}: {}",
                e.value(item.py())
            ))
        })
    });
    match result {
        Ok(()) => Ok(out),
        Err(e) => {
            spares.give(out);
            Err(e)
        }
    }
}

/// Per-sequence token ids: lists of int or 1-D integer arrays.
pub fn int_rows(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Ragged<i64>> {
    rows(obj, name, "int", &INT_SPARES, push_int_row)
}

/// Per-sequence floats: lists of float or 1-D float arrays (stored as f32).
pub fn float_rows(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Ragged<f32>> {
    rows(obj, name, "float", &FLOAT_SPARES, push_float_row)
}

/// A 1-D float32 or float64 numpy array as owned `f64` values (the dtype is
/// checked once, then the matching typed view is read as a slice).
pub fn float64_values(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Vec<f64>> {
    let wrong = || {
        PyTypeError::new_err(format!(
            "{name} must be a 1-D float32 or float64 numpy array"
        ))
    };
    let arr = obj.cast::<PyUntypedArray>().map_err(|_| wrong())?;
    if arr.ndim() != 1 {
        return Err(wrong());
    }
    let dtype = arr.dtype();
    let py = obj.py();
    if dtype.is_equiv_to(&numpy::dtype::<f64>(py)) {
        let ro = obj.cast::<PyArray1<f64>>().map_err(|_| wrong())?.readonly();
        Ok(match ro.as_slice() {
            Ok(s) => s.to_vec(),
            Err(_) => ro.as_array().to_vec(),
        })
    } else if dtype.is_equiv_to(&numpy::dtype::<f32>(py)) {
        let ro = obj.cast::<PyArray1<f32>>().map_err(|_| wrong())?.readonly();
        Ok(match ro.as_slice() {
            Ok(s) => s.iter().map(|x| f64::from(*x)).collect(),
            Err(_) => ro.as_array().iter().map(|x| f64::from(*x)).collect(),
        })
    } else {
        Err(wrong())
    }
}
