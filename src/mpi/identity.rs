//! Which program this is, and how a function's address becomes one that means the same function
//! in another rank.
//!
//! Each rank loads the executable at its own random base (ASLR), so a function pointer means
//! nothing in another process. What travels is the function's offset from [`anchor`], a fixed
//! function of this crate, and only for code of the executable itself (checked with `dladdr`):
//! shared libraries load at bases of their own. The offset means the same function only in the
//! same binary, so at start-up every rank sends rank 0 a hash of its executable's bytes.

use crate::mpi::Error;
use std::hash::Hasher;
use std::io::Read;

/// The fixed symbol offsets are taken from. Never called; only its address matters.
#[inline(never)]
fn anchor() {}

/// This program's executable, identified by its length and a hash of its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    pub len: u64,
    pub hash: u64,
}

/// Reads the running executable (`/proc/self/exe` on Linux, which names the file this process
/// runs even if it was replaced on disk since) and hashes it.
pub(crate) fn this_program() -> std::io::Result<Identity> {
    let path = if cfg!(target_os = "linux") {
        std::path::PathBuf::from("/proc/self/exe")
    } else {
        std::env::current_exe()?
    };
    // Registered while open, as every descriptor of this crate: a fork meanwhile closes it.
    let file = crate::child::channel::open_registered(|| std::fs::File::open(path))?;
    let mut file = &*file;
    // SipHash with fixed keys: the same bytes give the same hash in every rank of one build.
    let mut hasher = std::hash::DefaultHasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.write(&buf[..n]);
        len += n as u64;
    }
    Ok(Identity {
        len,
        hash: hasher.finish(),
    })
}

/// The base address and name of the loaded object holding `address`, if any.
fn object_of(address: usize) -> Option<(usize, String)> {
    // SAFETY: an all-zero Dl_info is a valid value of the plain C struct (null pointers).
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr only reads the loader's tables; `info` is a valid out-parameter.
    let found = unsafe { libc::dladdr(address as *const libc::c_void, &mut info) };
    if found == 0 {
        return None;
    }
    let name = if info.dli_fname.is_null() {
        String::from("an unnamed object")
    } else {
        // SAFETY: dladdr set dli_fname to a NUL-terminated string owned by the loader.
        unsafe { std::ffi::CStr::from_ptr(info.dli_fname) }
            .to_string_lossy()
            .into_owned()
    };
    Some((info.dli_fbase as usize, name))
}

fn anchor_address() -> usize {
    anchor as fn() as usize
}

/// The offset of the code at `address` from the anchor, if it is code of the executable.
pub(crate) fn offset_of(address: u64) -> Result<u64, Error> {
    let here = object_of(anchor_address()).map(|(base, _)| base);
    match object_of(address as usize) {
        Some((base, _)) if Some(base) == here => {
            Ok((address as usize).wrapping_sub(anchor_address()) as u64)
        }
        Some((_, object)) => Err(Error::NotInExecutable { address, object }),
        None => Err(Error::NotInExecutable {
            address,
            object: String::from("no loaded object"),
        }),
    }
}

/// The address of the code at `offset` from the anchor, if it falls in the executable.
pub(crate) fn address_at(offset: u64) -> Option<usize> {
    let address = anchor_address().wrapping_add(offset as usize);
    let here = object_of(anchor_address()).map(|(base, _)| base)?;
    let (base, _) = object_of(address)?;
    (base == here).then_some(address)
}

/// This process's rank as the launcher announced it in the environment before MPI starts
/// (Open MPI, PMIx, MPICH's Hydra, Slurm), if it did.
pub(crate) fn rank_hint() -> Option<i32> {
    [
        "OMPI_COMM_WORLD_RANK",
        "PMIX_RANK",
        "PMI_RANK",
        "SLURM_PROCID",
    ]
    .iter()
    .find_map(|name| std::env::var(name).ok()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn double(x: u64) -> u64 {
        2 * x
    }

    #[test]
    fn a_function_of_the_executable_goes_there_and_back() {
        let f = double as fn(u64) -> u64 as usize as u64;
        let offset = offset_of(f).unwrap();
        assert_eq!(address_at(offset), Some(f as usize));
    }

    #[test]
    fn a_libc_function_is_not_in_the_executable() {
        let strlen = libc::strlen as unsafe extern "C" fn(*const libc::c_char) -> usize;
        let err = offset_of(strlen as usize as u64).unwrap_err();
        assert!(matches!(err, Error::NotInExecutable { .. }), "{err}");
        assert!(err.to_string().contains("libc"), "{err}");
    }

    #[test]
    fn the_executable_hashes_the_same_twice() {
        let a = this_program().unwrap();
        assert_eq!(a, this_program().unwrap());
        assert!(a.len > 0);
    }
}
