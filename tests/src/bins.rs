//! Builds `ringchatd` and `ringchat-client` once per test process and finds them.
//!
//! Cargo gives an integration test only its own package's binaries, so the harness runs
//! `cargo build -p ringchatd -p ringchat-client` itself, with the profile and target
//! directory the test binary was built with (derived from `target/<profile>/deps/<test>`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Paths of the binaries under test.
#[derive(Debug)]
pub struct Binaries {
    /// The daemon.
    pub ringchatd: PathBuf,
    /// The chat client.
    pub client: PathBuf,
}

/// The binaries, built on first use (later calls return at once).
pub fn binaries() -> &'static Binaries {
    static BINARIES: OnceLock<Binaries> = OnceLock::new();
    BINARIES.get_or_init(build)
}

fn build() -> Binaries {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test binary>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("cannot find the target directory from {}", exe.display()))
        .to_path_buf();
    let target_dir = profile_dir
        .parent()
        .expect("target directory above the profile directory");
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .expect("profile directory name");
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root above tests/");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(workspace)
        .args(["build", "-p", "ringchatd", "-p", "ringchat-client"])
        .arg("--target-dir")
        .arg(target_dir);
    match profile {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cargo:?} to build the binaries: {e}"));
    if !out.status.success() {
        panic!(
            "`cargo build -p ringchatd -p ringchat-client` failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let found = |name: &str| {
        let path = profile_dir.join(name);
        assert!(
            path.is_file(),
            "{} is missing after the build",
            path.display()
        );
        path
    };
    Binaries {
        ringchatd: found("ringchatd"),
        client: found("ringchat-client"),
    }
}
