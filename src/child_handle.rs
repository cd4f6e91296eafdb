//! One forked child as the parent signals it: its process group (so processes a task started go
//! too) and the child itself (a task may have moved it to another group), through a pidfd where
//! the platform has them, so that a child already reaped, whose pid may be reused, is never hit.

use crate::channel::{self, Registered};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::os::fd::OwnedFd;
use std::sync::Arc;

/// A child of this process, for signalling.
#[derive(Debug)]
pub(crate) struct ChildHandle {
    pid: Pid,
    /// Refers to this very process until it is reaped (Linux; `None` elsewhere or if the kernel
    /// has no pidfds). Shared with the reaper, which watches it for the child's end.
    pidfd: Option<Arc<Registered<OwnedFd>>>,
}

impl ChildHandle {
    /// The handle of child `pid`, right after the fork (it cannot have been reaped yet: its
    /// reaper starts after this).
    pub fn new(pid: Pid) -> ChildHandle {
        ChildHandle {
            pid,
            pidfd: channel::pidfd(pid).map(Arc::new),
        }
    }

    /// Its process id.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// The handle of a worker the zygote forked, signalled through the pidfd the zygote opened
    /// before the worker could end.
    pub fn with_pidfd(pid: Pid, pidfd: Registered<OwnedFd>) -> ChildHandle {
        ChildHandle {
            pid,
            pidfd: Some(Arc::new(pidfd)),
        }
    }

    /// Its pidfd, if it has one (for the reaper).
    pub fn pidfd(&self) -> Option<&Arc<Registered<OwnedFd>>> {
        self.pidfd.as_ref()
    }

    /// `SIGKILL` to it and its process group.
    pub fn kill(&self) {
        self.signal(Signal::SIGKILL);
    }

    /// `SIGTERM`, then `SIGCONT` (a stopped process acts on `SIGTERM` only once it runs), to
    /// it and its process group: the polite first step of stopping it.
    pub fn terminate(&self) {
        self.signal(Signal::SIGTERM);
        self.signal(Signal::SIGCONT);
    }

    fn signal(&self, signal: Signal) {
        match &self.pidfd {
            Some(pidfd) => {
                // The child itself, wherever its group is; fails harmlessly once it is reaped.
                if crate::sys::pidfd_signal(&***pidfd, signal as i32).is_err() {
                    return; // reaped: its pid, and so its group id, may name someone else now
                }
                let _ = killpg(self.pid, signal);
            }
            // Without pidfds only the group is signalled, as before: signalling the bare pid
            // could hit a process that reused it after the reaper reaped the child.
            None => {
                let _ = killpg(self.pid, signal);
            }
        }
    }
}
