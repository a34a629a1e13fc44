//! Pure-Rust data path of grpo-plug: answer extraction, grading, group
//! advantages and micro-batch packing. No Python here; the `grpo-py` crate
//! binds it as `grpo_plug._core`.
//!
//! # Answer extraction ([`mod@extract`])
//!
//! The answer is located by the first rule that applies:
//! the last non-empty `\boxed{...}` / `\fbox{...}` (brace-balanced, an
//! unclosed one takes the rest of the text); the last `#### ...` line that
//! starts like a number; the first committed number after the last anchor
//! phrase (`final answer`, `the answer is`, `answer:`, case-insensitive),
//! following `a + b = c` chains to `c`, passing over retracted numbers
//! (`not 72`, `isn't`, `instead of`, `rather than`, `I previously said`),
//! reading number words where the answer stands (`The answer is twelve.`)
//! and letting a later `wait, ... = 70` correction win; else the last
//! number in the text that is not retracted. A box or `####` line whose
//! content is not exactly one number means "no answer".
//!
//! Text is folded first ([`normalize`]): fullwidth forms, Unicode minus,
//! exotic spaces, `×`/`÷`, currency signs, superscripts, vulgar fractions.
//! Inside a box: `\text{}`-style wrappers and unit words are dropped
//! (`5 dollars`, `12 apples`, `\text{ cm}`), as are `\left`/`\right`, `$`,
//! `^\circ`, `°`; `%` is noted; the right-hand side of the last `=` is
//! taken; thousands separators (`,` or a space) only in exact groups of
//! three; `.5`; `1.2e3`; `\frac`/`\dfrac`/`\tfrac`/`\frac12`/`a/b`; mixed
//! numbers `3 1/2` and `3\frac{1}{2}`; arithmetic `+ - * / ^ ( )`,
//! `\times`, `\cdot`, exact roots `\sqrt{16}`, `\sqrt[3]{27}`, evaluated
//! exactly on `i128` rationals ([`rational`]); otherwise prose with one
//! value in it, digits or number words (`She needs 18 more`,
//! `\text{forty-two}`). Refused: two different numbers, `inf`, `NaN`, hex,
//! `1_000`, `\sqrt{2}`, division by zero, overflow, more than 40 digits,
//! exponents above 128, nesting deeper than 64. Free text reads the same
//! number forms plus `3 \times 10^{4}`.
//!
//! # Grading ([`grade`])
//!
//! Exact when both sides are integers, otherwise also relative 1e-6; a `%`
//! on either side also tries that value divided by 100. With
//! [`GradeOptions::literal_only`] a computed answer ([`Answer::evaluated`]:
//! an operator inside a box, `3 \times 10^{4}`, `\sqrt{16}`) scores 0. Linear time per item, rayon over
//! items, identical results for any thread count.
//!
//! # Advantages ([`advantages`]) and packing ([`pack`])
//!
//! See the module docs: GRPO / Dr. GRPO / RLOO per group with exact zeros for
//! uniform groups; first-fit-decreasing packing under a token budget with
//! the same number of micro-batches on every rank.

pub mod advantages;
mod anchor;
pub mod error;
pub mod extract;
pub mod grade;
mod negation;
pub mod normalize;
mod notation;
pub mod pack;
mod parser;
mod prose;
pub mod rational;
mod span;
mod tokens;
mod words;

pub use advantages::{group_advantages, AdvantageConfig, AdvantageMode, Reward};
pub use error::CoreError;
pub use extract::{extract, extract_answer, parse_gold, parse_span, Answer, Extraction, Source};
pub use grade::{answers_match, grade_batch, grade_one, grade_one_with, GradeOptions, TextBatch};
pub use pack::{
    pack_microbatches, pack_microbatches_into, plan_packing, MicroBatch, PackInput, Packed, Ragged,
};
pub use rational::Rational;
