//! Spate benchmarks.
