//! Channel set-up between the parent and one child: the platform-specific part of the transport.
//!
//! On Linux, ipc-channel's socket pairs survive `fork`, so both pairs are made before it. (On
//! macOS, Mach ports made before a fork do not work in the child; a port of this module would
//! bootstrap through `IpcOneShotServer` instead. It is not written yet: see the README.)

use crate::error::PoolError;
use forkpool_worker::ChildEnd;
use ipc_channel::ipc::{self, IpcBytesReceiver, IpcBytesSender};

/// The parent's ends of a worker's channels.
pub(crate) struct ParentEnd {
    /// Tasks go to the worker here.
    pub tasks: IpcBytesSender,
    /// Replies come from the worker here.
    pub replies: IpcBytesReceiver,
    /// A clone of the worker's reply sender, kept so the parent's watcher can inject the
    /// `Exited` sentinel after every reply the worker sent.
    pub sentinel: IpcBytesSender,
}

/// Makes sure ipc-channel's lazily initialised globals are initialised, before a fork.
///
/// ipc-channel measures the socket send buffer on its first send (a `LazyLock`). A child forked
/// while another thread of the parent was inside that first initialisation would find it
/// "running" forever and block on its first send (seen under `cargo test`: a `ReturnProcess`
/// child stuck in `Once::call`). One send in the parent, before the first fork, settles it: a
/// later fork copies a finished value.
pub(crate) fn settle_before_fork() {
    static SETTLED: std::sync::Once = std::sync::Once::new();
    SETTLED.call_once(|| {
        if let Ok((tx, rx)) = ipc::bytes_channel() {
            if tx.send(&[0]).is_ok() {
                let _ = rx.recv();
            }
        }
    });
}

/// Makes the two channels of one worker.
pub(crate) fn worker_pair() -> Result<(ParentEnd, ChildEnd), PoolError> {
    let (task_tx, task_rx) = ipc::bytes_channel().map_err(PoolError::Channel)?;
    let (reply_tx, reply_rx) = ipc::bytes_channel().map_err(PoolError::Channel)?;
    let parent = ParentEnd {
        tasks: task_tx,
        replies: reply_rx,
        sentinel: reply_tx.clone(),
    };
    let child = ChildEnd {
        tasks: task_rx,
        replies: reply_tx,
    };
    Ok((parent, child))
}

/// The parent's end of a one-shot result channel (for `ReturnProcess`).
pub(crate) struct ResultEnd {
    /// The result comes from the child here.
    pub replies: IpcBytesReceiver,
    /// Kept for the watcher's `Exited` sentinel, as in [`ParentEnd`].
    pub sentinel: IpcBytesSender,
}

/// Makes the one channel of a one-shot child: the child gets the sender.
pub(crate) fn result_pair() -> Result<(ResultEnd, IpcBytesSender), PoolError> {
    let (tx, rx) = ipc::bytes_channel().map_err(PoolError::Channel)?;
    Ok((
        ResultEnd {
            replies: rx,
            sentinel: tx.clone(),
        },
        tx,
    ))
}
