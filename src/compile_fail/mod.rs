//! Doctests that must not compile (or must warn), compiled only for doctests
//! (`cargo test --doc`): they keep the examples of misuse off the public pages.

mod must_use;
