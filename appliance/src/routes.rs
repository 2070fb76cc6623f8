//! Router mode: the route mirror.
//!
//! The XDP stage asks the kernel's FIB about every frame (`bpf_fib_lookup`),
//! but that lookup reports a route's `mtu` only when it is locked and never
//! reports `advmss`. Linux's own forwarding honours an unlocked
//! `ip route ... mtu 1400` (it sends Frag Needed / Packet Too Big at 1400;
//! measured in the lab), and so does `TCPMSS --clamp-mss-to-pmtu`. So this
//! module keeps a copy of exactly those two metrics: it reads the main
//! routing table over rtnetlink, follows its change notifications, and
//! writes into the XDP stage's tries ([`RouteMtuTable`]):
//!
//! - every route that has an `mtu` or `advmss`, with its egress interface;
//! - every more specific route inside one of those, with neither (a "hole":
//!   `10.8.1.0/24` without an MTU inside `10.8.0.0/16 mtu 1400` keeps the
//!   device's MTU, as in the kernel);
//! - nothing else: a full BGP table without metrics costs no entry.
//!
//! The XDP stage applies an entry only when the FIB's own answer leaves by
//! the entry's interface, so a policy rule that picked another table is not
//! overridden by the main table's metrics. Changes reach the tries as soon
//! as the notification is read (the thread waits on the socket); a lost
//! notification (the socket's buffer overran) triggers a full re-read.
//!
//! Left out, on purpose: tables other than main (a route's MTU in a policy
//! table is honoured only when locked), source-specific IPv6 routes, and
//! per-nexthop metrics of multipath routes (the route's own apply to all).

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteMetric, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use mtugate_mgmt::model::RouteMirrorStats;
use mtugate_xsk::{smallest_route_mtus, RouteMetrics, RouteMtuTable, RoutePrefix};

/// rtnetlink multicast groups (linux/rtnetlink.h, `RTNLGRP_*`).
const RTNLGRP_IPV4_ROUTE: u32 = 7;
const RTNLGRP_IPV6_ROUTE: u32 = 11;
/// The main routing table.
const RT_TABLE_MAIN: u32 = 254;
/// How long the thread sleeps on the socket before looking at the stop
/// flag.
const POLL: Duration = Duration::from_millis(200);

/// One route of the main table, as the kernel keys it (two routes with the
/// same prefix differ in TOS or metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RouteKey {
    /// Destination.
    pub prefix: RoutePrefix,
    /// TOS selector (IPv4; 0 for any).
    pub tos: u8,
    /// The route's metric (`ip route ... metric N`): the lowest wins.
    pub priority: u32,
}

/// A route change read from the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteEvent {
    /// Added or replaced.
    New(RouteKey, RouteMetrics),
    /// Deleted.
    Del(RouteKey),
}

/// The main table as far as the mirror cares: every unicast route, with
/// its metrics.
#[derive(Debug, Default, Clone)]
pub struct Shadow {
    routes: BTreeMap<RouteKey, RouteMetrics>,
}

impl Shadow {
    /// Applies one change.
    pub fn apply(&mut self, ev: RouteEvent) {
        match ev {
            RouteEvent::New(k, m) => {
                self.routes.insert(k, m);
            }
            RouteEvent::Del(k) => {
                self.routes.remove(&k);
            }
        }
    }

    /// What the tries must hold (see the module docs): per prefix, the
    /// route the kernel would use (TOS 0, then the lowest metric), kept if
    /// it has a metric or lies inside one that has.
    pub fn desired(&self) -> BTreeMap<RoutePrefix, RouteMetrics> {
        let mut best: BTreeMap<RoutePrefix, (u8, u32, RouteMetrics)> = BTreeMap::new();
        for (k, m) in &self.routes {
            let rank = (u8::from(k.tos != 0), k.priority);
            match best.get(&k.prefix) {
                Some(&(t, p, _)) if (t, p) <= rank => {}
                _ => {
                    best.insert(k.prefix, (rank.0, rank.1, *m));
                }
            }
        }
        let with_metrics: Vec<RoutePrefix> = best
            .iter()
            .filter(|(_, (_, _, m))| m.mtu != 0 || m.advmss != 0)
            .map(|(p, _)| *p)
            .collect();
        best.into_iter()
            .filter(|(p, (_, _, m))| {
                m.mtu != 0 || m.advmss != 0 || with_metrics.iter().any(|c| c.strictly_covers(p))
            })
            .map(|(p, (_, _, m))| {
                // A hole's interface does not matter: it changes nothing.
                let m = if m.mtu == 0 && m.advmss == 0 {
                    RouteMetrics::default()
                } else {
                    m
                };
                (p, m)
            })
            .collect()
    }
}

