//! One forked child as the parent signals it: the child itself (a task may have moved it to
//! another group) and its process group (so processes a task started go too).
//!
//! Invariant: a child is signalled by pid, or its group by its group id, only while that id is
//! surely its own, that is while the child is not reaped (a reaped child's pid, and so its group
//! id, may name another process by now):
//! - a child of this process is signalled under its [`Unreaped`] lock while the flag says it is
//!   unreaped, and its reaper lowers the flag under that lock before it reaps it; the child
//!   itself is signalled through its pidfd where the platform has them (so even a child reaped
//!   behind the reaper's back, when the program ignores `SIGCHLD`, is never mistaken), and its
//!   group only if that signal reached it;
//! - a worker the zygote forked is signalled through the pidfd the zygote opened before it
//!   could end, and its group by the zygote, which reaps it in the same thread and so knows.

use crate::child::channel::{self, Registered};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

/// A child of this process, for signalling.
#[derive(Debug)]
pub(crate) struct ChildHandle {
    pid: Pid,
    /// Refers to this very process until it is reaped (Linux; `None` elsewhere or if the kernel
    /// has no pidfds). Shared with the reaper, which watches it for the child's end.
    pidfd: Option<Arc<Registered<OwnedFd>>>,
    reaper: ReapedBy,
}

/// Who reaps the child, and so who knows whether its pid is still its own.
#[derive(Debug)]
enum ReapedBy {
    /// This process's reaper, which lowers this flag before it reaps it.
    Here(Arc<Unreaped>),
    /// The zygote: the child is its worker for the fork numbered `seq`; `signal_group` asks
    /// the zygote to signal the worker's process group (`seq`, signal).
    Zygote {
        seq: u64,
        signal_group: fn(u64, i32),
    },
}

/// Whether a child of this process has not been reaped yet, so that its pid and its process
/// group id are still its own. Whoever signals the child by pid does it holding the lock while
/// the flag is down; the reaper raises it, under the lock, before it reaps the child.
#[derive(Debug, Default)]
pub(crate) struct Unreaped {
    reaped: Mutex<bool>,
}

impl Unreaped {
    /// Runs `signal` if the child has not been reaped, keeping the reaper from reaping it until
    /// `signal` returns; whether it ran.
    pub fn while_unreaped(&self, signal: impl FnOnce()) -> bool {
        let reaped = self.reaped.lock().unwrap_or_else(|p| p.into_inner());
        if *reaped {
            return false;
        }
        signal();
        true
    }

    /// In the reaper, once the child has ended and before it is reaped (waiting for a signal
    /// being sent to finish): nothing signals it by pid from now on.
    pub fn reaping(&self) {
        *self.reaped.lock().unwrap_or_else(|p| p.into_inner()) = true;
    }
}

impl ChildHandle {
    /// The handle of child `pid`, right after the fork (it cannot have been reaped yet: its
    /// reaper starts after this, and gets [`unreaped`](ChildHandle::unreaped)).
    pub fn new(pid: Pid) -> ChildHandle {
        ChildHandle {
            pid,
            pidfd: channel::pidfd(pid).map(Arc::new),
            reaper: ReapedBy::Here(Arc::default()),
        }
    }

    /// The handle of a worker the zygote forked for fork number `seq`, signalled through the
    /// pidfd the zygote opened before the worker could end, its group through `signal_group`.
    pub fn by_zygote(
        seq: u64,
        pid: Pid,
        pidfd: Registered<OwnedFd>,
        signal_group: fn(u64, i32),
    ) -> ChildHandle {
        ChildHandle {
            pid,
            pidfd: Some(Arc::new(pidfd)),
            reaper: ReapedBy::Zygote { seq, signal_group },
        }
    }

    /// Its process id.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Its pidfd, if it has one (for the reaper).
    pub fn pidfd(&self) -> Option<&Arc<Registered<OwnedFd>>> {
        self.pidfd.as_ref()
    }

    /// The flag its reaper raises before it reaps it (`None`: the zygote reaps it).
    pub fn unreaped(&self) -> Option<&Arc<Unreaped>> {
        match &self.reaper {
            ReapedBy::Here(unreaped) => Some(unreaped),
            ReapedBy::Zygote { .. } => None,
        }
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

    /// Sends `signal` to the child and its group, unless the child has been reaped; whether it
    /// was sent to the child (a zygote's worker: whether its pidfd took it).
    fn signal(&self, signal: Signal) -> bool {
        let to_child = || match &self.pidfd {
            Some(pidfd) => crate::sys::pidfd_signal(&***pidfd, signal as i32).is_ok(),
            None => kill(self.pid, signal).is_ok(),
        };
        match &self.reaper {
            ReapedBy::Here(unreaped) => {
                let mut sent = false;
                unreaped.while_unreaped(|| {
                    sent = to_child();
                    // Not sent: reaped behind the reaper's back (the program ignores SIGCHLD),
                    // and its group id may name another group by now.
                    if sent {
                        let _ = killpg(self.pid, signal);
                    }
                });
                sent
            }
            ReapedBy::Zygote { seq, signal_group } => {
                let sent = to_child();
                signal_group(*seq, signal as i32);
                sent
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::child::reaper::Reaping;
    use crate::error::Death;
    use crate::transport::inbox::{Event, Inbox};
    use forkpool_worker::child::setup::ChildOptions;

    #[test]
    fn a_signal_by_pid_is_sent_only_until_the_reaper_starts_reaping() {
        let unreaped = Unreaped::default();
        let mut sent = 0;
        assert!(unreaped.while_unreaped(|| sent += 1));
        unreaped.reaping();
        assert!(!unreaped.while_unreaped(|| sent += 1));
        assert_eq!(sent, 1);
    }

    /// Forks a child that exits at once with code 3, waits until its reaper has reaped it, and
    /// returns its handle.
    fn reaped_child(pidfd: bool) -> ChildHandle {
        let mut inbox = Inbox::new().unwrap();
        let pair = channel::pair().unwrap();
        let options = ChildOptions::default();
        let mut stdio = crate::child::fork::StdioHeld::take();
        let pid = crate::child::fork::spawn(&mut stdio, options, pair.child, None, None, |_, _| 3)
            .unwrap();
        drop(stdio);
        inbox.add(0, Arc::new(pair.parent), None);
        let mut child = ChildHandle::new(pid);
        if !pidfd {
            // As on macOS, or a kernel without pidfds.
            child.pidfd = None;
        }
        let reaper = Reaping::start(&child, 0, inbox.exits()).unwrap();
        loop {
            if let Some(Event::Exited { status, .. }) = inbox.next(None).unwrap() {
                assert_eq!(status, Death::Exit(3));
                break;
            }
        }
        drop(reaper);
        child
    }

    #[test]
    fn a_reaped_child_is_not_signalled_by_pid_nor_by_group() {
        for pidfd in [true, false] {
            let child = reaped_child(pidfd);
            // Its pid, and its group id, may be another process's by now.
            assert!(!child.signal(Signal::SIGKILL), "pidfd: {pidfd}");
            assert!(!child.signal(Signal::SIGTERM), "pidfd: {pidfd}");
        }
    }
}
