//! The figures of all repeats, read from the workload processes' lines, and the table.

use crate::workloads::Workload;
use std::collections::HashMap;

/// The table's columns, in order.
pub const SYSTEMS: [&str; 10] = [
    "forkpool",
    "Python Pool (fork)",
    "Python Pool (forkserver)",
    "Python ProcessPoolExecutor",
    "mpire",
    "pebble",
    "loky",
    "procspawn Pool",
    "rayon",
    "serial",
];

type Key = (String, String);

pub struct Results {
    repeats: usize,
    /// (row, system): the figure of each repeat that measured it.
    figures: HashMap<Key, Vec<f64>>,
    /// (row, system): the note of its cell (why it is `n/a`, or how it was measured).
    notes: HashMap<Key, String>,
    /// Systems that were not run at all, and why (the first reason given).
    skipped: Vec<(String, String)>,
    /// Figures shown under the table: label, unit, one per repeat.
    also: Vec<(String, String, Vec<f64>)>,
    /// Python and the peers' versions, as `peers.py` imported them.
    versions: Vec<(String, String)>,
    /// The values of `check` lines by label: the first one reported, and where.
    checks: HashMap<String, (String, String)>,
    /// The `check` lines that differ from the first of their label.
    mismatches: Vec<String>,
}

impl Results {
    pub fn new(repeats: usize) -> Results {
        Results {
            repeats,
            figures: HashMap::new(),
            notes: HashMap::new(),
            skipped: Vec::new(),
            also: Vec::new(),
            versions: Vec::new(),
            checks: HashMap::new(),
            mismatches: Vec::new(),
        }
    }

    /// Reads a workload process's lines, tab-separated:
    /// `cell SYSTEM VALUE COUNT NOTE` (a measurement: the row's figure of VALUE and COUNT),
    /// `none SYSTEM WHY` (no counterpart on this row), `fail SYSTEM WHY` (it failed here),
    /// `skip SYSTEM WHY` (not run at all: not installed, not importable), `also LABEL FIGURE
    /// UNIT` (a figure for under the table), `check LABEL VALUE` (a value every line of that
    /// label must repeat: a mismatch fails the run) and `version NAME VERSION`. Other lines
    /// are ignored.
    pub fn read(&mut self, row: &Workload, text: &str) {
        for line in text.lines() {
            let fields: Vec<&str> = line.split('\t').collect();
            let key = |system: &str| (row.key.clone(), system.to_string());
            match fields.as_slice() {
                ["cell", system, value, count, note @ ..] => {
                    let (Ok(value), Ok(count)) = (value.parse(), count.parse()) else {
                        eprintln!("{}: unreadable line {line:?}", row.key);
                        continue;
                    };
                    let figure = (row.figure)(value, count);
                    self.figures.entry(key(system)).or_default().push(figure);
                    if let Some(note) = note.first().filter(|n| !n.is_empty()) {
                        self.notes.insert(key(system), note.to_string());
                    }
                }
                ["none", system, why] => {
                    self.notes.insert(key(system), why.to_string());
                }
                ["fail", system, why] => {
                    eprintln!("{}: {system} failed: {why}", row.key);
                    self.notes.insert(key(system), format!("failed: {why}"));
                }
                ["skip", system, why] => self.skip(system, why),
                ["also", label, figure, unit] => {
                    let Ok(figure) = figure.parse() else { continue };
                    match self.also.iter_mut().find(|(l, _, _)| l == label) {
                        Some((_, _, figures)) => figures.push(figure),
                        None => self
                            .also
                            .push((label.to_string(), unit.to_string(), vec![figure])),
                    }
                }
                ["check", label, value] => match self.checks.get(*label) {
                    None => {
                        let first = (value.to_string(), row.key.clone());
                        self.checks.insert(label.to_string(), first);
                    }
                    Some((first, at)) if first != value => {
                        let what = format!(
                            "{}: {label}: {value}, the first report (row {at}) was {first}",
                            row.key
                        );
                        eprintln!("MISMATCH {what}");
                        self.mismatches.push(what);
                    }
                    Some(_) => {}
                },
                ["version", name, version] if !self.versions.iter().any(|(n, _)| n == name) => {
                    self.versions.push((name.to_string(), version.to_string()));
                }
                _ => {}
            }
        }
    }

    /// Whether two `check` lines of one label differed.
    pub fn mismatched(&self) -> bool {
        !self.mismatches.is_empty()
    }

