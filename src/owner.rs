//! The process a value belongs to: only the process that built a pool, a process handle or a
//! registered descriptor may use or release it; a copy in a forked child must leave it alone.

use crate::error::PoolError;

/// The process that built a value.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Owner(u32);

impl Owner {
    /// The calling process.
    pub fn here() -> Owner {
        Owner(std::process::id())
    }

    /// Whether the calling process is the owner. Reads no lock (a forked child may call it).
    pub fn is_here(self) -> bool {
        std::process::id() == self.0
    }

    /// `ForeignProcess` unless the calling process is the owner.
    pub fn check(self) -> Result<(), PoolError> {
        let this = std::process::id();
        if this == self.0 {
            Ok(())
        } else {
            Err(PoolError::ForeignProcess {
                owner: self.0,
                this,
            })
        }
    }
}
