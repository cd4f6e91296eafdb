//! The runner of row (p) (issue 13): a word count over 200 files, `Pool::fold` (each worker
//! merges the tables of the files of each chunk it runs; one table per chunk comes back)
//! against `Pool::map` plus a merge in the parent (one table per file comes back, and the
//! parent merges them all), and a serial count.

use crate::workloads::{Ctx, Report};
use forkpool::Pool;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

const WORKERS: usize = 2;
const FILES: usize = 200;
const WORDS_PER_FILE: usize = 5_000;
/// Distinct words the files draw from (skewed: the minimum of two draws), so that each file's
/// table holds a few thousand words, as real text does.
const VOCABULARY: u64 = 50_000;

type Counts = HashMap<String, u64>;

fn count_file(path: String) -> Counts {
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    let mut counts = Counts::new();
    for word in text.split_ascii_whitespace() {
        *counts.entry(word.to_string()).or_insert(0) += 1;
    }
    counts
}

/// Merges the smaller table into the larger.
fn merged(a: Counts, b: Counts) -> Counts {
    let (mut big, small) = if a.len() >= b.len() { (a, b) } else { (b, a) };
    for (word, n) in small {
        *big.entry(word).or_insert(0) += n;
    }
    big
}

fn count_into(counts: Counts, path: String) -> Counts {
    merged(counts, count_file(path))
}

/// A directory of the row's files, removed when dropped.
struct Files {
    dir: PathBuf,
    paths: Vec<String>,
}

impl Files {
    fn write() -> Files {
        let dir = std::env::temp_dir().join(format!("forkpool-compare-p-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut state = 42u64;
        let mut draw = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) % VOCABULARY
        };
        let mut paths = Vec::with_capacity(FILES);
        for file in 0..FILES {
            let mut text = String::new();
            for _ in 0..WORDS_PER_FILE {
                let word = draw().min(draw());
                text.push_str(&format!("w{word} "));
            }
            let path = dir.join(format!("file-{file:03}.txt"));
            std::fs::write(&path, text).expect("write a file");
            paths.push(path.to_string_lossy().into_owned());
        }
        Files { dir, paths }
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn row_p(ctx: &Ctx, out: &mut Report) {
    let files = Files::write();
    let paths = &files.paths;
    let expected = paths.iter().cloned().fold(Counts::new(), count_into);
    let pool = Pool::new(WORKERS).unwrap();
    let fold = ctx.timer.median_measured(|| {
        let t = Instant::now();
        let total = pool
            .fold(count_into, Counts::new(), merged, paths.clone())
            .unwrap();
        let secs = t.elapsed().as_secs_f64();
        assert!(total == expected, "fold counted wrong");
        secs
    });
    out.cell("forkpool", fold, 1.0, "fold: one table per chunk back");
    let map = ctx.timer.median_measured(|| {
        let t = Instant::now();
        let total = pool
            .map(count_file, paths.clone())
            .unwrap()
            .into_iter()
            .fold(Counts::new(), merged);
        let secs = t.elapsed().as_secs_f64();
        assert!(total == expected, "map + merge counted wrong");
        secs
    });
    out.also(
        "(p) forkpool `map` + merge in the parent (one table per file back)",
        map * 1e3,
        "ms",
    );
    out.also("(p) `map` + merge time / `fold` time", map / fold, "x");
    let serial = ctx.timer.median(|| {
        let total = paths.iter().cloned().fold(Counts::new(), count_into);
        assert_eq!(total.len(), expected.len());
    });
    out.cell("serial", serial, 1.0, "");
}
