//! `compare` (in progress).
use anyhow::Result;

/// Arguments of `compare`.
#[derive(clap::Args, Debug)]
pub struct CompareArgs {}

/// Runs `compare`.
pub fn run(_a: CompareArgs) -> Result<()> {
    anyhow::bail!("not yet")
}
