//! Man pages and shell completions, generated from the command line's own
//! definition so they never drift from `--help` (the hidden `mtugate
//! generate DIR`, run by `deploy/deb/build.sh`).
//!
//! Written with `clap_mangen` and `clap_complete`, the clap project's own
//! generators: one page per command and subcommand (`mtugate.1`,
//! `mtugate-run.1`, ...), completions for bash, zsh and fish.

use clap_complete::Shell;
use std::io;
use std::path::Path;

/// Writes `DIR/man/*.1` (the command and each visible subcommand) and
/// `DIR/completions/` (`NAME.bash`, `_NAME`, `NAME.fish`) for `cmd`.
/// Returns the files written.
pub fn generate(cmd: clap::Command, dir: &Path) -> io::Result<Vec<std::path::PathBuf>> {
    let man = dir.join("man");
    let comp = dir.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&comp)?;
    clap_mangen::generate_to(cmd.clone(), &man)?;
    let mut cmd = cmd;
    let name = cmd.get_name().to_owned();
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd, &name, &comp)?;
    }
    let mut files = Vec::new();
    for d in [&man, &comp] {
        for e in std::fs::read_dir(d)? {
            files.push(e?.path());
        }
    }
    files.sort();
    Ok(files)
}
