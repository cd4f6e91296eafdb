//! Child set-up after `fork`: process group, signal dispositions, parent-death signal, memory
//! limit, panic capture, exit codes.
//!
//! Runs in a freshly forked child whose parent may have had other threads: it makes only system
//! calls (`setpgid`, `sigaction`, and those of the `sys` module: `prctl`, `setrlimit`, `getppid`
//! on Linux; `kqueue` and a watcher thread on macOS) and stores atomics, taking no lock another
//! parent thread could have held at the fork. That includes the dynamic loader's lock: what the
//! child needs to know of the loaded code was recorded before the fork ([`before_fork`]), and
//! the child never asks the loader again ([`crate::proto::code_map::in_forked_child`]).

use crate::sys;
use nix::sys::signal::{SigHandler, Signal, signal};
use nix::unistd::{Pid, setpgid};

/// Exit code of a child whose worker loop read a frame it could not parse.
pub const EXIT_BAD_FRAME: i32 = 71;
/// Exit code of a child whose own code (not a task) panicked.
pub const EXIT_CHILD_PANICKED: i32 = 70;
/// Exit code of a child that could not send to its parent (the parent is gone).
pub const EXIT_PARENT_GONE: i32 = 72;
/// Exit code of a pool worker whose initializer panicked.
pub const EXIT_INIT_FAILED: i32 = 73;

/// How a forked child should set itself up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildOptions {
    /// Ignore `SIGINT` (pool workers: Ctrl-C is the parent's to handle).
    pub ignore_sigint: bool,
    /// Print task panics to stderr as well as reporting them to the parent.
    pub show_panics: bool,
    /// Cap the child's address space at this many bytes (`RLIMIT_AS`): an allocation past it
    /// fails, and Rust aborts the process. Linux only: macOS does not enforce `RLIMIT_AS`, so
    /// there the child sets nothing (and `forkpool` refuses a pool with a memory limit).
    pub memory_limit: Option<u64>,
}

impl Default for ChildOptions {
    fn default() -> Self {
        ChildOptions {
            ignore_sigint: true,
            show_panics: false,
            memory_limit: None,
        }
    }
}

/// Prepares the calling (just forked) process to run tasks; `parent` is the pid of the process
/// that forked it.
///
/// It becomes the leader of its own process group, so the parent can signal it together with any
/// grandchildren a task started; it ignores `SIGINT` if asked; `SIGSEGV` and `SIGBUS` get their
/// default action back; it dies with its group when the parent dies (Linux: a parent-death
/// signal; macOS: a `kqueue` watch on the parent's exit; both check `getppid`); its address
/// space is capped if asked (Linux); its panics are captured; it keeps the code map it was
/// forked with and never lists the loaded objects again (see [`crate::proto::code_map`]).
pub fn prepare(options: ChildOptions, parent: u32) {
    crate::proto::code_map::in_forked_child();
    reset_signals();
    // The parent makes the same call, so whichever runs first wins; failure only means the
    // parent did it already.
    let _ = setpgid(Pid::from_raw(0), Pid::from_raw(0));
    if options.ignore_sigint {
        // SAFETY: installing SIG_IGN runs no handler code, so no async-signal-safety concern.
        let _ = unsafe { signal(Signal::SIGINT, SigHandler::SigIgn) };
    }
    // std's stack-overflow handler catches SIGSEGV/SIGBUS, restores the default action and
    // returns: a real fault then recurs and kills, but a raised signal (`raise(SIGSEGV)`) is
    // survived once. A task that raises SIGSEGV must die of it, as it would in C or Python.
    for fault in [Signal::SIGSEGV, Signal::SIGBUS] {
        // SAFETY: installing SIG_DFL runs no handler code.
        let _ = unsafe { signal(fault, SigHandler::SigDfl) };
    }
    sys::keep_freed_memory();
    if let Some(bytes) = options.memory_limit {
        sys::limit_memory(bytes);
    }
    sys::die_with_parent(parent);
    crate::panic::capture_in_child(options.show_panics);
}

/// Unblocks every signal and gives every signal the program caught its default action back.
///
/// A child inherits the mask of the thread that forked it (a program that blocks all signals
/// in its threads and `sigwait`s in one would leave the parent-death signal pending forever)
/// and every handler of the program (forkpool's `SIGTERM` for a timed-out item would run the
/// program's own handler in the worker). Ignored signals stay ignored (Rust ignores `SIGPIPE`).
fn reset_signals() {
    // SAFETY: a zeroed sigset and sigaction are valid; these calls only change this process's
    // signal state, and installing SIG_DFL runs no handler code.
    unsafe {
        // Handlers first, then the mask: the parent blocks every signal across the fork, so a
        // signal sent to the child before this point waits, and meets the default action.
        for signal in 1..sys::signal_count() {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(signal, std::ptr::null(), &mut old) != 0 {
                continue;
            }
            if old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != libc::SIG_IGN {
                let mut default: libc::sigaction = std::mem::zeroed();
                default.sa_sigaction = libc::SIG_DFL;
                libc::sigemptyset(&mut default.sa_mask);
                libc::sigaction(signal, &default, std::ptr::null_mut());
            }
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    }
}

/// What the parent does before each fork: wraps the panic hook once, so children can capture panics
/// without touching the hook lock after the fork, and records which code is mapped, so a worker
/// knows which addresses of the parent it may call ([`crate::proto::code_map`]).
pub fn before_fork() {
    crate::panic::install_hook();
    crate::proto::code_map::record();
}

pub use crate::sys::{block_all_signals, restore_signals};
