//! Copying Python inputs into owned Rust values (with the GIL held), so the
//! work itself can run without it. Type errors name the argument and index.
//!
//! The copies go into buffers kept between calls ([`Spares`]): a fresh
//! multi-megabyte buffer costs a page fault per 4 KiB page on first write,
//! which on virtual machines can take longer than the work itself.

use std::sync::{Mutex, MutexGuard};

use grpo_core::{Ragged, TextBatch};
use numpy::npyffi::{self, NpyTypes};
use numpy::{
    Element, PyArray1, PyArrayDescr, PyArrayDescrMethods, PyArrayMethods, PyUntypedArray,
    PyUntypedArrayMethods,
};
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
            // Exact int first: a pointer compare (PyLong_Check is a call
            // under the limited API).
            if ffi::Py_TYPE(item) != std::ptr::addr_of_mut!(ffi::PyLong_Type)
                && ffi::PyLong_Check(item) == 0
            {
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
            if ffi::Py_TYPE(item) != std::ptr::addr_of_mut!(ffi::PyFloat_Type)
                && ffi::PyFloat_Check(item) == 0
            {
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

/// Where one row's values are: in a caller's array, or in the copy buffer.
enum Source {
    /// Address and length of a contiguous, aligned array's data.
    Array(usize, usize),
    /// Row index in [`Rows::owned`].
    Owned(usize),
}

/// Per-sequence rows of one argument. Contiguous numpy arrays of the native
/// dtype are read in place (kept alive here, not copied); everything else is
/// copied into a spare buffer. The arrays must not be written to while a
/// call runs without the GIL, as for NumPy's own GIL-free operations.
pub struct Rows<'py, T: Copy + 'static> {
    owned: Ragged<T>,
    keep: Vec<Bound<'py, PyAny>>,
    sources: Vec<Source>,
    spares: &'static Spares<Ragged<T>>,
}

impl<'py, T: Copy + 'static> Rows<'py, T> {
    /// One slice per row, valid while `self` lives.
    pub fn slices(&self) -> Vec<&[T]> {
        self.sources
            .iter()
            .map(|src| match *src {
                Source::Owned(i) => self.owned.row(i),
                Source::Array(_, 0) => &[],
                // SAFETY: the address and length come from a C-contiguous,
                // aligned 1-D array of `T` that `self.keep` holds a strong
                // reference to, so the buffer stays allocated (NumPy refuses
                // to resize an array that others reference) for `&self`.
                Source::Array(addr, len) => unsafe {
                    std::slice::from_raw_parts(addr as *const T, len)
                },
            })
            .collect()
    }

    /// Hand the copy buffer back for later calls.
    pub fn recycle(self) {
        self.spares.give(self.owned);
    }
}

/// Recognises exact `numpy.ndarray`s of one native dtype by reading the
/// array struct directly (two pointer compares and a flag test), which is
/// ~10x cheaper than a checked downcast with a dtype-equivalence call; other
/// objects go through the checked path.
struct NativeArrays<'py> {
    array_type: *mut ffi::PyTypeObject,
    /// Held (not just its address) so the compare cannot match a new object.
    dtype: Bound<'py, PyArrayDescr>,
}

impl<'py> NativeArrays<'py> {
    fn new<T: Element>(py: Python<'py>) -> NativeArrays<'py> {
        NativeArrays {
            // SAFETY: the numpy C API table is loaded by the numpy crate on
            // first use, with the GIL held.
            array_type: unsafe { npyffi::PY_ARRAY_API.get_type_object(py, NpyTypes::PyArray_Type) },
            // Builtin native-byte-order dtypes are singletons: arrays of this
            // dtype usually hold this very object.
            dtype: T::get_dtype(py),
        }
    }

    /// Address and length of `item`'s data if it is a C-contiguous,
    /// aligned 1-D array of `T`.
    fn data<T: Element>(&self, item: &Bound<'_, PyAny>) -> Option<(usize, usize)> {
        let ptr = item.as_ptr();
        // SAFETY: `item` is a live object and the GIL is held; its fields are
        // read only after its type is exactly ndarray, whose C layout is
        // `PyArrayObject`.
        unsafe {
            if ffi::Py_TYPE(ptr) == self.array_type {
                let arr = &*ptr.cast::<npyffi::PyArrayObject>();
                let want = npyffi::NPY_ARRAY_C_CONTIGUOUS | npyffi::NPY_ARRAY_ALIGNED;
                let same_dtype = arr.descr.cast::<ffi::PyObject>() == self.dtype.as_ptr();
                if arr.nd == 1 && same_dtype && arr.flags & want == want {
                    return Some((arr.data as usize, *arr.dimensions as usize));
                }
            }
        }
        let arr = item.cast::<PyArray1<T>>().ok()?;
        let addr = arr.data() as usize;
        let aligned = addr.is_multiple_of(std::mem::align_of::<T>());
        (arr.is_c_contiguous() && aligned).then(|| (addr, arr.len()))
    }
}

fn rows<'py, T: Copy + Element + 'static>(
    obj: &Bound<'py, PyAny>,
    name: &str,
    what: &str,
    spares: &'static Spares<Ragged<T>>,
    push: impl Fn(&mut Ragged<T>, &Bound<'_, PyAny>) -> PyResult<()>,
) -> PyResult<Rows<'py, T>> {
    reject_str(obj, name, what)?;
    let native = NativeArrays::new::<T>(obj.py());
    let mut out = Rows {
        owned: spares.take(),
        keep: Vec::new(),
        sources: Vec::new(),
        spares,
    };
    let result = for_each_item(obj, |i, item| {
        if let Some((addr, len)) = native.data::<T>(&item) {
            out.sources.push(Source::Array(addr, len));
            out.keep.push(item);
            return Ok(());
        }
        out.sources.push(Source::Owned(out.owned.len()));
        push(&mut out.owned, &item).map_err(|e| {
            PyTypeError::new_err(format!(
                "{name}[{i}] must be a 1-D sequence of {what}: {}",
                e.value(item.py())
            ))
        })
    });
    match result {
        Ok(()) => Ok(out),
        Err(e) => {
            out.recycle();
            Err(e)
        }
    }
}

/// Per-sequence token ids: lists of int or 1-D integer arrays.
pub fn int_rows<'py>(obj: &Bound<'py, PyAny>, name: &str) -> PyResult<Rows<'py, i64>> {
    rows(obj, name, "int", &INT_SPARES, push_int_row)
}

/// Per-sequence floats: lists of float or 1-D float arrays (stored as f32).
pub fn float_rows<'py>(obj: &Bound<'py, PyAny>, name: &str) -> PyResult<Rows<'py, f32>> {
    rows(obj, name, "float", &FLOAT_SPARES, push_float_row)
}

/// A 1-D float32 or float64 array, borrowed read-only.
pub enum Floats<'py> {
    F32(numpy::PyReadonlyArray1<'py, f32>),
    F64(numpy::PyReadonlyArray1<'py, f64>),
}

/// `obj` as [`Floats`].
pub fn float_values<'py>(obj: &Bound<'py, PyAny>, name: &str) -> PyResult<Floats<'py>> {
    let wrong = || {
        PyTypeError::new_err(format!(
            "{name} must be a 1-D float32 or float64 numpy array"
        ))
    };
    if let Ok(arr) = obj.cast::<PyArray1<f32>>() {
        return Ok(Floats::F32(arr.try_readonly().map_err(|_| wrong())?));
    }
    if let Ok(arr) = obj.cast::<PyArray1<f64>>() {
        return Ok(Floats::F64(arr.try_readonly().map_err(|_| wrong())?));
    }
    Err(wrong())
}
