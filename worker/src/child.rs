//! Child set-up after `fork`: process group, signal dispositions, panic capture, exit codes.
//!
//! Runs in a freshly forked child whose parent may have had other threads: it calls only
//! `setpgid` and `sigaction` and stores two atomics, taking no lock another parent thread could
//! have held at the fork.

use nix::sys::signal::{SigHandler, Signal, signal};
use nix::unistd::{Pid, setpgid};

/// Exit code of a child whose worker loop read a frame it could not parse.
pub const EXIT_BAD_FRAME: i32 = 71;
/// Exit code of a child whose own code (not a task) panicked.
pub const EXIT_CHILD_PANICKED: i32 = 70;
/// Exit code of a child that could not send to its parent (the parent is gone).
pub const EXIT_PARENT_GONE: i32 = 72;

/// How a forked child should set itself up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildOptions {
    /// Ignore `SIGINT` (pool workers: Ctrl-C is the parent's to handle).
    pub ignore_sigint: bool,
    /// Print task panics to stderr as well as reporting them to the parent.
    pub show_panics: bool,
}

impl Default for ChildOptions {
    fn default() -> Self {
        ChildOptions {
            ignore_sigint: true,
            show_panics: false,
        }
    }
}

/// Prepares the calling (just forked) process to run tasks.
///
/// It becomes the leader of its own process group, so the parent can signal it together with any
/// grandchildren a task started; it ignores `SIGINT` if asked; `SIGSEGV` and `SIGBUS` get their
/// default action back; its panics are captured.
pub fn prepare(options: ChildOptions) {
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
    crate::panic::capture_in_child(options.show_panics);
}

/// What the parent does before each fork: wraps the panic hook once, so children can capture panics
/// without touching the hook lock after the fork.
pub fn before_fork() {
    crate::panic::install_hook();
}
