//! The one error type of the core crate.

use std::fmt;

/// Everything that can go wrong in the core. Every variant is a bad input
/// (the bindings map all of them to `ValueError`); the core never panics on
/// input it was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoreError {
    /// Two inputs that must have the same length do not.
    LengthMismatch {
        /// What was compared, e.g. `"completions and golds"`.
        what: String,
        /// Length of the first input.
        left: usize,
        /// Length of the second input.
        right: usize,
    },
    /// An argument is outside its valid range; the message names it.
    InvalidArgument(String),
    /// A float input is NaN or infinite.
    NonFinite {
        /// Which input, e.g. `"rewards"`.
        what: &'static str,
        /// Index of the first offending value.
        index: usize,
    },
    /// An advantage mode that does not exist.
    UnknownMode(String),
    /// The request is well formed but cannot be satisfied (e.g. fewer
    /// sequences than ranks when packing).
    Infeasible(String),
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoreError::LengthMismatch { what, left, right } => {
                write!(f, "length mismatch: {what} have lengths {left} and {right}")
            }
            CoreError::InvalidArgument(msg) | CoreError::Infeasible(msg) => f.write_str(msg),
            CoreError::NonFinite { what, index } => {
                write!(f, "{what}[{index}] is not finite (NaN or infinity)")
            }
            CoreError::UnknownMode(mode) => write!(
                f,
                "unknown advantage mode {mode:?}; expected one of \"grpo\", \"dr_grpo\", \"rloo\""
            ),
        }
    }
}

impl std::error::Error for CoreError {}