    /// `system` was not run at all (kept: the first reason).
    pub fn skip(&mut self, system: &str, why: &str) {
        if !self.skipped.iter().any(|(s, _)| s == system) {
            self.skipped.push((system.to_string(), why.to_string()));
        }
    }

    /// The process measuring `systems` on `row` failed.
    pub fn failed(&mut self, row: &Workload, systems: &[&str], why: &str) {
        eprintln!("{}: failed: {why}", row.key);
        for system in systems {
            let key = (row.key.clone(), system.to_string());
            if !self.figures.contains_key(&key) {
                self.notes.insert(key, format!("failed: {why}"));
            }
        }
    }

    pub fn print(&self, rows: &[Workload]) {
        let mut footnotes: Vec<String> = Vec::new();
        let mut mark = |text: String| -> String {
            let n = match footnotes.iter().position(|f| *f == text) {
                Some(i) => i + 1,
                None => {
                    footnotes.push(text);
                    footnotes.len()
                }
            };
            format!(" [{n}]")
        };
        println!("| workload | unit | {} |", SYSTEMS.join(" | "));
        println!("|{}", " --- |".repeat(SYSTEMS.len() + 2));
        for row in rows {
            let get = |system: &str| {
                self.figures
                    .get(&(row.key.clone(), system.to_string()))
                    .map(|v| Spread::of(v))
            };
            let ours = get("forkpool").map(|s| s.median);
            let mut cells = Vec::new();
            for system in SYSTEMS {
                let note = self.notes.get(&(row.key.clone(), system.to_string()));
                let skipped = self.skipped.iter().find(|(s, _)| s == system);
                let mut text = match get(system) {
                    Some(spread) => {
                        let mut text = spread.show(self.repeats);
                        if let Some(ours) = ours.filter(|_| system != "forkpool") {
                            let advantage = if row.higher_is_better {
                                ours / spread.median
                            } else {
                                spread.median / ours
                            };
                            if ours > 0.0 && spread.median > 0.0 {
                                text.push_str(&format!(" ×{}", figure(advantage)));
                            }
                        }
                        text
                    }
                    None => "n/a".to_string(),
                };
                if let Some(note) = note {
                    text.push_str(&mark(note.clone()));
                } else if let Some((_, why)) = skipped.filter(|_| row.python) {
                    text.push_str(&mark(format!("{system}: not run: {why}")));
                }
                cells.push(text);
            }
            println!("| {} | {} | {} |", row.name, row.unit, cells.join(" | "));
        }
        println!();
        for (i, note) in footnotes.iter().enumerate() {
            println!("[{}] {note}", i + 1);
        }
        if !self.also.is_empty() {
            println!("\nAlso measured:");
            for (label, unit, figures) in &self.also {
                println!(
                    "- {label}: {} {unit}",
                    Spread::of(figures).show(self.repeats)
                );
            }
        }
        if !self.checks.is_empty() {
            let mut checks: Vec<_> = self.checks.iter().collect();
            checks.sort();
            println!("\nChecked (the value every process reported; a MISMATCH below if not):");
            for (label, (value, _)) in checks {
                println!("- {label}: {value}");
            }
        }
        for what in &self.mismatches {
            println!("\nMISMATCH: {what}");
        }
        if !self.versions.is_empty() {
            let versions: Vec<String> = self
                .versions
                .iter()
                .map(|(name, version)| format!("{name} {version}"))
                .collect();
            println!("\nPython side: {}", versions.join(", "));
        }
    }
}

/// The median of a cell's figures over the repeats, and their range.
struct Spread {
    median: f64,
    min: f64,
    max: f64,
    count: usize,
}

impl Spread {
    fn of(figures: &[f64]) -> Spread {
        let mut sorted = figures.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Spread {
            median,
            min: sorted[0],
            max: sorted[n - 1],
            count: n,
        }
    }

    /// `5.22`, or `5.22 (5.10–5.40)` over several repeats (and `, 2 of 3` when some repeats
    /// have no figure).
    fn show(&self, repeats: usize) -> String {
        let mut text = figure(self.median);
        if repeats > 1 {
            text.push_str(&format!(" ({}–{}", figure(self.min), figure(self.max)));
            if self.count < repeats {
                text.push_str(&format!(", {} of {repeats}", self.count));
            }
            text.push(')');
        }
        text
    }
}

fn figure(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}
