//! The one place where Rust errors become Python exceptions.
//!
//! * every `grpo_core::CoreError` (bad input) -> `ValueError`;
//! * a Python object of the wrong type -> `TypeError` naming the argument
//!   and index (built in `convert.rs`);
//! * a caught Rust panic (a bug) -> `grpo_plug._core.InternalError`, a
//!   `RuntimeError` subclass, so nothing unwinds into the interpreter.

use std::any::Any;

use grpo_core::CoreError;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::{create_exception, PyErr};

create_exception!(
    grpo_plug._core,
    InternalError,
    PyRuntimeError,
    "A bug inside grpo_plug._core: a Rust panic was caught and turned into this exception."
);

/// `CoreError` -> `ValueError` with the core's message.
pub fn core_error(e: CoreError) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// A caught panic payload -> `InternalError`.
pub fn panic_error(payload: Box<dyn Any + Send>) -> PyErr {
    let msg = if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_owned()
    };
    InternalError::new_err(format!(
        "internal error in grpo_plug._core (please report): {msg}"
    ))
}
