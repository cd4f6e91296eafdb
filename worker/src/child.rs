//! Child set-up after `fork`: process group, signal dispositions, parent-death signal, memory
//! limit, panic capture, exit codes.
//!
//! Runs in a freshly forked child whose parent may have had other threads: it makes only system
//! calls (`setpgid`, `sigaction`, `prctl`, `setrlimit`, `getppid`) and stores atomics, taking no
//! lock another parent thread could have held at the fork.

use nix::sys::signal::{SigHandler, Signal, signal};
use nix::unistd::{Pid, setpgid};
use std::sync::atomic::{AtomicI32, Ordering};

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
    /// fails, and Rust aborts the process.
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
/// default action back; it dies with its group when the parent dies (Linux); its address space
/// is capped if asked; its panics are captured.
pub fn prepare(options: ChildOptions, parent: u32) {
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
    keep_freed_memory();
    if let Some(bytes) = options.memory_limit {
        let _ =
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_AS, bytes, bytes);
    }
    die_with_parent(parent);
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
        for signal in 1..signal_count() {
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

/// One past the highest signal number.
#[cfg(target_os = "linux")]
fn signal_count() -> libc::c_int {
    libc::SIGRTMAX() + 1
}

#[cfg(not(target_os = "linux"))]
fn signal_count() -> libc::c_int {
    32
}

/// Makes glibc's malloc keep memory it frees instead of returning it to the kernel at once.
///
/// A worker receives and decodes every message into fresh buffers; with glibc's defaults a
/// buffer over 128 KiB is a fresh `mmap` each time, so every 1 MiB item costs 256 page faults
/// twice (profiled with `perf`: page faults and page clearing were most of a worker's time).
/// A worker keeps at most 64 MiB of freed memory. Only in workers: the parent is the caller's
/// process and keeps its own settings.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    // SAFETY: mallopt only changes malloc's tuning; this process has one thread and glibc
    // reset malloc's locks in the child after fork.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}

/// The pid of the parent this child watches (0: none).
static PARENT: AtomicI32 = AtomicI32::new(0);

/// The signal the kernel sends a child when the thread that forked it ends (`PR_SET_PDEATHSIG`).
/// A real-time signal no task is likely to use.
#[cfg(target_os = "linux")]
fn parent_death_signal() -> libc::c_int {
    libc::SIGRTMAX() - 2
}

/// Runs when the kernel reports that the forking thread ended. That thread may have ended while
/// the parent process lives on (a pool built on a short-lived thread): then `getppid` still
/// names the parent and nothing happens. If the parent process is gone, the child and every
/// process of its group (grandchildren started by a task) are killed at once.
#[cfg(target_os = "linux")]
extern "C" fn on_parent_death(_: libc::c_int) {
    // SAFETY: `getppid` and `kill` are async-signal-safe and touch no memory.
    unsafe {
        if libc::getppid() != PARENT.load(Ordering::Relaxed) {
            // Kill the group only if this child leads it (it always should: see `prepare`).
            let me = libc::getpid();
            libc::kill(if libc::getpgrp() == me { 0 } else { me }, libc::SIGKILL);
        }
    }
}

/// Arranges for this child to die with its parent. On Linux the kernel signals the child when
/// its parent ends (`PR_SET_PDEATHSIG`); everywhere, a worker also exits when its task channel
/// reports end-of-stream.
#[cfg(target_os = "linux")]
fn die_with_parent(parent: u32) {
    PARENT.store(parent as i32, Ordering::Relaxed);
    let signal = parent_death_signal();
    // SAFETY: a zeroed sigaction is valid; the handler only calls async-signal-safe functions;
    // prctl(PR_SET_PDEATHSIG) takes a signal number and has no memory effects.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_parent_death as *const () as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(signal, &action, std::ptr::null_mut());
        libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0);
    }
    // The parent may have died between the fork and the prctl: then no signal will come.
    on_parent_death(0);
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(parent: u32) {
    PARENT.store(parent as i32, Ordering::Relaxed);
}

/// What the parent does before each fork: wraps the panic hook once, so children can capture panics
/// without touching the hook lock after the fork, and records which code is mapped, so a worker
/// knows which addresses of the parent it may call ([`crate::code_map`]).
pub fn before_fork() {
    crate::panic::install_hook();
    crate::code_map::record();
}
