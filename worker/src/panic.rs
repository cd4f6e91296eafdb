//! Capturing panics inside a child: message and location go into the reply, not to stderr.
//!
//! The child installs [`install_hook`] once after fork. The hook records the panic's message and
//! location in a thread-local; the code that caught the unwind takes the record with
//! [`take_report`].

use std::any::Any;
use std::cell::RefCell;

thread_local! {
    static LAST: RefCell<Option<(String, Option<String>)>> = const { RefCell::new(None) };
}

fn payload_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

/// Replaces the panic hook of this (child) process: panics are recorded, and printed to stderr
/// only when `show` is set.
pub fn install_hook(show: bool) {
    std::panic::set_hook(Box::new(move |info| {
        let message = payload_message(info.payload());
        let location = info.location().map(|l| l.to_string());
        if show {
            eprintln!(
                "forkpool worker {}: panicked at {}: {}",
                std::process::id(),
                location.as_deref().unwrap_or("<unknown>"),
                message
            );
        }
        LAST.with(|last| *last.borrow_mut() = Some((message, location)));
    }));
}

/// The message and location of the panic whose unwind produced `payload`.
///
/// Uses what the hook recorded when there is a record; falls back to the payload itself.
pub fn take_report(payload: Box<dyn Any + Send>) -> (String, Option<String>) {
    LAST.with(|last| last.borrow_mut().take())
        .unwrap_or_else(|| (payload_message(&*payload), None))
}
