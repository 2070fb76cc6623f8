//! Records the git revision the binary is built from, for `mtugate
//! --version` and the `mtugate_build_info` metric: `MTUGATE_REVISION` is
//! the abbreviated commit (`git rev-parse --short=12 HEAD`), with `-dirty`
//! when tracked files differ from it, or `unknown` outside a git checkout
//! (a source tarball) or without git.

use std::path::Path;
use std::process::Command;

/// `git ARGS` in this package's directory: its trimmed stdout, if it ran
/// and succeeded.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn main() {
    let revision = match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(rev) if !rev.is_empty() => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{rev}-dirty")
            } else {
                rev
            }
        }
        _ => "unknown".to_owned(),
    };
    println!("cargo:rustc-env=MTUGATE_REVISION={revision}");

    // Run again when HEAD moves (checkout, commit) or the index changes, and
    // when the sources this binary is built from change (the dirty mark).
    // Cargo reruns a script every time a listed path is missing, so only
    // existing paths are listed.
    let mut watch: Vec<String> = ["HEAD", "index", "packed-refs"]
        .iter()
        .filter_map(|p| git(&["rev-parse", "--git-path", p]))
        .collect();
    if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch.extend(git(&["rev-parse", "--git-path", &r]));
    }
    watch.extend(
        [
            "src",
            "Cargo.toml",
            "../Cargo.toml",
            "../datapath/src",
            "../xsk/src",
            "../xsk/bpf",
            "../mgmt/src",
        ]
        .map(String::from),
    );
    for p in watch {
        if Path::new(&p).exists() {
            println!("cargo:rerun-if-changed={p}");
        }
    }
}
