//! The bootstrap every platform shares (issue 11): each worker's channel is one end of a socket
//! pair the parent made before the fork; the child keeps that end only. macOS runs this same
//! path (with local datagram pairs); these checks read Linux's `/proc`.
#![cfg(target_os = "linux")]

use forkpool::Pool;
use std::collections::HashSet;

/// The socket inodes process `pid` holds open.
fn socket_inodes(pid: u32) -> HashSet<u64> {
    let mut inodes = HashSet::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let target = target.to_string_lossy().into_owned();
        if let Some(inode) = target
            .strip_prefix("socket:[")
            .and_then(|rest| rest.strip_suffix(']'))
        {
            inodes.insert(inode.parse().unwrap());
        }
    }
    inodes
}

/// The type of every Unix socket by inode, from `/proc/net/unix` (5 is `SOCK_SEQPACKET`).
fn unix_socket_types() -> std::collections::HashMap<u64, u32> {
    let table = std::fs::read_to_string("/proc/net/unix").unwrap();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let kind = u32::from_str_radix(fields.get(4)?, 16).ok()?;
            let inode = fields.get(6)?.parse().ok()?;
            Some((inode, kind))
        })
        .collect()
}

#[test]
fn the_shared_bootstrap_gives_each_worker_its_own_end_of_a_socket_pair_made_before_fork() {
    let before = socket_inodes(std::process::id());
    let pool = Pool::new(3).unwrap();
    // The pool works through them.
    assert_eq!(
        pool.map(|x: u32| x + 1, 0..30u32).unwrap(),
        (1..31).collect::<Vec<_>>()
    );
    let parent_ends: HashSet<u64> = socket_inodes(std::process::id())
        .difference(&before)
        .copied()
        .collect();
    assert_eq!(parent_ends.len(), 3, "one parent end per worker");
    let types = unix_socket_types();
    let mut child_ends = HashSet::new();
    for pid in pool.pids() {
        let held = socket_inodes(pid);
        let own: Vec<u64> = held.difference(&before).copied().collect();
        assert_eq!(own.len(), 1, "worker {pid} holds {own:?}: its own end only");
        assert!(
            held.is_disjoint(&parent_ends),
            "worker {pid} holds a parent end"
        );
        assert_eq!(types.get(&own[0]), Some(&5), "a SOCK_SEQPACKET pair");
        child_ends.insert(own[0]);
    }
    assert_eq!(child_ends.len(), 3, "no two workers share an end");
}
