//! The messages between a program and its zygote, on their control socket (datagrams that keep
//! their boundaries), with the descriptors some of them carry (`SCM_RIGHTS`).
//!
//! Every fork request carries a number the program gives it (`seq`, never reused in one
//! program), and everything the zygote says of that worker names it by that number: a pid can
//! be reused, the number cannot.
//!
//! Program → zygote:
//! - `Fork`: `[1][seq u64][fragment u64][ignore_sigint u8][show_panics u8][memory_limit u64]
//!   [init u64][init_code_id u64][notify pipe u8]` with the descriptors `[socket, page]` or
//!   `[socket, page, notify_pipe]`: fork a pool worker on the child's end of `socket`, sharing the
//!   memory of the file `page`; `memory_limit` is `u64::MAX` for none, `init` the address of
//!   the pool's initializer (0: none) and `init_code_id` its code id in the program (see
//!   `forkpool_worker::code_map`), which the zygote checks before it takes the address.
//! - `Signal`: `[2][seq u64][signal i32]`: send `signal` to the process group of worker `seq`,
//!   if it has not been reaped (the zygote reaps its workers, so only it knows).
//!
//! Zygote → program:
//! - `Forked`: `[1][seq u64][pid u32]` with the worker's pidfd: fork `seq` made worker `pid`.
//! - `Failed`: `[2][seq u64][errno i32]`: fork `seq` failed (`ENOEXEC`: the initializer's code
//!   is not loaded in the zygote; `ENOSYS`: no pidfd), and the zygote holds none of its
//!   descriptors any more.
//! - `Exited`: `[3][seq u64][kind u8][value i32]`: worker `seq` ended and was reaped (`kind` 0:
//!   exit code `value`; 1: signal `value`; 2: unknown).
//!
//! The program trusts its zygote as it trusts itself (the zygote runs none of the user's
//! tasks), but still reads every message with checked lengths. Received descriptors are in the
//! register of the receiving process from the `recvmsg` that installs them (close-on-exec at
//! once, `MSG_CMSG_CLOEXEC`): the receive waits for the datagram first, then takes it without
//! waiting under the register's lock. The program waits for room to send a fork request only
//! until its deadline, and does not wait to send a signal: a zygote that does not read is not
//! waited for.

use crate::child::channel::{self, Registered};
use crate::error::Death;
use forkpool_worker::child::setup::ChildOptions;
use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Instant;

const FORK: u8 = 1;
const SIGNAL: u8 = 2;
const FORKED: u8 = 1;
const FAILED: u8 = 2;
const EXITED: u8 = 3;

/// Flags of every send: no `SIGPIPE` where the flag exists (elsewhere the socket pair is made
/// with `SO_NOSIGPIPE`, see `sys::socket_pair`).
#[cfg(target_os = "linux")]
const SEND_FLAGS: MsgFlags = MsgFlags::MSG_NOSIGNAL;
#[cfg(not(target_os = "linux"))]
const SEND_FLAGS: MsgFlags = MsgFlags::empty();

/// Flags of every receive: it never waits (see [`receive`]), and received descriptors are
/// close-on-exec at once where the flag exists (the zygote, their one user, runs on Linux
/// only).
#[cfg(target_os = "linux")]
const RECEIVE_FLAGS: MsgFlags = MsgFlags::MSG_CMSG_CLOEXEC.union(MsgFlags::MSG_DONTWAIT);
#[cfg(not(target_os = "linux"))]
const RECEIVE_FLAGS: MsgFlags = MsgFlags::MSG_DONTWAIT;

/// The longest message either side sends.
const MAX_LEN: usize = 64;

/// What a `Fork` asks for, besides its descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ForkRequest {
    /// The program's number for this fork.
    pub seq: u64,
    /// The most frame bytes per datagram on the worker's socket (measured by the program).
    pub fragment: usize,
    /// How the worker sets itself up.
    pub options: ChildOptions,
    /// The address of the pool's initializer in the program (0: none).
    pub init: usize,
    /// Its code id in the program (see `forkpool_worker::code_map::code_id`).
    pub init_code_id: u64,
    /// Whether a notify pipe's write end comes with the request.
    pub notify_pipe: bool,
}

