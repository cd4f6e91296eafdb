//! The life of a `Pool` worker, forked by this process or by the zygote.

use forkpool_worker::{EntryRunner, InitFn};

/// The life of a `Pool` worker, forked by this process or by the zygote: the worker loop with
/// the pool's initializer and a runner of `job` entries. Returns the exit code.
pub(crate) fn serve_pool_worker(end: forkpool_worker::ChildEnd, init: Option<InitFn>) -> i32 {
    // SAFETY: this runs only in a worker forked for a `Pool` (see `Engine::spawn` and the
    // zygote's `fork_worker`), whose task channel carries only frames `call` wrote for
    // `EntryRunner`: entry addresses of `job` entries and fn pointers of the types each entry
    // expects, which the worker checks against the code mapped in it.
    unsafe {
        let mut runner = EntryRunner::new();
        forkpool_worker::serve(end, init, &mut runner)
    }
}
