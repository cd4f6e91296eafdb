//! The messages between a program and its zygote, on their control socket (datagrams that keep
//! their boundaries), with the descriptors some of them carry (`SCM_RIGHTS`).
//!
//! Program → zygote:
//! - `Fork`: `[1][fragment u64][ignore_sigint u8][show_panics u8][memory_limit u64]
//!   [init u64][init_code_id u64][doorbell u8]` with the descriptors `[socket, page]` or `[socket, page,
//!   doorbell]`: fork a pool worker on the child's end of `socket`, sharing the memory of the
//!   file `page`; `memory_limit` is `u64::MAX` for none, `init` the address of the pool's
//!   initializer (0: none) and `init_code_id` its code id in the program (see
//!   `forkpool_worker::code_map`), which the zygote checks before it takes the address.
//!
//! Zygote → program:
//! - `Forked`: `[1][pid u32]` with the worker's pidfd (or no descriptor, where the zygote could
//!   not open one): the answer to the oldest `Fork` not answered yet.
//! - `Failed`: `[2][errno i32]`: that `Fork` failed (`ENOEXEC`: the initializer's code is not
//!   loaded in the zygote).
//! - `Exited`: `[3][pid u32][kind u8][value i32]`: a worker it forked ended and was reaped
//!   (`kind` 0: exit code `value`; 1: signal `value`; 2: unknown).
//!
//! The program trusts its zygote as it trusts itself (the zygote runs none of the user's
//! tasks), but still reads every message with checked lengths.

use forkpool_worker::child::ChildOptions;
use forkpool_worker::protocol::ExitStatus;
use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const FORK: u8 = 1;
const FORKED: u8 = 1;
const FAILED: u8 = 2;
const EXITED: u8 = 3;

/// Flags of every send: no `SIGPIPE` where the flag exists (elsewhere the socket pair is made
/// with `SO_NOSIGPIPE`, see `sys::socket_pair`).
#[cfg(target_os = "linux")]
const SEND_FLAGS: MsgFlags = MsgFlags::MSG_NOSIGNAL;
#[cfg(not(target_os = "linux"))]
const SEND_FLAGS: MsgFlags = MsgFlags::empty();

/// Flags of every receive: received descriptors are close-on-exec at once where the flag
/// exists (the zygote, their one user, runs on Linux only).
#[cfg(target_os = "linux")]
const RECEIVE_FLAGS: MsgFlags = MsgFlags::MSG_CMSG_CLOEXEC;
#[cfg(not(target_os = "linux"))]
const RECEIVE_FLAGS: MsgFlags = MsgFlags::empty();

/// The longest message either side sends.
const MAX_LEN: usize = 64;

/// What a `Fork` asks for, besides its descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ForkRequest {
    /// The most frame bytes per datagram on the worker's socket (measured by the program).
    pub fragment: usize,
    /// How the worker sets itself up.
    pub options: ChildOptions,
    /// The address of the pool's initializer in the program (0: none).
    pub init: usize,
    /// Its code id in the program (see `forkpool_worker::code_map::code_id`).
    pub init_code_id: u64,
    /// Whether a doorbell pipe's write end comes with the request.
    pub doorbell: bool,
}

/// A message from the zygote.
#[derive(Debug)]
pub(crate) enum FromZygote {
    Forked { pid: i32, pidfd: Option<OwnedFd> },
    Failed { errno: i32 },
    Exited { pid: i32, status: ExitStatus },
}

