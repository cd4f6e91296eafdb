//! Channel set-up between the parent and one child: the platform-specific part of the transport.
//!
//! On Linux, ipc-channel's socket pairs survive `fork`, so a worker's task channel is made
//! before it, and the child gets a clone of its pool's shared reply sender (see
//! [`inbox`](crate::inbox)). (On macOS, Mach ports made before a fork do not work in the child;
//! a port of this module would bootstrap through `IpcOneShotServer` instead. It is not written
//! yet: see the README.)

use crate::error::PoolError;
use forkpool_worker::ChildEnd;
use forkpool_worker::protocol::{Frame, ReplySender};
use ipc_channel::ipc::{self, IpcBytesSender};

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
        if let Ok((tx, rx)) = ipc::channel::<Frame>() {
            if tx.send(Frame(vec![0])).is_ok() {
                let _ = rx.recv();
            }
        }
    });
}

/// Makes the task channel of worker `id`, whose replies go to `replies`: the parent keeps the
/// task sender, the child gets the rest.
pub(crate) fn worker_pair(
    id: u64,
    replies: ReplySender,
) -> Result<(IpcBytesSender, ChildEnd), PoolError> {
    let (task_tx, task_rx) = ipc::bytes_channel().map_err(PoolError::Channel)?;
    let child = ChildEnd {
        id,
        tasks: task_rx,
        replies,
    };
    Ok((task_tx, child))
}
