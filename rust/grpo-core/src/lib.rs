//! Pure-Rust data path of grpo-plug.
