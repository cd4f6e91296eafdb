//! Which code is mapped: recorded in the parent before each fork, checked in the worker before
//! calling an address.
//!
//! A `Pool` task names its code by address (see [`crate::child::job`]). An address of the parent is
//! valid in a worker only if the object holding it (the executable or a shared library) was
//! loaded at the same place when the worker was forked: a library `dlopen`ed after the fork is
//! not mapped in the worker, and another one may sit where it sits in the parent.
//!
//! So the parent keeps a *snapshot* of the loaded objects: for each, its executable ranges and an
//! identity (its load address and a hash of its file name). [`record`] refreshes it before every
//! fork, and the worker inherits the one that was current at its fork. For each call the parent
//! computes a [`code_id`] from the objects holding the entry and the function; the worker
//! looks both addresses up in its fork-time snapshot and runs the task only if it finds them and
//! gets the same id ([`check`]).
//!
//! Platforms (the crate's `sys` module lists the code): `dl_iterate_phdr` (64-bit Linux) gives the
//! executable `PT_LOAD` segments; on macOS an address belongs to the image with the greatest
//! header address at or below it (`_dyld_*`). On 32-bit Linux the snapshot is empty and every
//! address is refused: `Pool` calls fail with `CodeNotLoaded`, and `FnPool` (which sends no
//! address) is the way to go.
//!
//! A forked child never asks the loader again: it keeps the snapshot it was forked with
//! ([`in_forked_child`]). Listing the loaded objects (`dl_iterate_phdr`) takes the loader's
//! lock, which glibc does not reset in a fork child: a child forked while another thread of the
//! parent held it (listing the objects for a call's code id, or for a backtrace) would block
//! forever on its first listing, in a nested pool's fork or a nested call's code id. So a
//! nested pool's workers check against the same snapshot, and a library a child loads after
//! its fork is unknown to them (its functions fail with `CodeNotLoaded`).
//!
//! Invariants:
//! - A published snapshot is never freed (superseded ones are leaked: they are small and change
//!   only when libraries are loaded or unloaded), so the worker reads its own without a lock or
//!   an allocation, as a forked child of a multi-threaded process must.
//! - After [`in_forked_child`], nothing here calls into the loader.

use crate::proto::protocol::CallCode;
use crate::sys::{self, Segment};
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

/// The executable code mapped in this process when it was taken.
#[derive(Debug, PartialEq, Eq)]
struct LoadedCode {
    /// The loader's (loads, unloads) counters when it was taken, where the platform has them:
    /// the snapshot is current while they have not moved.
    version: Option<(u64, u64)>,
    /// Sorted by `start`, not overlapping.
    segments: Vec<Segment>,
}

impl LoadedCode {
    fn new(version: Option<(u64, u64)>, mut segments: Vec<Segment>) -> LoadedCode {
        segments.retain(|s| s.start < s.end);
        segments.sort_by_key(|s| s.start);
        LoadedCode { version, segments }
    }

    /// The identity of the object whose executable code holds `address`.
    fn identity_of(&self, address: u64) -> Option<u64> {
        let after = self.segments.partition_point(|s| s.start <= address);
        let segment = self.segments.get(after.checked_sub(1)?)?;
        (address < segment.end).then_some(segment.identity)
    }

    /// The code id of a call running `entry` and `function`, or the first of them that is not
    /// in executable code.
    fn code_id(&self, entry: u64, function: u64) -> Result<u64, u64> {
        let entry_object = self.identity_of(entry).ok_or(entry)?;
        let function_object = self.identity_of(function).ok_or(function)?;
        // Never 0: 0 means "the parent did not find the code".
        Ok(mix(mix(entry_object) ^ function_object) | 1)
    }
}

/// The snapshot forks copy: the latest one published by [`record`].
static PUBLISHED: AtomicPtr<LoadedCode> = AtomicPtr::new(std::ptr::null_mut());

/// Set in a forked child (and so in every process forked from it): the snapshot is not taken
/// again.
static FROZEN: AtomicBool = AtomicBool::new(false);

