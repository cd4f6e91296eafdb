//! The zygote process itself: it forks pool workers when the program asks, and tells the
//! program when they end. It runs no task; it was forked when the program was small, so each
//! fork it makes copies little.
//!
//! Invariants:
//! - A worker is forked through `fork::spawn`, as every child of this crate: it keeps only its
//!   own socket, notify pipe and shared page, and leaves through `_exit`. Every descriptor the
//!   zygote holds is in its register from the call that makes it (the descriptors it receives,
//!   its workers' pidfds), so a worker holds none of another worker's.
//! - Every worker the zygote forked is watched through its pidfd, reaped once it ends (with
//!   what is left of its process group, as the program's own reaper does) and reported to the
//!   program exactly once, by the number the program gave its fork. The zygote answers a
//!   `Fork` before it can report that worker's end.
//! - The zygote signals a worker's process group only while the worker is unreaped: this one
//!   thread both reaps and signals, so the group id is still the worker's own.
//! - The zygote ends when the program closes the control socket (or dies: the zygote has the
//!   program as its parent, so the parent-death signal ends it); its workers then die with it.

use super::message::{self, ForkRequest, ToZygote};
use crate::child::channel::{self, Registered};
use crate::child::fork;
use forkpool_worker::ChildEnd;
use forkpool_worker::code_map;
use forkpool_worker::protocol::CallCode;
use forkpool_worker::{InitFn, progress};
use nix::unistd::Pid;
use std::os::fd::{AsRawFd, OwnedFd};

/// A worker the zygote forked and has not reaped.
struct Worker {
    /// The program's number for its fork.
    seq: u64,
    pid: Pid,
    pidfd: Registered<OwnedFd>,
}

/// The zygote's loop on its end of the control socket. Returns its exit code.
pub(super) fn serve(control: OwnedFd) -> i32 {
    let socket = control.as_raw_fd();
    let mut workers: Vec<Worker> = Vec::new();
    loop {
        let mut polled: Vec<libc::pollfd> = std::iter::once(socket)
            .chain(workers.iter().map(|worker| worker.pidfd.as_raw_fd()))
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        if crate::sys::poll(&mut polled, None).is_err() {
            return 1;
        }
        // Ends first: a worker's end is reported before anything asked after it.
        let mut index = 0;
        workers.retain(|worker| {
            index += 1;
            if polled[index].revents == 0 {
                return true;
            }
            let status = crate::sys::wait_for_exit(worker.pid, || ());
            let _ = message::send_exited(socket, worker.seq, status);
            false
        });
        if polled[0].revents == 0 {
            continue;
        }
        match message::receive_to_zygote(socket) {
            // The program is gone (or broke the protocol): the workers die with us.
            None => return 0,
            Some(ToZygote::Fork(request, fds)) => match fork_worker(request, fds) {
                Ok(worker) => {
                    let (seq, pid) = (worker.seq, worker.pid.as_raw());
                    let _ = message::send_forked(socket, seq, pid, &*worker.pidfd);
                    workers.push(worker);
                }
                Err(errno) => {
                    let _ = message::send_failed(socket, request.seq, errno);
                }
            },
            Some(ToZygote::Signal { seq, signal }) => {
                if let Some(worker) = workers.iter().find(|w| w.seq == seq) {
                    // Unreaped (only this loop reaps it): its group id is still its own.
                    // SAFETY: killpg takes a process group id and a signal number; a number
                    // that is no signal is refused with EINVAL.
                    unsafe { libc::killpg(worker.pid.as_raw(), signal) };
                }
            }
        }
    }
}

/// Forks the worker a request asks for; the worker, or the errno to answer. By the time it
/// returns, the zygote holds none of the request's descriptors.
fn fork_worker(request: ForkRequest, fds: Vec<Registered<OwnedFd>>) -> Result<Worker, i32> {
    let init = init_function(&request)?;
    let expected = 2 + usize::from(request.notify_pipe);
    if fds.len() != expected {
        return Err(libc::EINVAL);
    }
    let mut fds = fds.into_iter();
    let (Some(socket), Some(page_file)) = (fds.next(), fds.next()) else {
        return Err(libc::EINVAL);
    };
    let notify_pipe = fds.next();
    let page = channel::shared_region_of_file(&page_file).map_err(pool_errno)?;
    drop(page_file);
    let socket = socket.into_socket(request.fragment);
    let address = page.address();
    let pid = fork::spawn(
        &mut fork::StdioHeld::take(),
        request.options,
        socket,
        notify_pipe,
        Some(address),
        move |socket, notify_pipe| {
            // SAFETY: `address` is the page mapped above, before this process was forked.
            unsafe { progress::install(address) };
            crate::child::pool_worker::serve_pool_worker(
                ChildEnd {
                    socket,
                    notify_pipe,
                },
                init,
            )
        },
    )
    .map_err(pool_errno)?;
    drop(page); // the worker has its copy of the mapping; the zygote needs none
    match channel::pidfd(pid) {
        Some(pidfd) => Ok(Worker {
            seq: request.seq,
            pid,
            pidfd,
        }),
        None => {
            // Not watched, it could never be reported: it must not live. (Unreaped, so its
            // pid is still its own.)
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            crate::sys::wait_for_exit(pid, || ());
            Err(libc::ENOSYS)
        }
    }
}

/// The pool's initializer, if it has one and its code is mapped here as in the program.
fn init_function(request: &ForkRequest) -> Result<Option<InitFn>, i32> {
    if request.init == 0 {
        return Ok(None);
    }
    let code = CallCode {
        entry: request.init as u64,
        function: request.init as u64,
        code_id: request.init_code_id,
    };
    code_map::check(&code).map_err(|_| libc::ENOEXEC)?;
    // SAFETY: the address is that of the program's `fn()` initializer, and `code_map::check`
    // found it in executable code loaded here as in the program (same object, same place): the
    // zygote is a fork of the program, so it is that same function.
    Ok(Some(unsafe {
        std::mem::transmute::<usize, InitFn>(request.init)
    }))
}

fn errno(error: std::io::Error) -> i32 {
    error.raw_os_error().unwrap_or(libc::EIO)
}

fn pool_errno(error: crate::error::PoolError) -> i32 {
    match error {
        crate::error::PoolError::Fork(e) | crate::error::PoolError::Channel(e) => errno(e),
        _ => libc::EIO,
    }
}