/// Sends `bytes` and `fds` as one datagram on `socket`, retrying on `EINTR`.
fn send(socket: RawFd, bytes: &[u8], fds: &[RawFd]) -> std::io::Result<()> {
    let iov = [IoSlice::new(bytes)];
    let rights = [ControlMessage::ScmRights(fds)];
    let control: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &rights };
    loop {
        match sendmsg::<()>(socket, &iov, control, SEND_FLAGS, None) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Receives one datagram on `socket` (blocking), with the descriptors it carries (taken as
/// owned, close-on-exec). `Ok(None)`: the other side closed the socket.
fn receive(socket: RawFd) -> std::io::Result<Option<(Vec<u8>, Vec<OwnedFd>)>> {
    let mut buf = [0u8; MAX_LEN];
    let mut space = nix::cmsg_space!([RawFd; 4]);
    loop {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let message = match recvmsg::<()>(socket, &mut iov, Some(&mut space), RECEIVE_FLAGS) {
            Ok(message) => message,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        let mut fds = Vec::new();
        for control in message.cmsgs().map_err(std::io::Error::from)? {
            if let ControlMessageOwned::ScmRights(received) = control {
                // SAFETY: the kernel just installed these descriptors in this process for
                // this message; nobody else owns them.
                fds.extend(
                    received
                        .into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
        let len = message.bytes;
        if len == 0 && fds.is_empty() {
            return Ok(None);
        }
        return Ok(Some((buf[..len].to_vec(), fds)));
    }
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

fn i32_at(bytes: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// Program: asks the zygote to fork a worker.
pub(crate) fn send_fork(socket: RawFd, request: ForkRequest, fds: &[RawFd]) -> std::io::Result<()> {
    let mut bytes = vec![FORK];
    bytes.extend_from_slice(&(request.fragment as u64).to_le_bytes());
    bytes.push(u8::from(request.options.ignore_sigint));
    bytes.push(u8::from(request.options.show_panics));
    let limit = request.options.memory_limit.unwrap_or(u64::MAX);
    bytes.extend_from_slice(&limit.to_le_bytes());
    bytes.extend_from_slice(&(request.init as u64).to_le_bytes());
    bytes.extend_from_slice(&request.init_code_id.to_le_bytes());
    bytes.push(u8::from(request.doorbell));
    send(socket, &bytes, fds)
}

/// Zygote: the next request (`None`: the program closed the socket, or sent something that
/// is no request), with its descriptors.
pub(crate) fn receive_fork(socket: RawFd) -> Option<(ForkRequest, Vec<OwnedFd>)> {
    let (bytes, fds) = receive(socket).ok()??;
    if bytes.first() != Some(&FORK) || bytes.len() != 36 {
        return None;
    }
    let limit = u64_at(&bytes, 11)?;
    let request = ForkRequest {
        fragment: usize::try_from(u64_at(&bytes, 1)?).ok()?,
        options: ChildOptions {
            ignore_sigint: bytes[9] != 0,
            show_panics: bytes[10] != 0,
            memory_limit: (limit != u64::MAX).then_some(limit),
        },
        init: usize::try_from(u64_at(&bytes, 19)?).ok()?,
        init_code_id: u64_at(&bytes, 27)?,
        doorbell: bytes[35] != 0,
    };
    Some((request, fds))
}

/// Zygote: tells the program the worker it asked for is `pid`, with its pidfd if there is one.
pub(crate) fn send_forked(socket: RawFd, pid: i32, pidfd: Option<&OwnedFd>) -> std::io::Result<()> {
    let mut bytes = vec![FORKED];
    bytes.extend_from_slice(&pid.to_le_bytes());
    let fds: Vec<RawFd> = pidfd.iter().map(|fd| fd.as_raw_fd()).collect();
    send(socket, &bytes, &fds)
}

/// Zygote: tells the program its request failed with `errno`.
pub(crate) fn send_failed(socket: RawFd, errno: i32) -> std::io::Result<()> {
    let mut bytes = vec![FAILED];
    bytes.extend_from_slice(&errno.to_le_bytes());
    send(socket, &bytes, &[])
}

/// Zygote: tells the program worker `pid` ended and was reaped.
pub(crate) fn send_exited(socket: RawFd, pid: i32, status: ExitStatus) -> std::io::Result<()> {
    let (kind, value) = match status {
        ExitStatus::Code(code) => (0u8, code),
        ExitStatus::Signal(signal) => (1, signal),
        ExitStatus::Unknown => (2, 0),
    };
    let mut bytes = vec![EXITED];
    bytes.extend_from_slice(&pid.to_le_bytes());
    bytes.push(kind);
    bytes.extend_from_slice(&value.to_le_bytes());
    send(socket, &bytes, &[])
}

/// Program: the next message from the zygote (blocking). `None`: the zygote is gone (or broke
/// the protocol, which is treated the same).
pub(crate) fn receive_from_zygote(socket: RawFd) -> Option<FromZygote> {
    let (bytes, mut fds) = receive(socket).ok()??;
    match *bytes.first()? {
        FORKED if bytes.len() == 5 && fds.len() <= 1 => Some(FromZygote::Forked {
            pid: i32_at(&bytes, 1)?,
            pidfd: fds.pop(),
        }),
        FAILED if bytes.len() == 5 && fds.is_empty() => Some(FromZygote::Failed {
            errno: i32_at(&bytes, 1)?,
        }),
        EXITED if bytes.len() == 10 && fds.is_empty() => {
            let value = i32_at(&bytes, 6)?;
            let status = match bytes[5] {
                0 => ExitStatus::Code(value),
                1 => ExitStatus::Signal(value),
                _ => ExitStatus::Unknown,
            };
            Some(FromZygote::Exited {
                pid: i32_at(&bytes, 1)?,
                status,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_reads_back_with_its_descriptors() {
        let [a, b] = crate::sys::socket_pair().unwrap();
        let request = ForkRequest {
            fragment: 200_000,
            options: ChildOptions {
                ignore_sigint: true,
                show_panics: false,
                memory_limit: Some(1 << 30),
            },
            init: 0x5555_1234,
            init_code_id: 77,
            doorbell: true,
        };
        let [p, q] = crate::sys::pipe().unwrap();
        send_fork(a.as_raw_fd(), request, &[p.as_raw_fd(), q.as_raw_fd()]).unwrap();
        let (got, fds) = receive_fork(b.as_raw_fd()).unwrap();
        assert_eq!((got, fds.len()), (request, 2));
        send_forked(b.as_raw_fd(), 42, Some(&p)).unwrap();
        send_failed(b.as_raw_fd(), 11).unwrap();
        send_exited(b.as_raw_fd(), 42, ExitStatus::Signal(9)).unwrap();
        assert!(matches!(
            receive_from_zygote(a.as_raw_fd()),
            Some(FromZygote::Forked {
                pid: 42,
                pidfd: Some(_)
            })
        ));
        assert!(matches!(
            receive_from_zygote(a.as_raw_fd()),
            Some(FromZygote::Failed { errno: 11 })
        ));
        assert!(matches!(
            receive_from_zygote(a.as_raw_fd()),
            Some(FromZygote::Exited {
                pid: 42,
                status: ExitStatus::Signal(9)
            })
        ));
        drop(b);
        assert!(receive_from_zygote(a.as_raw_fd()).is_none());
    }
}