/// A message from the program, to the zygote.
#[derive(Debug)]
pub(crate) enum ToZygote {
    Fork(ForkRequest, Vec<Registered<OwnedFd>>),
    Signal { seq: u64, signal: i32 },
}

/// A message from the zygote, to the program.
#[derive(Debug)]
pub(crate) enum FromZygote {
    Forked {
        seq: u64,
        pid: i32,
        pidfd: Registered<OwnedFd>,
    },
    Failed {
        seq: u64,
        errno: i32,
    },
    Exited {
        seq: u64,
        status: Death,
    },
}

/// Sends `bytes` and `fds` as one datagram on `socket`, retrying on `EINTR`. While the socket
/// is full it waits until `deadline` (`None`: no limit); then the datagram is not sent, and
/// the error is `TimedOut`.
fn send(socket: RawFd, bytes: &[u8], fds: &[RawFd], deadline: Option<Instant>) -> io::Result<()> {
    let iov = [IoSlice::new(bytes)];
    let rights = [ControlMessage::ScmRights(fds)];
    let control: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &rights };
    let flags = match deadline {
        None => SEND_FLAGS,
        Some(_) => SEND_FLAGS | MsgFlags::MSG_DONTWAIT,
    };
    loop {
        match sendmsg::<()>(socket, &iov, control, flags, None) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::EAGAIN) if deadline.is_some() => {
                let mut polled = [libc::pollfd {
                    fd: socket,
                    events: libc::POLLOUT,
                    revents: 0,
                }];
                if crate::sys::poll(&mut polled, deadline)? == 0 {
                    return Err(io::ErrorKind::TimedOut.into());
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// What one `recvmsg` without waiting found.
enum Received {
    Datagram(Vec<u8>),
    Nothing,
    Closed,
}

/// A datagram's bytes and the descriptors it carried, registered.
type Datagram = (Vec<u8>, Vec<Registered<OwnedFd>>);

/// Receives one datagram on `socket` (waiting for it), with the descriptors it carries, each
/// registered from the moment it is installed here. `Ok(None)`: the other side closed the
/// socket.
fn receive(socket: RawFd) -> io::Result<Option<Datagram>> {
    loop {
        let mut polled = [libc::pollfd {
            fd: socket,
            events: libc::POLLIN,
            revents: 0,
        }];
        crate::sys::poll(&mut polled, None)?;
        match channel::receive_registered(|| receive_now(socket))? {
            (Received::Datagram(bytes), fds) => return Ok(Some((bytes, fds))),
            (Received::Closed, _) => return Ok(None),
            (Received::Nothing, _) => continue,
        }
    }
}

/// One `recvmsg` on `socket` that does not wait, with the descriptors it installed (owned,
/// close-on-exec).
fn receive_now(socket: RawFd) -> io::Result<(Received, Vec<OwnedFd>)> {
    let mut buf = [0u8; MAX_LEN];
    let mut space = nix::cmsg_space!([RawFd; 8]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let message = loop {
        match recvmsg::<()>(socket, &mut iov, Some(&mut space), RECEIVE_FLAGS) {
            Ok(message) => break message,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::EAGAIN) => return Ok((Received::Nothing, Vec::new())),
            Err(e) => return Err(e.into()),
        }
    };
    let mut fds = Vec::new();
    // An error only if the control data did not fit (the peer sent more descriptors than any
    // message carries: the two sides are one program, so never).
    for control in message.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(received) = control {
            // SAFETY: the kernel just installed these descriptors in this process for this
            // message; nobody else owns them.
            fds.extend(
                received
                    .into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    let len = message.bytes;
    if len == 0 && fds.is_empty() {
        return Ok((Received::Closed, fds));
    }
    Ok((Received::Datagram(buf[..len].to_vec()), fds))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

fn i32_at(bytes: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// Program: asks the zygote to fork a worker, waiting at most until `deadline` while its socket
/// is full.
pub(crate) fn send_fork(
    socket: RawFd,
    request: ForkRequest,
    fds: &[RawFd],
    deadline: Instant,
) -> io::Result<()> {
    let mut bytes = vec![FORK];
    bytes.extend_from_slice(&request.seq.to_le_bytes());
    bytes.extend_from_slice(&(request.fragment as u64).to_le_bytes());
    bytes.push(u8::from(request.options.ignore_sigint));
    bytes.push(u8::from(request.options.show_panics));
    let limit = request.options.memory_limit.unwrap_or(u64::MAX);
    bytes.extend_from_slice(&limit.to_le_bytes());
    bytes.extend_from_slice(&(request.init as u64).to_le_bytes());
    bytes.extend_from_slice(&request.init_code_id.to_le_bytes());
    bytes.push(u8::from(request.notify_pipe));
    send(socket, &bytes, fds, Some(deadline))
}

/// Program: asks the zygote to send `signal` to the process group of worker `seq`, without
/// waiting (an error if its socket is full).
pub(crate) fn send_signal(socket: RawFd, seq: u64, signal: i32) -> io::Result<()> {
    let mut bytes = vec![SIGNAL];
    bytes.extend_from_slice(&seq.to_le_bytes());
    bytes.extend_from_slice(&signal.to_le_bytes());
    send(socket, &bytes, &[], Some(Instant::now()))
}

/// Zygote: the next message (`None`: the program closed the socket, or sent something that is
/// no message of the protocol).
pub(crate) fn receive_to_zygote(socket: RawFd) -> Option<ToZygote> {
    let (bytes, fds) = receive(socket).ok()??;
    match *bytes.first()? {
        FORK if bytes.len() == 44 => {
            let limit = u64_at(&bytes, 19)?;
            let request = ForkRequest {
                seq: u64_at(&bytes, 1)?,
                fragment: usize::try_from(u64_at(&bytes, 9)?).ok()?,
                options: ChildOptions {
                    ignore_sigint: bytes[17] != 0,
                    show_panics: bytes[18] != 0,
                    memory_limit: (limit != u64::MAX).then_some(limit),
                },
                init: usize::try_from(u64_at(&bytes, 27)?).ok()?,
                init_code_id: u64_at(&bytes, 35)?,
                notify_pipe: bytes[43] != 0,
            };
            Some(ToZygote::Fork(request, fds))
        }
        SIGNAL if bytes.len() == 13 && fds.is_empty() => Some(ToZygote::Signal {
            seq: u64_at(&bytes, 1)?,
            signal: i32_at(&bytes, 9)?,
        }),
        _ => None,
    }
}

/// Zygote: tells the program fork `seq` made worker `pid`, whose pidfd goes with it.
pub(crate) fn send_forked(
    socket: RawFd,
    seq: u64,
    pid: i32,
    pidfd: &impl AsRawFd,
) -> io::Result<()> {
    let mut bytes = vec![FORKED];
    bytes.extend_from_slice(&seq.to_le_bytes());
    bytes.extend_from_slice(&pid.to_le_bytes());
    send(socket, &bytes, &[pidfd.as_raw_fd()], None)
}

/// Zygote: tells the program fork `seq` failed with `errno`.
pub(crate) fn send_failed(socket: RawFd, seq: u64, errno: i32) -> io::Result<()> {
    let mut bytes = vec![FAILED];
    bytes.extend_from_slice(&seq.to_le_bytes());
    bytes.extend_from_slice(&errno.to_le_bytes());
    send(socket, &bytes, &[], None)
}

/// Zygote: tells the program worker `seq` ended and was reaped.
pub(crate) fn send_exited(socket: RawFd, seq: u64, status: Death) -> io::Result<()> {
    let (kind, value) = match status {
        Death::Exit(code) => (0u8, code),
        Death::Signal(signal) => (1, signal),
        Death::Unknown => (2, 0),
    };
    let mut bytes = vec![EXITED];
    bytes.extend_from_slice(&seq.to_le_bytes());
    bytes.push(kind);
    bytes.extend_from_slice(&value.to_le_bytes());
    send(socket, &bytes, &[], None)
}

/// Program: the next message from the zygote (waiting for it). `None`: the zygote is gone (or
/// broke the protocol, which is treated the same).
pub(crate) fn receive_from_zygote(socket: RawFd) -> Option<FromZygote> {
    let (bytes, mut fds) = receive(socket).ok()??;
    match *bytes.first()? {
        FORKED if bytes.len() == 13 && fds.len() == 1 => Some(FromZygote::Forked {
            seq: u64_at(&bytes, 1)?,
            pid: i32_at(&bytes, 9)?,
            pidfd: fds.pop()?,
        }),
        FAILED if bytes.len() == 13 && fds.is_empty() => Some(FromZygote::Failed {
            seq: u64_at(&bytes, 1)?,
            errno: i32_at(&bytes, 9)?,
        }),
        EXITED if bytes.len() == 14 && fds.is_empty() => {
            let value = i32_at(&bytes, 10)?;
            let status = match bytes[9] {
                0 => Death::Exit(value),
                1 => Death::Signal(value),
                _ => Death::Unknown,
            };
            Some(FromZygote::Exited {
                seq: u64_at(&bytes, 1)?,
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
    fn every_message_reads_back_with_its_descriptors_registered() {
        let [a, b] = crate::sys::socket_pair().unwrap();
        let request = ForkRequest {
            seq: 9,
            fragment: 200_000,
            options: ChildOptions {
                ignore_sigint: true,
                show_panics: false,
                memory_limit: Some(1 << 30),
            },
            init: 0x5555_1234,
            init_code_id: 77,
            notify_pipe: true,
        };
        let [p, q] = crate::sys::pipe().unwrap();
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        send_fork(
            a.as_raw_fd(),
            request,
            &[p.as_raw_fd(), q.as_raw_fd()],
            deadline,
        )
        .unwrap();
        send_signal(a.as_raw_fd(), 9, libc::SIGTERM).unwrap();
        let Some(ToZygote::Fork(got, fds)) = receive_to_zygote(b.as_raw_fd()) else {
            panic!("no fork request");
        };
        assert_eq!((got, fds.len()), (request, 2));
        let registered = crate::child::channel::lock_register().holds(fds[0].as_raw_fd());
        assert!(registered, "a received descriptor is registered");
        assert!(matches!(
            receive_to_zygote(b.as_raw_fd()),
            Some(ToZygote::Signal {
                seq: 9,
                signal: libc::SIGTERM
            })
        ));
        send_forked(b.as_raw_fd(), 9, 42, &p).unwrap();
        send_failed(b.as_raw_fd(), 10, 11).unwrap();
        send_exited(b.as_raw_fd(), 9, Death::Signal(9)).unwrap();
        let Some(FromZygote::Forked {
            seq: 9,
            pid: 42,
            pidfd,
        }) = receive_from_zygote(a.as_raw_fd())
        else {
            panic!("no answer");
        };
        assert!(crate::child::channel::lock_register().holds(pidfd.as_raw_fd()));
        assert!(matches!(
            receive_from_zygote(a.as_raw_fd()),
            Some(FromZygote::Failed { seq: 10, errno: 11 })
        ));
        assert!(matches!(
            receive_from_zygote(a.as_raw_fd()),
            Some(FromZygote::Exited {
                seq: 9,
                status: Death::Signal(9)
            })
        ));
        drop(b);
        assert!(receive_from_zygote(a.as_raw_fd()).is_none());
    }
}
