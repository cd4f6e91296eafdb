//! The user guide: choosing an entry point, chunksize, failures and their costs, threads and
//! async, borrowed data, reductions, and migration tables from Python and procspawn (the text
//! is `docs/guide.md`; its examples run as doctests).
#![doc = include_str!("../docs/guide.md")]

/// Failures and caveats: the crash table with the test behind each row, calling from a
/// multi-threaded program, the zygote, platforms and caveats (the text is `docs/failures.md`;
/// its examples run as doctests).
#[doc = include_str!("../docs/failures.md")]
pub mod failures {}

/// Performance: the measured tables and how to reproduce them (the text is
/// `docs/performance.md`).
#[doc = include_str!("../docs/performance.md")]
pub mod performance {}
