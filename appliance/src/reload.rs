//! The appliance's side of a live reload: re-read the file, validate it
//! fully, and compare it with the configuration in force, part by part
//! ([`Validated::reload_to`]): a different restart part (ports, queues,
//! cores, socket tuning, management listeners) is refused as a whole; a
//! different live part (MSS, MTUs, DF policy, rate limits, ICMP sources) is
//! applied. The management thread distributes the result to the workers.

use crate::config::{FileConfig, ReloadPlan, Validated};
use mtugate_mgmt::{Prepared, Refusal, Reloader};
use mtugate_xsk::PortProgram;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// Reloads from the file `mtugate run` was started with.
#[derive(Debug)]
pub struct FileReloader {
    path: PathBuf,
    current: Validated,
    pending: Option<Validated>,
    xdp: Arc<OnceLock<Vec<Arc<PortProgram>>>>,
}

impl FileReloader {
    /// `current` is the configuration in force, read from `path`.
    pub fn new(path: PathBuf, current: Validated) -> FileReloader {
        FileReloader {
            path,
            current,
            pending: None,
            xdp: Arc::default(),
        }
    }

    /// Also keeps the ports' XDP programs in step with committed reloads:
    /// the egress MTU that bounds their fast path (`programs[i]` is port
    /// `i`'s; wire mode: the egress is the other port).
    /// They are set once attached (after the management thread started).
    pub fn with_xdp(mut self, programs: Arc<OnceLock<Vec<Arc<PortProgram>>>>) -> FileReloader {
        self.xdp = programs;
        self
    }

    /// The configuration in force.
    pub fn current(&self) -> &Validated {
        &self.current
    }
}

impl Reloader for FileReloader {
    fn prepare(&mut self) -> Result<Prepared, Refusal> {
        self.pending = None;
        let v = FileConfig::load(&self.path)
            .and_then(FileConfig::validate)
            .map_err(|e| Refusal::Invalid(e.to_string()))?;
        let changes = match self.current.reload_to(&v) {
            ReloadPlan::Restart(restart) => {
                let restart: Vec<String> = restart.iter().map(|c| c.to_string()).collect();
                return Err(Refusal::RestartNeeded(format!(
                    "{} cannot change while mtugate runs (ports, queues, cores, sockets and listeners are set up at start): restart mtugate to apply it",
                    restart.join("; ")
                )));
            }
            ReloadPlan::Apply(live) => live.iter().map(|c| c.to_string()).collect(),
            ReloadPlan::Unchanged => Vec::new(),
        };
        let config = v
            .worker_config()
            .map_err(|e| Refusal::Invalid(e.to_string()))?;
        self.pending = Some(v);
        Ok(Prepared {
            config: Arc::new(config),
            changes,
        })
    }

    fn commit(&mut self) {
        if let Some(p) = self.pending.take() {
            self.current = p;
        }
        let progs = self.xdp.get().map(Vec::as_slice).unwrap_or_default();
        for (i, prog) in progs.iter().enumerate() {
            let peer = self.current.egress_port(i).and_then(|j| progs.get(j));
            let fp = match peer {
                Some(p) => self.current.fast_path(i, p.ifindex()),
                None => self.current.router_fast_path(i),
            };
            let Some(fp) = fp else {
                continue;
            };
            if let Err(e) = prog.configure(&fp) {
                tracing::warn!(
                    iface = prog.iface(),
                    "updating the XDP stage on reload: {e}"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mtugate_datapath::pipeline::Clamp;

    const LAB: &str = r#"
mode = "wire"
[[port]]
name = "inside"
iface = "in0"
mtu = 1500
[[port]]
name = "outside"
iface = "out0"
mtu = 1400
[mss]
ipv4 = 1360
"#;

    fn setup(name: &str) -> (PathBuf, FileReloader) {
        let path =
            std::env::temp_dir().join(format!("mtugate-reload-{}-{name}.toml", std::process::id()));
        std::fs::write(&path, LAB).unwrap();
        let current = FileConfig::load(&path).unwrap().validate().unwrap();
        (path.clone(), FileReloader::new(path, current))
    }

    #[test]
    fn live_change_then_commit() {
        let (path, mut r) = setup("live");
        std::fs::write(&path, LAB.replace("1360", "1300")).unwrap();
        let p = r.prepare().unwrap();
        assert_eq!(p.changes, ["mss.ipv4: 1360 -> 1300"]);
        assert_eq!(
            p.config
                .clamp_for(0, mtugate_datapath::pipeline::PortId::new(0)),
            Some(1300)
        );
        assert_eq!(
            r.current().live.mss.ipv4,
            Clamp::Fixed(1360),
            "not in force before commit"
        );
        r.commit();
        assert_eq!(r.current().live.mss.ipv4, Clamp::Fixed(1300));
        assert!(r.prepare().unwrap().changes.is_empty());
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn invalid_and_restart_needed_change_nothing() {
        let (path, mut r) = setup("refuse");
        std::fs::write(&path, LAB.replace("1360", "1361")).unwrap();
        match r.prepare() {
            Err(Refusal::Invalid(m)) => assert!(m.contains("mss.ipv4"), "{m}"),
            other => panic!("{other:?}"),
        }
        r.commit();
        assert_eq!(r.current().live.mss.ipv4, Clamp::Fixed(1360));

        std::fs::write(&path, LAB.replace("out0", "out9").replace("1360", "1300")).unwrap();
        match r.prepare() {
            // A live change (mss.ipv4) beside a restart one is not applied
            // either, and only the restart one is named.
            Err(Refusal::RestartNeeded(m)) => assert_eq!(
                m,
                "port[1].iface: out0 -> out9 cannot change while mtugate runs (ports, queues, cores, sockets and listeners are set up at start): restart mtugate to apply it"
            ),
            other => panic!("{other:?}"),
        }
        r.commit();
        assert_eq!(r.current().live.mss.ipv4, Clamp::Fixed(1360));
        assert_eq!(r.current().restart.ports[1].iface, "out0");

        std::fs::write(&path, "mode = \"wire\"\n[[port]\n").unwrap();
        assert!(matches!(r.prepare(), Err(Refusal::Invalid(_))));
        std::fs::remove_file(path).unwrap();
    }
}
