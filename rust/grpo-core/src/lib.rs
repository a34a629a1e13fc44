//! Pure-Rust data path of grpo-plug: answer extraction, grading, group
//! advantages and micro-batch packing. No Python here; the `grpo-py` crate
//! binds it as `grpo_plug._core`.
//!
//! # Answer extraction ([`mod@extract`])
//!
//! The answer is located by the first rule that applies:
//! the last non-empty `\boxed{...}` / `\fbox{...}` (brace-balanced, an
//! unclosed one takes the rest of the text); the last `#### ...` line that
//! starts like a number; the first number after the last anchor phrase
//! (`final answer`, `the answer is`, `answer:`, case-insensitive), following
//! `a + b = c` chains to `c`; else the last number in the text. A box or
//! `####` line whose content is not exactly one number means "no answer".
//!
//! Text is folded first ([`normalize`]): fullwidth forms, Unicode minus,
//! exotic spaces, `×`/`÷`, currency signs, superscripts, vulgar fractions.
//! Inside a box: `\text{}`-style wrappers and unit words are dropped
//! (`5 dollars`, `12 apples`, `\text{ cm}`), as are `\left`/`\right`, `$`,
//! `^\circ`, `°`; `%` is noted; the right-hand side of the last `=` is
//! taken; thousands separators only in exact groups of three; `.5`;
//! `\frac`/`\dfrac`/`\tfrac`/`\frac12`/`a/b`; mixed numbers `3 1/2` and
//! `3\frac{1}{2}`; arithmetic `+ - * / ^ ( )`, `\times`, `\cdot`, evaluated
//! exactly on `i128` rationals ([`rational`]). Refused: two numbers, `inf`,
//! `NaN`, hex, `1_000`, scientific notation, division by zero, overflow,
//! more than 40 digits, exponents above 128, nesting deeper than 64.
//!
//! # Grading ([`grade`])
//!
//! Exact when both sides are integers, otherwise also relative 1e-6; a `%`
//! on either side also tries that value divided by 100. With
//! [`GradeOptions::literal_only`] an answer computed inside a box
//! ([`Answer::evaluated`]) scores 0. Linear time per item, rayon over
//! items, identical results for any thread count.
//!
//! # Advantages ([`advantages`]) and packing ([`pack`])
//!
//! See the module docs: GRPO / Dr. GRPO / RLOO per group with exact zeros for
//! uniform groups; first-fit-decreasing packing under a token budget with
//! the same number of micro-batches on every rank.

pub mod advantages;
pub mod error;
pub mod extract;
pub mod grade;
pub mod normalize;
pub mod pack;
pub mod rational;

pub use advantages::{group_advantages, AdvantageConfig, AdvantageMode, Reward};
pub use error::CoreError;
pub use extract::{extract, extract_answer, parse_gold, parse_span, Answer, Extraction, Source};
pub use grade::{answers_match, grade_batch, grade_one, grade_one_with, GradeOptions, TextBatch};
pub use pack::{
    pack_microbatches, pack_microbatches_into, plan_packing, MicroBatch, PackInput, Packed, Ragged,
};
pub use rational::Rational;
