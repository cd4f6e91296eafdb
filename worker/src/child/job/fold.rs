//! Reductions inside the worker: the entries of `Pool::fold` and `Pool::map_reduce`, which fold
//! the items of a chunk into one partial result so that only partials travel back.
//!
//! A reduction still answers every item (the parent counts items, blames one on a crash and
//! reports progress per item): each item's outcome is an `Option<A>`, `None` for an item folded
//! into the chunk's accumulator and `Some(partial)` for the last item of a *run*: the items
//! folded into one accumulator, from a fresh start to the end of the chunk. An item that panics
//! loses the accumulator it was given (the fold function took it by value), so the items after it
//! start a new run; the panicking item fails, and so does the whole reduction in the parent, so
//! the partial lost with it is never needed. A chunk's outcomes travel in one reply, so the
//! parent never sees a `None` whose partial could be missing: a worker that dies mid-chunk
//! answers none of them, and they are sent again.
//!
//! Invariant: in a reply of a reduction, every item that succeeded belongs to exactly one run, and
//! every run ends with the one `Some` that holds it.

use super::{WorkerState, fail_rest, run_items};
use crate::proto::code_map;
use crate::proto::protocol::{CallCode, Chunk, ReplyWriter};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The context of a `map_reduce` call: where its reduce function is and which loaded code it
/// belongs to, checked like a task's own function before the worker calls it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReduceCode {
    /// The address of the `fn(R, R) -> R`.
    pub function: u64,
    /// [`code_map::code_id`] of the task's entry and this function, in the parent.
    pub code_id: u64,
}

