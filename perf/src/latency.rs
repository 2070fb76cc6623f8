//! `latency` (in progress).
use anyhow::Result;

/// Arguments of `latency`.
#[derive(clap::Args, Debug)]
pub struct LatencyArgs {}

/// Runs `latency`.
pub fn run(_a: LatencyArgs) -> Result<()> {
    anyhow::bail!("not yet")
}
