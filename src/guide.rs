//! The user guide: choosing an entry point, chunksize, failures and their costs, threads and
//! async, borrowed data, reductions, and migration tables from Python and procspawn (the text
//! is `docs/guide.md`; its examples run as doctests).
#![doc = include_str!("../docs/guide.md")]