/// In a freshly forked child, before anything may ask for the code map: from now on this
/// process (and every process it forks) uses the snapshot published when it was forked, and
/// never calls into the loader (see the module's documentation). Makes no system call.
///
/// ```
/// // In a child right after `fork` (here, for show, in a process that forked nothing):
/// # if false {
/// forkpool_worker::code_map::in_forked_child();
/// # }
/// ```
pub fn in_forked_child() {
    FROZEN.store(true, Ordering::Relaxed);
}

/// The published snapshot, if any.
fn published() -> Option<&'static LoadedCode> {
    let snapshot = PUBLISHED.load(Ordering::Acquire);
    // SAFETY: only `record` stores to `PUBLISHED`, always a pointer from `Box::leak`, which is
    // never freed: valid and immutable for the rest of the process (and of its forks).
    unsafe { snapshot.as_ref() }
}

/// Makes the published snapshot describe the code mapped now. The parent calls it before every
/// fork (from [`crate::child::setup::before_fork`]); [`code_id`] calls it when a call starts. In a
/// forked child it does nothing: the child keeps the snapshot it was forked with.
///
/// Cheap when nothing was loaded or unloaded since the last time: on Linux it reads the loader's
/// counters and stops. Takes no lock of its own: two threads refreshing at once each publish a
/// snapshot that was true when taken, and a stale one only makes a worker refuse code it could
/// have run (an object's identity includes its load address, so an object unloaded and another
/// loaded in its place never match).
///
/// ```
/// forkpool_worker::code_map::record();
/// ```
pub fn record() {
    refreshed();
}

/// [`record`], returning the snapshot it leaves published: in a forked child, the one it was
/// forked with (an empty one if it had none).
fn refreshed() -> &'static LoadedCode {
    static EMPTY: LoadedCode = LoadedCode {
        version: None,
        segments: Vec::new(),
    };
    let current = published();
    if FROZEN.load(Ordering::Relaxed) {
        return current.unwrap_or(&EMPTY);
    }
    let version = sys::loader_version();
    if let Some(current) = current {
        if version.is_some() && current.version == version {
            return current;
        }
    }
    let fresh = LoadedCode::new(version, sys::code_segments(identity));
    if let Some(current) = current {
        if current == &fresh {
            return current;
        }
    }
    let fresh: &'static LoadedCode = Box::leak(Box::new(fresh));
    // A snapshot replaced here is leaked, not freed: a child forked a moment ago may hold it.
    PUBLISHED.store(std::ptr::from_ref(fresh).cast_mut(), Ordering::Release);
    fresh
}

/// In the parent: the code id of a call whose entry is at `entry` and whose function is at
/// `function`, from the code mapped now (in a forked child: from the snapshot it was forked
/// with). 0 when either is not in the executable code of a
/// loaded object (code generated at run time, for example): workers then refuse the call.
///
/// ```
/// use forkpool_worker::code_map;
/// fn double(x: u64) -> u64 { x * 2 }
/// fn triple(x: u64) -> u64 { x * 3 }
/// let (a, b) = (double as fn(u64) -> u64 as usize as u64, triple as fn(u64) -> u64 as usize as u64);
/// // Both live in this program's executable: same objects, same id.
/// assert_ne!(code_map::code_id(a, b), 0);
/// assert_eq!(code_map::code_id(a, b), code_map::code_id(b, a));
/// assert_eq!(code_map::code_id(a, 0), 0);
/// ```
pub fn code_id(entry: u64, function: u64) -> u64 {
    refreshed().code_id(entry, function).unwrap_or(0)
}

/// In a worker: whether `code` may be called here, judged by the snapshot this process was
/// forked with. `Err` holds the address refused: one that is in no executable range here, or
/// the function's when the objects holding the two differ from the parent's (by `code_id`).
///
/// Allocates nothing and takes no lock.
///
/// ```
/// use forkpool_worker::{code_map, protocol::CallCode};
/// fn double(x: u64) -> u64 { x * 2 }
/// let address = double as fn(u64) -> u64 as usize as u64;
/// let code_id = code_map::code_id(address, address);
/// assert_eq!(code_map::check(&CallCode { entry: address, function: address, code_id }), Ok(()));
/// let wrong = CallCode { entry: address, function: address, code_id: code_id ^ 2 };
/// assert_eq!(code_map::check(&wrong), Err(address));
/// assert_eq!(code_map::check(&CallCode { entry: address, function: 8, code_id }), Err(8));
/// ```
pub fn check(code: &CallCode) -> Result<(), u64> {
    let Some(snapshot) = published() else {
        return Err(code.entry);
    };
    let here = snapshot.code_id(code.entry, code.function)?;
    if code.code_id == 0 || here != code.code_id {
        return Err(code.function);
    }
    Ok(())
}

