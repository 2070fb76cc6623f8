//! A configuration that names no port yet: the package's default
//! `/etc/mtugate/mtugate.toml`.
//!
//! A package installs and starts its service before the operator has said
//! which interfaces to take. mtugate must then touch no interface, yet the
//! file must be a real configuration (every key checked) and the service
//! must not fail or restart in a loop. So a file without any `[[port]]`
//! table is *unconfigured*: `mtugate check-config` validates every other
//! key (against two placeholder ports of MTU 1500) and says that nothing
//! would be attached; `mtugate run` logs the same and waits for SIGTERM,
//! attaching nothing, binding nothing, needing no privilege. Naming the two
//! ports and restarting the service puts it to work.

use crate::config::{ConfigError, FileConfig};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The placeholder ports against which an unconfigured file's other keys
/// are validated (never attached).
const PLACEHOLDER_PORTS: &str = r#"
[[port]]
name = "unconfigured-a"
iface = "unconfigured-a"
mtu = 1500

[[port]]
name = "unconfigured-b"
iface = "unconfigured-b"
mtu = 1500
"#;

/// Whether the file at `path` names no port (no `[[port]]` table). A file
/// that cannot be read or parsed is not "unconfigured": the normal path
/// reports its error.
pub fn is_unconfigured(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .is_some_and(|t| !t.contains_key("port"))
}

/// Validates every key of an unconfigured file (with placeholder ports).
pub fn validate(path: &Path) -> Result<(), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let cfg = FileConfig::parse(&format!("{text}\n{PLACEHOLDER_PORTS}")).map_err(|e| {
        ConfigError::Parse {
            path: path.display().to_string(),
            message: e
                .to_string()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" "),
        }
    })?;
    cfg.validate().map(drop)
}

/// The line `check-config` and `run` print for an unconfigured file.
pub fn notice(path: &Path) -> String {
    format!(
        "{}: no [[port]] is configured, so mtugate attaches nothing; name the two interfaces in [[port]] tables (see the comments in the file) and restart it",
        path.display()
    )
}

/// `mtugate run` on an unconfigured file: validate, say so, and wait
/// until `stop` is set (SIGINT/SIGTERM), touching nothing.
pub fn wait(path: &Path, stop: &AtomicBool) -> Result<(), ConfigError> {
    validate(path)?;
    tracing::warn!("{}", notice(path));
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(200));
    }
    tracing::info!("stopping (nothing was attached)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> (tempfile_dir::Dir, std::path::PathBuf) {
        let d = tempfile_dir::Dir::new();
        let p = d.0.join("mtugate.toml");
        std::fs::write(&p, text).unwrap();
        (d, p)
    }

    /// A scratch directory removed on drop (no extra dev-dependency).
    mod tempfile_dir {
        pub(super) struct Dir(pub(super) std::path::PathBuf);
        impl Dir {
            pub(super) fn new() -> Dir {
                use std::sync::atomic::{AtomicU32, Ordering};
                static N: AtomicU32 = AtomicU32::new(0);
                let p = std::env::temp_dir().join(format!(
                    "mtugate-idle-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn a_file_without_ports_is_unconfigured_and_valid() {
        let (_d, p) = file("mode = \"wire\"\n[mss]\nipv4 = 1360\n");
        assert!(is_unconfigured(&p));
        validate(&p).unwrap();
    }

    #[test]
    fn the_other_keys_are_still_checked() {
        let (_d, p) = file("mode = \"wire\"\n[mss]\nipv4 = \"sometimes\"\n");
        assert!(is_unconfigured(&p));
        let e = validate(&p).unwrap_err().to_string();
        assert!(e.contains("mss.ipv4"), "{e}");
        let (_d, p) = file("mode = \"wire\"\n[mgmt]\nlisten_typo = 1\n");
        assert!(validate(&p).is_err());
    }

    #[test]
    fn a_file_with_ports_or_broken_is_not_unconfigured() {
        let (_d, p) = file("mode = \"wire\"\n[[port]]\nname = \"a\"\niface = \"x\"\nmtu = 1500\n");
        assert!(!is_unconfigured(&p));
        let (_d, p) = file("mode = \n");
        assert!(!is_unconfigured(&p));
        assert!(!is_unconfigured(Path::new("/nonexistent/mtugate.toml")));
    }

    /// The package's default configuration is unconfigured and valid.
    #[test]
    fn the_packaged_default_is_unconfigured_and_valid() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/deb/mtugate.toml");
        assert!(is_unconfigured(&p));
        validate(&p).unwrap();
    }
}
