//! `ReturnProcess`: run one closure in its own forked child and get its value back on `join`.
//!
//! Shows a closure that borrows a local `Vec` (the child sees it through fork, nothing is
//! serialized on the way in), a closure that panics (the panic comes back as an error, the
//! parent goes on), and `join_timeout` on a quick child.
//!
//! Run it with:
//!
//! ```text
//! cargo run --example return_process
//! ```

use forkpool::{Error, ItemError, ProcessError, ReturnProcess};
use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 1. A closure borrowing a local: the child sums the parent's Vec, only the sum travels.
    let numbers: Vec<u64> = (1..=1_000_000).collect();
    let child = ReturnProcess::spawn(|| numbers.iter().sum::<u64>())?;
    let child_pid = child.pid();
    let sum = child.join()?;
    println!("child {child_pid} summed the borrowed Vec: {sum}");
    let expected = numbers.iter().sum::<u64>();
    if sum != expected {
        return Err(format!("the child's sum {sum} differs from the parent's {expected}").into());
    }

    // 2. A closure that panics: `join` returns a ProcessError whose cause is
    //    ItemError::Panicked, told of the process; the parent is unaffected.
    let input = "forty-two";
    let child = ReturnProcess::spawn(|| -> u64 { input.parse().expect("the input is a number") })?;
    match child.join() {
        Err(Error::Process(
            e @ ProcessError {
                cause: ItemError::Panicked { .. },
                ..
            },
        )) => {
            println!("the panicking child reported: {e}");
            if !e.to_string().contains("the input is a number") {
                return Err(format!("unexpected panic message: {e}").into());
            }
        }
        Err(e) => return Err(format!("expected a panic, got: {e}").into()),
        Ok(v) => return Err(format!("expected a panic, got the value {v}").into()),
    }

    // 3. join_timeout on a quick child: the value arrives well within the limit.
    let mut child = ReturnProcess::spawn(|| format!("hello from process {}", std::process::id()))?;
    let child_pid = child.pid();
    let Some(greeting) = child.join_timeout(Duration::from_secs(10))? else {
        return Err("the child sent no value within 10 s".into());
    };
    println!("join_timeout returned: {greeting:?}");
    if greeting != format!("hello from process {child_pid}") {
        return Err(format!("unexpected greeting {greeting:?} from child {child_pid}").into());
    }
    // The value has been taken: asking again is an error, not a hang.
    match child.join_timeout(Duration::from_secs(1)) {
        Err(e) => println!("a second join_timeout says: {e}"),
        Ok(v) => return Err(format!("a second join_timeout returned {v:?}").into()),
    }

    println!("all values verified");
    Ok(())
}
