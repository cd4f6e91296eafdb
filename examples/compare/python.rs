//! The Python peers: a virtual environment holding their pinned versions, made on first run,
//! and `peers.py`, run once per row and repeat in a fresh interpreter.

use crate::Config;
use crate::workloads::{Sizes, Workload};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The columns `peers.py` fills.
pub const SYSTEMS: [&str; 6] = [
    "Python Pool (fork)",
    "Python Pool (forkserver)",
    "Python ProcessPoolExecutor",
    "mpire",
    "pebble",
    "loky",
];

/// The peers installed from the Python package index, each with every package it pulls in
/// pinned to an exact version.
pub const PINS: [(&str, &[&str]); 3] = [
    (
        "mpire",
        &["mpire==2.10.2", "tqdm==4.70.1", "pygments==2.21.0"],
    ),
    ("pebble", &["pebble==5.2.3"]),
    ("loky", &["loky==3.7.0", "cloudpickle==3.1.2"]),
];

/// The Python side: which interpreter runs `peers.py`, or why there is none.
pub struct Side {
    interpreter: PathBuf,
    /// Set when no Python peer can run at all.
    pub unavailable: Option<String>,
    /// Peers whose install failed, and how.
    pub install_failures: Vec<(String, String)>,
}

impl Side {
    pub fn disabled(why: &str) -> Side {
        Side {
            interpreter: PathBuf::new(),
            unavailable: Some(why.to_string()),
            install_failures: Vec::new(),
        }
    }

    /// Runs `peers.py` on `row`; its lines (see `table::Results::read`).
    pub fn run(&self, row: &Workload, cfg: &Config) -> Result<String, String> {
        // The harness's manifest is benches/Cargo.toml.
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/compare/peers.py");
        let config = format!(
            r#"{{"row":"{}","param":{},"runs":{},"budget":{},"sizes":{}}}"#,
            row.key,
            row.param,
            cfg.runs,
            cfg.budget,
            Sizes::of(cfg).to_json()
        );
        let out = Command::new(&self.interpreter)
            .arg(script)
            .arg(config)
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("{} could not be run ({e})", self.interpreter.display()))?;
        if !out.status.success() {
            return Err(format!("peers.py ended with {}", out.status));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// `target/compare-venv` at the workspace's top (under `CARGO_TARGET_DIR` when that is set).
fn venv_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")));
    target.join("compare-venv")
}

fn last_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no message")
        .trim()
        .to_string()
}

/// Makes the virtual environment if it is missing and installs the pinned peers not yet in
/// it (a stamp file lists the pin sets installed). A peer whose install fails is reported,
/// not fatal: `peers.py` then cannot import it and its cells are `n/a`.
pub fn setup() -> Side {
    let venv = venv_dir();
    let python = venv.join("bin").join("python");
    if !python.exists() {
        eprintln!("compare: making {} (python3 -m venv)", venv.display());
        match Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&venv)
            .output()
        {
            Err(e) => return Side::disabled(&format!("python3 could not be run ({e})")),
            Ok(out) if !out.status.success() => {
                // Python's own pools can still run, on the system interpreter.
                let why = format!("python3 -m venv failed: {}", last_line(&out.stderr));
                return Side {
                    interpreter: PathBuf::from("python3"),
                    unavailable: None,
                    install_failures: PINS
                        .iter()
                        .map(|(peer, _)| (peer.to_string(), why.clone()))
                        .collect(),
                };
            }
            Ok(_) => {}
        }
    }
    let stamp = venv.join("forkpool-compare-pins.txt");
    let mut installed = std::fs::read_to_string(&stamp).unwrap_or_default();
    let mut install_failures = Vec::new();
    for (peer, pins) in PINS {
        let line = pins.join(" ");
        if installed.lines().any(|l| l == line) {
            continue;
        }
        eprintln!("compare: pip install {line} (into {})", venv.display());
        let out = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(pins)
            .output();
        let why = match out {
            Ok(out) if out.status.success() => {
                installed.push_str(&line);
                installed.push('\n');
                if let Err(e) = std::fs::write(&stamp, &installed) {
                    eprintln!("compare: could not write {}: {e}", stamp.display());
                }
                continue;
            }
            Ok(out) => last_line(&out.stderr),
            Err(e) => e.to_string(),
        };
        eprintln!("compare: pip install {line} failed: {why}");
        install_failures.push((
            peer.to_string(),
            format!("pip install {line} failed: {why}"),
        ));
    }
    Side {
        interpreter: python,
        unavailable: None,
        install_failures,
    }
}
