//! Programs the crate must reject, as `compile_fail` doctests with the error code each must
//! fail with (compiled only by `cargo test --doc`; one module per subject, as in rayon-core).

mod capture;
mod item;
mod must_use;
#[cfg(not(feature = "progress"))]
mod progress_feature;
