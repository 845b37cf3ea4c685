//! Shared by the live benchmarks.

pub mod tree;
