//! A one-item call, the body of every task (`Pool::submit` and its forms, `FnPool::submit`):
//! the spec such a call runs with, and its start as a [`Task`].

use super::{Call, CallSpec, Delivery};
use crate::call_progress::ProgressSink;
use crate::engine::WorkerMain;
use crate::error::PoolError;
use crate::hub::Hub;
use crate::item::Item;
use crate::task::Task;
use forkpool_worker::protocol::TaskCode;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// Starts one item as a task on `hub` (or a task that failed already, with the hub's error),
/// its chunk sent at once.
pub(crate) fn start_task<'p, T, R>(
    hub: Result<&'p Hub, PoolError>,
    main: &'p WorkerMain<'p>,
    code: TaskCode,
    item: T,
    timeout: Option<Duration>,
    progress: Option<ProgressSink>,
) -> Task<'p, R>
where
    T: Item + 'p,
    R: DeserializeOwned + 'p,
{
    let spec = CallSpec {
        code,
        chunksize: Some(1),
        delivery: Delivery::Collected,
        context: None,
        timeout,
        progress,
    };
    match hub {
        Ok(hub) => {
            let mut call = Call::start(hub, main, Some(item).into_iter(), spec);
            call.input_hint_is_exact();
            call.start_sending();
            Task::new(Box::new(call))
        }
        Err(error) => Task::failed(error),
    }
}