/// The changes that turn `installed` into `want`.
pub fn diff(
    installed: &BTreeMap<RoutePrefix, RouteMetrics>,
    want: &BTreeMap<RoutePrefix, RouteMetrics>,
) -> (Vec<(RoutePrefix, RouteMetrics)>, Vec<RoutePrefix>) {
    let set = want
        .iter()
        .filter(|(p, m)| installed.get(p) != Some(m))
        .map(|(p, m)| (*p, *m))
        .collect();
    let remove = installed
        .keys()
        .filter(|p| !want.contains_key(p))
        .copied()
        .collect();
    (set, remove)
}

/// A route message of the main table as a change of the mirror; `None`
/// for what the mirror ignores (other tables, local / broadcast /
/// blackhole routes, cached clones, source-specific routes).
pub fn event_of(msg: &RouteMessage, deleted: bool) -> Option<RouteEvent> {
    let h = &msg.header;
    if h.flags.contains(RouteFlags::Cloned) || h.source_prefix_length != 0 {
        return None;
    }
    if h.kind != RouteType::Unicast {
        return None;
    }
    let mut table = u32::from(h.table);
    let mut dst = None;
    let mut priority = 0;
    let mut oif = 0;
    let mut multipath = false;
    let (mut mtu, mut advmss) = (0u32, 0u32);
    for a in &msg.attributes {
        match a {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(d) => dst = Some(d.clone()),
            RouteAttribute::Priority(p) => priority = *p,
            RouteAttribute::Oif(o) => oif = *o,
            RouteAttribute::MultiPath(_) => multipath = true,
            RouteAttribute::Metrics(ms) => {
                for m in ms {
                    match m {
                        RouteMetric::Mtu(v) => mtu = *v,
                        RouteMetric::Advmss(v) => advmss = *v,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if table != RT_TABLE_MAIN {
        return None;
    }
    let len = h.destination_prefix_length;
    let prefix = match (h.address_family, dst) {
        (AddressFamily::Inet, Some(RouteAddress::Inet(a))) => RoutePrefix::new_v4(a.octets(), len),
        (AddressFamily::Inet, None) => RoutePrefix::new_v4([0; 4], 0),
        (AddressFamily::Inet6, Some(RouteAddress::Inet6(a))) => {
            RoutePrefix::new_v6(a.octets(), len)
        }
        (AddressFamily::Inet6, None) => RoutePrefix::new_v6([0; 16], 0),
        _ => return None,
    };
    let key = RouteKey {
        prefix,
        tos: h.tos,
        priority,
    };
    if deleted {
        return Some(RouteEvent::Del(key));
    }
    Some(RouteEvent::New(
        key,
        RouteMetrics {
            oif: if multipath { 0 } else { oif },
            // An MTU beyond 65535 is no limit for an IP packet.
            mtu: u16::try_from(mtu).unwrap_or(0),
            advmss: u16::try_from(advmss).unwrap_or(u16::MAX),
        },
    ))
}

/// Route events (and the end of a dump) in one buffer read from netlink.
/// `Err` carries a netlink error code.
fn parse_batch(buf: &[u8], events: &mut Vec<RouteEvent>) -> Result<bool, i32> {
    let mut off = 0;
    let mut done = false;
    while off < buf.len() {
        let msg = match NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[off..]) {
            Ok(m) => m,
            // Not a route message we can read: skip the rest of the read.
            Err(_) => break,
        };
        let len = msg.header.length as usize;
        match msg.payload {
            NetlinkPayload::Done(_) => done = true,
            NetlinkPayload::Error(e) => {
                if let Some(code) = e.code {
                    return Err(code.get());
                }
            }
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(r)) => {
                events.extend(event_of(&r, false));
            }
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelRoute(r)) => {
                events.extend(event_of(&r, true));
            }
            _ => {}
        }
        if len == 0 {
            break;
        }
        off += (len + 3) & !3;
    }
    Ok(done)
}

/// The main table, read whole (a dump on a socket of its own).
pub fn dump() -> io::Result<Shadow> {
    let mut sock = Socket::new(NETLINK_ROUTE)?;
    sock.bind_auto()?;
    sock.connect(&SocketAddr::new(0, 0))?;
    let mut hdr = NetlinkHeader::default();
    hdr.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut req = NetlinkMessage::new(
        hdr,
        NetlinkPayload::from(RouteNetlinkMessage::GetRoute(RouteMessage::default())),
    );
    req.finalize();
    let mut buf = vec![0u8; req.buffer_len()];
    req.serialize(&mut buf);
    sock.send(&buf, 0)?;
    let mut shadow = Shadow::default();
    let mut events = Vec::new();
    let mut rx = vec![0u8; 1 << 16];
    // Bounded: a dump ends with NLMSG_DONE; a table of millions of routes
    // still ends well within this many reads.
    for _ in 0..1_000_000 {
        let n = sock.recv(&mut &mut rx[..], 0)?;
        let done =
            parse_batch(&rx[..n], &mut events).map_err(|c| io::Error::from_raw_os_error(-c))?;
        for ev in events.drain(..) {
            shadow.apply(ev);
        }
        if done {
            return Ok(shadow);
        }
    }
    Err(io::Error::other("the route dump did not end"))
}

/// The notification socket: route changes of both families.
fn subscribe() -> io::Result<Socket> {
    let mut sock = Socket::new(NETLINK_ROUTE)?;
    sock.bind_auto()?;
    sock.add_membership(RTNLGRP_IPV4_ROUTE)?;
    sock.add_membership(RTNLGRP_IPV6_ROUTE)?;
    // Room for a burst of changes (a routing daemon's full table); an
    // overrun is noticed (ENOBUFS) and answered with a full re-read.
    let _ = sock.set_rx_buf_sz(4 << 20);
    sock.set_non_blocking(true)?;
    Ok(sock)
}

fn log_changes(set: &[(RoutePrefix, RouteMetrics)], remove: &[RoutePrefix]) {
    for (p, m) in set {
        if m.mtu != 0 || m.advmss != 0 {
            tracing::info!(route = %p, oif = m.oif, mtu = m.mtu, advmss = m.advmss, "route mirror: set");
        } else {
            tracing::debug!(route = %p, "route mirror: more specific route without metrics");
        }
    }
    for p in remove {
        tracing::info!(route = %p, "route mirror: removed");
    }
}

/// The mirror's counters, written by its thread and read by the
/// management thread (`/metrics`, `/stats`).
#[derive(Debug, Default)]
pub struct MirrorCounters {
    entries: AtomicU64,
    updates: AtomicU64,
    resyncs: AtomicU64,
    write_errors: AtomicU64,
    stale: AtomicBool,
}

impl MirrorCounters {
    /// What the management thread reports.
    pub fn snapshot(&self) -> RouteMirrorStats {
        RouteMirrorStats {
            entries: self.entries.load(Ordering::Relaxed),
            updates: self.updates.load(Ordering::Relaxed),
            resyncs: self.resyncs.load(Ordering::Relaxed),
            write_errors: self.write_errors.load(Ordering::Relaxed),
            stale: self.stale.load(Ordering::Relaxed),
        }
    }

    /// The tries were written (`stale` is the follower's to clear).
    fn installed(&self, entries: usize) {
        self.entries.store(entries as u64, Ordering::Relaxed);
        self.updates.fetch_add(1, Ordering::Relaxed);
    }
}

/// The mirror's state: the main table as read, what the tries hold, and
/// the notification socket that keeps both current.
pub struct Mirror {
    shadow: Shadow,
    installed: BTreeMap<RoutePrefix, RouteMetrics>,
    sock: Socket,
    counters: Arc<MirrorCounters>,
}

impl Mirror {
    /// Subscribes to route changes, then reads the main table:
    /// [`Mirror::entries`] is what the tries must start with, and every
    /// change after the read waits in the socket for [`Mirror::spawn`].
    /// `counters` is where it counts what it does.
    pub fn read(counters: Arc<MirrorCounters>) -> io::Result<Mirror> {
        let sock = subscribe()?;
        let shadow = dump()?;
        let installed = shadow.desired();
        Ok(Mirror {
            shadow,
            installed,
            sock,
            counters,
        })
    }

    /// The tries' content.
    pub fn entries(&self) -> Vec<(RoutePrefix, RouteMetrics)> {
        self.installed.iter().map(|(p, m)| (*p, *m)).collect()
    }

    fn sync(&mut self, table: &RouteMtuTable) -> io::Result<()> {
        let want = self.shadow.desired();
        let (set, remove) = diff(&self.installed, &want);
        if set.is_empty() && remove.is_empty() {
            return Ok(());
        }
        table.update(&set, &remove, smallest_route_mtus(&want))?;
        log_changes(&set, &remove);
        self.installed = want;
        self.counters.installed(self.installed.len());
        Ok(())
    }

    /// Follows the kernel's route changes into `table` (the tries filled
    /// with [`Mirror::entries`]) until `stop`, on a thread of its own.
    pub fn spawn(
        self,
        table: RouteMtuTable,
        stop: &'static AtomicBool,
    ) -> io::Result<std::thread::JoinHandle<()>> {
        log_changes(&self.entries(), &[]);
        // The first fill (before the first frame, by the attach).
        self.counters.installed(self.installed.len());
        std::thread::Builder::new()
            .name("mtugate-routes".into())
            .spawn(move || self.follow(&table, stop))
    }

    fn follow(mut self, table: &RouteMtuTable, stop: &AtomicBool) {
        let mut rx = vec![0u8; 1 << 16];
        let mut events = Vec::new();
        // The tries lag the table (a write failed): retried every round.
        let mut behind = false;
        while !stop.load(Ordering::Relaxed) {
            let mut fds = [nix::poll::PollFd::new(
                self.sock.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            // Only a wait: whatever it returns, the reads below are
            // non-blocking and say what there is.
            let _ = nix::poll::poll(
                &mut fds,
                nix::poll::PollTimeout::from(POLL.as_millis() as u16),
            );
            let mut resync = false;
            // Everything queued, then one update of the tries.
            loop {
                match self.sock.recv(&mut &mut rx[..], 0) {
                    Ok(n) => {
                        if parse_batch(&rx[..n], &mut events).is_err() {
                            resync = true;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ENOBUFS as i32) => {
                        tracing::warn!("route mirror: notifications lost (buffer overrun); reading the table again");
                        resync = true;
                    }
                    Err(e) => {
                        tracing::warn!(
                            fd = self.sock.as_raw_fd(),
                            "route mirror: reading notifications: {e}"
                        );
                        break;
                    }
                }
            }
            if resync {
                self.counters.resyncs.fetch_add(1, Ordering::Relaxed);
                events.clear();
                match dump() {
                    Ok(s) => self.shadow = s,
                    Err(e) => tracing::warn!("route mirror: reading the table: {e}"),
                }
            }
            let changed = resync || !events.is_empty();
            for ev in events.drain(..) {
                self.shadow.apply(ev);
            }
            if changed || behind {
                match self.sync(table) {
                    Ok(()) => {
                        behind = false;
                        // Also when nothing was left to write (the table
                        // went back to what the tries hold).
                        self.counters.stale.store(false, Ordering::Relaxed);
                    }
                    Err(e) => {
                        if !behind {
                            tracing::warn!("route mirror: writing the XDP stage's tries (retried until it succeeds): {e}");
                        }
                        behind = true;
                        self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
                        self.counters.stale.store(true, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::route::RouteHeader;

    fn v4(a: [u8; 4], len: u8) -> RoutePrefix {
        RoutePrefix::new_v4(a, len)
    }

    fn key(prefix: RoutePrefix, priority: u32) -> RouteKey {
        RouteKey {
            prefix,
            tos: 0,
            priority,
        }
    }

    fn m(oif: u32, mtu: u16) -> RouteMetrics {
        RouteMetrics {
            oif,
            mtu,
            advmss: 0,
        }
    }

    #[test]
    fn only_routes_with_metrics_and_the_holes_inside_them() {
        let mut s = Shadow::default();
        s.apply(RouteEvent::New(key(v4([0; 4], 0), 0), m(2, 0)));
        s.apply(RouteEvent::New(key(v4([10, 8, 0, 0], 16), 0), m(3, 1400)));
        s.apply(RouteEvent::New(key(v4([10, 8, 1, 0], 24), 0), m(2, 0)));
        s.apply(RouteEvent::New(key(v4([192, 0, 2, 0], 24), 0), m(2, 0)));
        let d = s.desired();
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!(d[&v4([10, 8, 0, 0], 16)], m(3, 1400));
        assert_eq!(d[&v4([10, 8, 1, 0], 24)], RouteMetrics::default());
        // The default route with an MTU makes every route a hole.
        s.apply(RouteEvent::New(key(v4([0; 4], 0), 0), m(2, 1450)));
        assert_eq!(s.desired().len(), 4);
        s.apply(RouteEvent::Del(key(v4([0; 4], 0), 0)));
        s.apply(RouteEvent::Del(key(v4([10, 8, 0, 0], 16), 0)));
        assert!(s.desired().is_empty());
    }

    #[test]
    fn the_route_the_kernel_uses_wins() {
        let mut s = Shadow::default();
        let p = v4([10, 8, 0, 0], 16);
        s.apply(RouteEvent::New(key(p, 100), m(3, 1400)));
        s.apply(RouteEvent::New(key(p, 50), m(4, 1300)));
        assert_eq!(s.desired()[&p], m(4, 1300));
        s.apply(RouteEvent::Del(key(p, 50)));
        assert_eq!(s.desired()[&p], m(3, 1400));
        // A TOS-specific route does not stand for the prefix.
        s.apply(RouteEvent::New(
            RouteKey {
                prefix: p,
                tos: 0x10,
                priority: 0,
            },
            m(5, 1200),
        ));
        assert_eq!(s.desired()[&p], m(3, 1400));
    }

    #[test]
    fn diff_sets_what_changed_and_removes_what_went() {
        let a = v4([10, 8, 0, 0], 16);
        let b = v4([10, 9, 0, 0], 16);
        let c = v4([10, 10, 0, 0], 16);
        let installed = BTreeMap::from([(a, m(3, 1400)), (b, m(3, 1400))]);
        let want = BTreeMap::from([(a, m(3, 1300)), (c, m(3, 1400))]);
        let (set, remove) = diff(&installed, &want);
        assert_eq!(set, vec![(a, m(3, 1300)), (c, m(3, 1400))]);
        assert_eq!(remove, vec![b]);
        assert_eq!(diff(&want, &want), (vec![], vec![]));
    }

    fn msg(fam: AddressFamily, dst: Option<RouteAddress>, len: u8) -> RouteMessage {
        let mut r = RouteMessage::default();
        r.header.address_family = fam;
        r.header.destination_prefix_length = len;
        r.header.table = RouteHeader::RT_TABLE_MAIN;
        r.header.kind = RouteType::Unicast;
        if let Some(d) = dst {
            r.attributes.push(RouteAttribute::Destination(d));
        }
        r
    }

    #[test]
    fn route_messages_become_events() {
        let mut r = msg(
            AddressFamily::Inet,
            Some(RouteAddress::Inet([203, 0, 113, 0].into())),
            24,
        );
        r.attributes.push(RouteAttribute::Oif(7));
        r.attributes.push(RouteAttribute::Priority(20));
        r.attributes.push(RouteAttribute::Metrics(vec![
            RouteMetric::Mtu(1400),
            RouteMetric::Advmss(1300),
        ]));
        let want_key = RouteKey {
            prefix: v4([203, 0, 113, 0], 24),
            tos: 0,
            priority: 20,
        };
        assert_eq!(
            event_of(&r, false),
            Some(RouteEvent::New(
                want_key,
                RouteMetrics {
                    oif: 7,
                    mtu: 1400,
                    advmss: 1300
                }
            ))
        );
        assert_eq!(event_of(&r, true), Some(RouteEvent::Del(want_key)));
        // Through the wire format: what the kernel sends is what we read.
        let mut nl = NetlinkMessage::new(
            NetlinkHeader::default(),
            NetlinkPayload::from(RouteNetlinkMessage::NewRoute(r.clone())),
        );
        nl.finalize();
        let mut buf = vec![0u8; nl.buffer_len()];
        nl.serialize(&mut buf);
        let mut evs = Vec::new();
        assert_eq!(parse_batch(&buf, &mut evs), Ok(false));
        assert_eq!(evs, vec![event_of(&r, false).unwrap()]);
        // Multipath: no single interface.
        r.attributes.push(RouteAttribute::MultiPath(vec![]));
        match event_of(&r, false) {
            Some(RouteEvent::New(_, m)) => assert_eq!(m.oif, 0),
            other => panic!("{other:?}"),
        }
        // The default route of IPv6 has no destination attribute.
        let d6 = msg(AddressFamily::Inet6, None, 0);
        assert!(matches!(
            event_of(&d6, false),
            Some(RouteEvent::New(
                RouteKey {
                    prefix: RoutePrefix::V6(_, 0),
                    ..
                },
                _
            ))
        ));
        // Ignored: other tables, local routes, clones.
        let mut other = msg(AddressFamily::Inet, None, 0);
        other.attributes.push(RouteAttribute::Table(100));
        assert_eq!(event_of(&other, false), None);
        let mut local = msg(AddressFamily::Inet, None, 0);
        local.header.kind = RouteType::Local;
        assert_eq!(event_of(&local, false), None);
        let mut clone = msg(AddressFamily::Inet, None, 0);
        clone.header.flags = RouteFlags::Cloned;
        assert_eq!(event_of(&clone, false), None);
    }
}
