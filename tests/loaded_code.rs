//! Soundness of sending functions by address: a worker calls only code that is mapped in it as
//! it is in the parent (issue 9).

use forkpool::{Error, ItemError, Pool};
use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The library the test loads: one Rust-ABI function, so that a `fn(u64) -> u64` pointer to
/// it is a pointer of exactly that type (an `extern "C"` function would need a transmute
/// between ABIs).
const LIBRARY_SOURCE: &str = r#"
#[no_mangle]
pub extern "Rust" fn forkpool_test_triple(x: u64) -> u64 {
    x.wrapping_mul(3)
}
"#;

/// Compiles [`LIBRARY_SOURCE`] into a shared library in a fresh directory under cargo's
/// temporary directory for tests, with the rustc that built this test (a Rust-ABI function is
/// callable through a fn pointer only when both sides come from the same compiler).
fn build_library(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("soundness-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let source = dir.join("triple.rs");
    std::fs::write(&source, LIBRARY_SOURCE).unwrap();
    let output = dir.join(format!("lib{name}.so"));
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let status = Command::new(rustc)
        .args([
            "--edition",
            "2021",
            "--crate-type",
            "cdylib",
            "-C",
            "opt-level=1",
        ])
        .arg("-o")
        .arg(&output)
        .arg(&source)
        .status()
        .expect("rustc runs");
    assert!(status.success(), "the test library compiles");
    output
}

/// Loads the library at `path` and returns its function as a fn pointer into its code.
fn load_triple(path: &Path) -> fn(u64) -> u64 {
    let path = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `path` is a C string; the library has no initialisers beyond Rust's std ones.
    let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if handle.is_null() {
        // SAFETY: dlerror returns a C string describing the last failure.
        let message = unsafe { CStr::from_ptr(libc::dlerror()) };
        panic!("dlopen failed: {message:?}");
    }
    // SAFETY: `handle` is a loaded library; the name is a C string.
    let symbol = unsafe { libc::dlsym(handle, c"forkpool_test_triple".as_ptr()) };
    assert!(!symbol.is_null(), "the library exports its function");
    // SAFETY: the symbol is `extern "Rust" fn(u64) -> u64`, compiled by the same rustc as this
    // test; the library is never closed, so the pointer stays valid for the whole process.
    unsafe { std::mem::transmute::<*mut libc::c_void, fn(u64) -> u64>(symbol) }
}

/// A pool forked before a library was loaded refuses a function from it: every item fails with
/// `CodeNotLoaded` naming the function's address, and the workers live on. A pool forked after
/// the load runs it. Without the worker's check the workers would jump to an address that is
/// not mapped in them and die of `SIGSEGV` (items failing with `WorkerDied`, or a crash loop).
#[test]
fn a_function_loaded_after_the_fork_is_refused_and_a_later_pool_runs_it() {
    let old = Pool::new(2).unwrap();
    let pids = old.pids();
    let library = build_library("triple_late");
    let triple = load_triple(&library);
    assert_eq!(triple(5), 15, "the function works in the parent");
    let address = triple as usize as u64;

    let outcomes: Vec<Result<u64, Error>> = old.chunksize(2).imap(triple, 0..6u64).collect();
    assert_eq!(outcomes.len(), 6);
    for (i, outcome) in outcomes.iter().enumerate() {
        match outcome {
            Err(Error::Task(ItemError::CodeNotLoaded {
                index,
                pid,
                address: refused,
            })) => {
                assert_eq!(*index, i as u64);
                assert!(pids.contains(pid), "refused by a worker of the pool");
                assert_eq!(*refused, address, "the function's address is named");
            }
            other => panic!("item {i}: expected CodeNotLoaded, got {other:?}"),
        }
    }
    let message = outcomes[0].as_ref().unwrap_err().to_string();
    assert!(message.contains("not loaded"), "{message}");

    // The pool goes on, with the same workers.
    assert_eq!(old.map(|x: u64| x + 1, 0..4u64).unwrap(), [1, 2, 3, 4]);
    assert_eq!(old.pids(), pids, "no worker died");

    // A pool forked after the load has the library mapped and runs the function.
    let new = Pool::new(2).unwrap();
    assert_eq!(new.map(triple, 0..6u64).unwrap(), [0, 3, 6, 9, 12, 15]);
    // And the old one still refuses it.
    let again = old.map(triple, [1u64]).unwrap_err();
    assert!(matches!(
        again.as_task(),
        Some(ItemError::CodeNotLoaded { index: 0, .. })
    ));
    let _ = std::fs::remove_dir_all(library.parent().unwrap());
}

/// A function of this program, for control calls.
fn triple_again(x: u64) -> u64 {
    x * 3
}

/// A function pointer that points outside any loaded code (here: into the heap) is refused
/// before it is called, whatever the call: map, starmap or map_with.
#[test]
fn an_address_outside_loaded_code_is_refused_by_every_kind_of_call() {
    let pool = Pool::new(1).unwrap();
    // A page of heap memory standing in for code that is not mapped in the worker. Never
    // called: the worker refuses it first.
    let heap = vec![0xC3u8; 4096]; // `ret` on x86, in case it were called
    let bogus = heap.as_ptr();
    // SAFETY: not sound to call; the point of the test is that the worker never calls it. The
    // pointer is non-null, so the fn pointer value itself is valid.
    let map_fn = unsafe { std::mem::transmute::<*const u8, fn(u64) -> u64>(bogus) };
    // SAFETY: as above.
    let star_fn = unsafe { std::mem::transmute::<*const u8, fn(u64, u64) -> u64>(bogus) };
    // SAFETY: as above.
    let with_fn = unsafe { std::mem::transmute::<*const u8, fn(&u64, u64) -> u64>(bogus) };
    let address = bogus as usize as u64;
    let refused = |error: Error| match error.as_task() {
        Some(ItemError::CodeNotLoaded { address: a, .. }) => *a == address,
        _ => false,
    };
    assert!(refused(pool.map(map_fn, [1u64, 2]).unwrap_err()));
    assert!(refused(pool.starmap(star_fn, [(1u64, 2u64)]).unwrap_err()));
    assert!(refused(pool.map_with(&1u64, with_fn, [1u64]).unwrap_err()));
    assert_eq!(pool.map(triple_again, [1u64, 2]).unwrap(), [3, 6]);
    drop(heap);
}