/// An object's identity: where it is loaded and what its file is called.
fn identity(base: u64, name: &[u8]) -> u64 {
    // FNV-1a over the name, then mixed with the base.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in name {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(hash ^ mix(base))
}

/// The splitmix64 finalizer: spreads every input bit over the output.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(start: u64, end: u64, identity: u64) -> Segment {
        Segment {
            start,
            end,
            identity,
        }
    }

    #[test]
    fn lookup_finds_the_segment_holding_an_address() {
        let snapshot = LoadedCode::new(
            None,
            vec![
                segment(0x3000, 0x4000, 30),
                segment(0x1000, 0x2000, 10),
                segment(0x2000, 0x2800, 20),
                segment(0x5000, 0x5000, 50), // empty: dropped
            ],
        );
        assert_eq!(snapshot.identity_of(0x0fff), None);
        assert_eq!(snapshot.identity_of(0x1000), Some(10));
        assert_eq!(snapshot.identity_of(0x1fff), Some(10));
        assert_eq!(snapshot.identity_of(0x2000), Some(20));
        assert_eq!(snapshot.identity_of(0x27ff), Some(20));
        assert_eq!(snapshot.identity_of(0x2800), None, "gap after a segment");
        assert_eq!(snapshot.identity_of(0x3abc), Some(30));
        assert_eq!(snapshot.identity_of(0x4000), None);
        assert_eq!(snapshot.identity_of(0x5000), None);
        assert_eq!(snapshot.identity_of(u64::MAX), None);
        assert_eq!(snapshot.code_id(0x1000, 0x0500), Err(0x0500));
        assert_eq!(snapshot.code_id(0x0500, 0x1000), Err(0x0500));
        let same = snapshot.code_id(0x1000, 0x1800).unwrap();
        assert_eq!(snapshot.code_id(0x1100, 0x1100), Ok(same));
        assert_ne!(snapshot.code_id(0x1000, 0x3000), Ok(same));
        assert_ne!(same, 0);
    }

    #[test]
    fn identities_tell_objects_apart_by_name_and_place() {
        let a = identity(0x7f00_0000_0000, b"/usr/lib/liba.so");
        assert_eq!(a, identity(0x7f00_0000_0000, b"/usr/lib/liba.so"));
        assert_ne!(a, identity(0x7f00_0000_0000, b"/usr/lib/libb.so"));
        assert_ne!(a, identity(0x7f00_0000_1000, b"/usr/lib/liba.so"));
    }

    #[cfg(target_pointer_width = "64")]
    #[test]
    fn the_recorded_snapshot_holds_this_program_and_libc() {
        fn local(x: u64) -> u64 {
            x + 1
        }
        let local = local as fn(u64) -> u64 as usize as u64;
        let write = libc::write as *const () as usize as u64;
        let snapshot = refreshed();
        let here = snapshot
            .identity_of(local)
            .expect("this program's code is mapped");
        let libc = snapshot.identity_of(write).expect("libc's code is mapped");
        if cfg!(not(target_env = "musl")) {
            assert_ne!(here, libc, "libc is a library of its own");
        }
        if cfg!(target_os = "linux") {
            assert!(
                std::ptr::eq(refreshed(), snapshot),
                "unchanged: not taken again"
            );
            let heap = Box::new(0u8);
            let data = std::ptr::from_ref(&*heap) as usize as u64;
            assert_eq!(snapshot.identity_of(data), None, "the heap is not code");
        }
        let code = CallCode {
            entry: local,
            function: write,
            code_id: code_id(local, write),
        };
        assert_eq!(check(&code), Ok(()));
        assert_eq!(check(&CallCode { code_id: 0, ..code }), Err(write));
    }
}
