//! The one place where Rust errors become Python exceptions.
//!
//! * `grpo_core::CoreError::Infeasible` -> `grpo_plug._core.InfeasibleError` and every
//!   other `CoreError` (bad input) -> `grpo_plug._core.InputError`, both `ValueError`
//!   subclasses (`grpo_plug.core` turns them into `grpo_plug.errors` classes);
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

create_exception!(
    grpo_plug._core,
    InputError,
    PyValueError,
    "grpo_plug._core refused its input (a length, a shape, a value out of range)."
);

create_exception!(
    grpo_plug._core,
    InfeasibleError,
    PyValueError,
    "A well-formed request grpo_plug._core cannot satisfy (e.g. packing under a budget)."
);

/// `CoreError` -> `InfeasibleError` or `InputError` with the core's message.
pub fn core_error(e: CoreError) -> PyErr {
    match e {
        CoreError::Infeasible(_) => InfeasibleError::new_err(e.to_string()),
        _ => InputError::new_err(e.to_string()),
    }
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