/// The signature of the entries of an `FnPool`'s reductions: like [`EntryFn`](super::EntryFn),
/// with the closure the worker was forked holding, whose results are folded.
///
/// # Safety
/// As for [`EntryFn`](super::EntryFn).
pub type ClosureEntryFn<T, R> =
    unsafe fn(&mut WorkerState, &Chunk<'_>, &mut ReplyWriter, &dyn Fn(T) -> R);

/// Folds the items of a chunk into partial results: `next` takes the accumulator so far (`None`
/// at the start of a run) and an item, and returns the accumulator after it. Wraps
/// [`run_items`], so decoding, cancels, panics and progress are handled as for a map.
fn fold_items<T, A>(task: &Chunk<'_>, out: &mut ReplyWriter, next: impl FnMut(Option<A>, T) -> A)
where
    T: DeserializeOwned,
    A: Serialize,
{
    fold_runs(task, out, next, |partial| partial);
}

/// [`fold_items`], with each run's accumulator turned by `finish` into what its last item
/// answers.
pub(super) fn fold_runs<T, A, P>(
    task: &Chunk<'_>,
    out: &mut ReplyWriter,
    mut next: impl FnMut(Option<A>, T) -> A,
    finish: impl Fn(A) -> P,
) where
    T: DeserializeOwned,
    P: Serialize,
{
    let mut acc: Option<A> = None;
    let mut left = task.count;
    run_items(task, out, |item: T| {
        left = left.saturating_sub(1);
        // Taken before the call: if it panics, the next item starts a new run.
        let folded = next(acc.take(), item);
        if left == 0 {
            Some(finish(folded))
        } else {
            acc = Some(folded);
            None
        }
    });
}

/// The `fn(V, V) -> V` that `reduce` names, once its code is checked with
/// [`code_map::check`] as a task's own function is; `None` after failing every item of `task`
/// with `CODE_NOT_LOADED` when it is not mapped here.
///
/// # Safety
/// `reduce` must have been made by the parent from a `fn(V, V) -> V` of these very types.
pub(super) unsafe fn checked_reduce<V>(
    task: &Chunk<'_>,
    out: &mut ReplyWriter,
    reduce: ReduceCode,
) -> Option<fn(V, V) -> V> {
    let code = CallCode {
        entry: task.code.entry,
        function: reduce.function,
        code_id: reduce.code_id,
    };
    if let Err(address) = code_map::check(&code) {
        for _ in 0..task.count {
            out.code_not_loaded(address);
        }
        return None;
    }
    // SAFETY: the parent took `reduce.function` from a `fn(V, V) -> V` of these types (the
    // caller's promise), and `code_map::check` just confirmed that its code is mapped here where
    // it was in the parent.
    Some(unsafe { std::mem::transmute::<usize, fn(V, V) -> V>(reduce.function as usize) })
}

/// Entry for `Pool::fold`: folds each run of items with the `fn(A, T) -> A` at
/// `task.code.function`, starting from a clone of the call's context (the initial value).
///
/// # Safety
/// As for [`plain_entry`](super::plain_entry), with `fn(A, T) -> A` for `fn(T) -> R`, and the
/// call's context an encoded `A`.
pub unsafe fn fold_entry<A, T>(state: &mut WorkerState, task: &Chunk<'_>, out: &mut ReplyWriter)
where
    A: Serialize + DeserializeOwned + Clone + 'static,
    T: DeserializeOwned,
{
    // SAFETY: the caller promises the address is that of a callable `fn(A, T) -> A`.
    let f = unsafe { std::mem::transmute::<usize, fn(A, T) -> A>(task.code.function as usize) };
    match state.context::<A>(task.call) {
        Ok(init) => fold_items(task, out, |acc: Option<A>, item: T| {
            f(acc.unwrap_or_else(|| init.clone()), item)
        }),
        Err(message) => fail_rest(out, task.count, &message),
    }
}

/// Entry for `Pool::map_reduce`: maps each item with the `fn(T) -> R` at `task.code.function`
/// and reduces each run of results with the `fn(R, R) -> R` the call's context names.
///
/// # Safety
/// As for [`plain_entry`](super::plain_entry), and the call's context an encoded
/// [`ReduceCode`] that the parent made from a `fn(R, R) -> R` (its code is checked with
/// [`code_map::check`] before it is called).
pub unsafe fn reduce_entry<T, R>(state: &mut WorkerState, task: &Chunk<'_>, out: &mut ReplyWriter)
where
    T: DeserializeOwned,
    R: Serialize,
{
    // SAFETY: the caller promises the address is that of a callable `fn(T) -> R`.
    let map = unsafe { std::mem::transmute::<usize, fn(T) -> R>(task.code.function as usize) };
    let reduce = match state.context::<ReduceCode>(task.call) {
        Ok(reduce) => *reduce,
        Err(message) => return fail_rest(out, task.count, &message),
    };
    // SAFETY: the parent made `reduce` from a `fn(R, R) -> R` of these types (the caller's
    // promise).
    let Some(reduce) = (unsafe { checked_reduce::<R>(task, out, reduce) }) else {
        return;
    };
    fold_items(task, out, |acc: Option<R>, item: T| {
        let mapped = map(item);
        match acc {
            Some(acc) => reduce(acc, mapped),
            None => mapped,
        }
    });
}

/// Entry for `FnPool::fold`: maps each item with the worker's closure and folds each run of
/// results with the `fn(A, R) -> A` at `task.code.function`, starting from a clone of the call's
/// context (the initial value).
///
/// # Safety
/// As for [`plain_entry`](super::plain_entry), with `fn(A, R) -> A` for `fn(T) -> R`, and the
/// call's context an encoded `A`.
pub unsafe fn closure_fold_entry<T, R, A>(
    state: &mut WorkerState,
    task: &Chunk<'_>,
    out: &mut ReplyWriter,
    map: &dyn Fn(T) -> R,
) where
    T: DeserializeOwned,
    A: Serialize + DeserializeOwned + Clone + 'static,
{
    // SAFETY: the caller promises the address is that of a callable `fn(A, R) -> A`.
    let f = unsafe { std::mem::transmute::<usize, fn(A, R) -> A>(task.code.function as usize) };
    match state.context::<A>(task.call) {
        Ok(init) => fold_items(task, out, |acc: Option<A>, item: T| {
            f(acc.unwrap_or_else(|| init.clone()), map(item))
        }),
        Err(message) => fail_rest(out, task.count, &message),
    }
}

/// Entry for `FnPool::map_reduce`: maps each item with the worker's closure and reduces each
/// run of results with the `fn(R, R) -> R` at `task.code.function`.
///
/// # Safety
/// As for [`plain_entry`](super::plain_entry), with `fn(R, R) -> R` for `fn(T) -> R`.
pub unsafe fn closure_reduce_entry<T, R>(
    _: &mut WorkerState,
    task: &Chunk<'_>,
    out: &mut ReplyWriter,
    map: &dyn Fn(T) -> R,
) where
    T: DeserializeOwned,
    R: Serialize,
{
    // SAFETY: the caller promises the address is that of a callable `fn(R, R) -> R`.
    let reduce =
        unsafe { std::mem::transmute::<usize, fn(R, R) -> R>(task.code.function as usize) };
    fold_items(task, out, |acc: Option<R>, item: T| {
        let mapped = map(item);
        match acc {
            Some(acc) => reduce(acc, mapped),
            None => mapped,
        }
    });
}

/// The address of `entry`, as a chunk frame carries it.
pub fn closure_entry_address<T, R>(entry: ClosureEntryFn<T, R>) -> u64 {
    entry as usize as u64
}
