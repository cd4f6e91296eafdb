//! Helpers shared by the integration tests: a real crash, whether a process has ended, a
//! watchdog for calls that must return, a worker's own socket and mapping, and a worker's
//! stderr silenced before a failure the test expects.

#![allow(dead_code)] // each test file uses its own subset

use std::sync::OnceLock;
use std::time::Duration;

/// The test binary's own process, set by [`mark_test_process`] before it builds a pool: its
/// workers are forks that inherit it, and so tell themselves from it.
static TEST_PROCESS: OnceLock<u32> = OnceLock::new();

/// Records this process as the test's own, so [`quiet_stderr`] refuses to run in it. Call it
/// before building the pool whose workers call `quiet_stderr`.
pub fn mark_test_process() {
    TEST_PROCESS.get_or_init(std::process::id);
}

/// Points this worker's stderr at `/dev/null`, for a task about to fail as the test expects
/// in a way std reports on stderr (an allocation past the memory limit prints "memory
/// allocation of N bytes failed" before it aborts), so the test's output shows only what
/// went wrong. Panics in the test's own process (or before [`mark_test_process`]): the
/// test's stderr is never silenced.
pub fn quiet_stderr() {
    let test_process = TEST_PROCESS.get().expect("mark_test_process() first");
    assert_ne!(
        *test_process,
        std::process::id(),
        "quiet_stderr runs in workers only"
    );
    // SAFETY: opens /dev/null, duplicates it onto descriptor 2 and closes the spare; no Rust
    // object owns descriptor 2, and this worker writes nothing it needs afterwards.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        assert!(null >= 0, "open /dev/null");
        libc::dup2(null, libc::STDERR_FILENO);
        libc::close(null);
    }
}

/// Whether `pid` is gone entirely (not even a zombie): true for a reaped child of ours.
pub fn is_reaped(pid: u32) -> bool {
    // SAFETY: kill(2) with signal 0 sends nothing.
    let r = unsafe { libc::kill(pid as i32, 0) };
    r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

/// Whether process `pid` ends within `limit`: its pidfd becomes readable when it exits (a
/// zombie counts as ended). Works for processes that are not our children.
#[cfg(target_os = "linux")]
pub fn ends_within(pid: u32, limit: Duration) -> bool {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) } as i32;
    if fd < 0 {
        return std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
    }
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `poll` points to one valid pollfd; `fd` is ours and closed right after.
    let ready = unsafe { libc::poll(&mut poll, 1, limit.as_millis() as i32) };
    // SAFETY: closing the fd we opened.
    unsafe { libc::close(fd) };
    ready == 1
}

/// Whether process `pid` ends within `limit` (it is gone, or a zombie): without pidfds,
/// asked of `ps` until the limit.
#[cfg(not(target_os = "linux"))]
pub fn ends_within(pid: u32, limit: Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let state = std::process::Command::new("ps")
            .args(["-o", "stat=", "-p", &pid.to_string()])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        if state.is_empty() || state.starts_with('Z') {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::yield_now();
    }
}

/// A real segmentation fault: a write to address 0.
pub fn segfault() {
    // SAFETY: deliberately unsound: the write faults and the worker process dies of SIGSEGV,
    // which is what these tests are about. It runs only in forked workers.
    unsafe { std::ptr::null_mut::<u64>().write_volatile(1) };
}

/// In a worker: the start of its one shared mapping (its progress page, reply ring and
/// arenas), found in `/proc/self/maps` (Linux).
pub fn own_shared_mapping() -> *mut u8 {
    let range = own_shared_mapping_range();
    let start = range.split('-').next().unwrap();
    usize::from_str_radix(start, 16).unwrap() as *mut u8
}

/// In a worker: the address range (`start-end`, in hex, as `/proc/self/maps` and
/// `/proc/self/map_files/` name it) of its one shared mapping: the shared read-write mapping
/// as long as a worker's page, ring and arenas (Linux).
pub fn own_shared_mapping_range() -> String {
    let len = forkpool_worker::progress::SharedRegion::mapped_len();
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let range = maps
        .lines()
        .filter(|line| line.contains(" rw-s "))
        .map(|line| line.split(' ').next().unwrap())
        .find(|range| {
            let (start, end) = range.split_once('-').unwrap();
            let start = usize::from_str_radix(start, 16).unwrap();
            usize::from_str_radix(end, 16).unwrap() - start == len
        })
        .expect("a worker has its shared mapping");
    range.to_string()
}

/// A counter shared by this process and every process forked after this call: a fresh
/// anonymous shared page, never unmapped.
pub fn shared_counter() -> &'static std::sync::atomic::AtomicU64 {
    // SAFETY: a fresh anonymous shared mapping of one page, checked before use; zeroed memory
    // is a valid AtomicU64, and the page is never unmapped, so the reference lives as long as
    // the process.
    unsafe {
        let page = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(page, libc::MAP_FAILED);
        &*page.cast::<std::sync::atomic::AtomicU64>()
    }
}

/// The parent of process `pid`, from `/proc/<pid>/stat` (Linux).
pub fn parent_of(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    after_name.split(' ').nth(1).unwrap().parse().unwrap()
}

/// Runs `f` on its own thread and returns what it returns, or fails the test if it has not
/// returned within `limit` (the thread is left behind; the test binary's exit ends it, and the
/// workers die with it).
pub fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(limit) {
        Ok(Ok(value)) => value,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("did not return within {limit:?}: it hangs"),
    }
}

/// In a worker: its one socket.
pub fn own_socket() -> i32 {
    (3..1024)
        .find(|&fd| {
            // SAFETY: fstat on any number is harmless; `st` is a valid out-parameter.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: as above.
            let ok = unsafe { libc::fstat(fd, &mut st) } == 0;
            ok && st.st_mode & libc::S_IFMT == libc::S_IFSOCK
        })
        .expect("a worker has its socket")
}
