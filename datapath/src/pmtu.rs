//! Learned path MTUs: what mtugate remembers from the ICMP "Fragmentation
//! Needed" (RFC 1191) and ICMPv6 "Packet Too Big" (RFC 8201) messages that
//! cross it toward the hosts behind it, so that later SYNs toward those
//! destinations are clamped even when the hosts never see an ICMP (a
//! firewall behind the gateway drops it: the PMTU black hole).
//!
//! # What is believed (RFC 5927)
//!
//! An ICMP error is easy to forge, and a believed one lowers the MSS of
//! every later connection toward its destination. One is learned from only
//! when all of this holds; otherwise it is forwarded untouched, learned
//! from not at all, and counted by reason ([`Reject`]):
//!
//! * it is well formed: ICMP type 3 code 4 or ICMPv6 type 2 code 0, its
//!   checksum right, quoting an IP header and at least the TCP ports;
//! * its MTU is at least the floor (`min_mtu`, default 552 as Linux's
//!   `min_pmtu`, for IPv4; always 1280 for IPv6, RFC 8201 §4). An MTU of 0
//!   (routers older than RFC 1191) is below any floor: we do not guess with
//!   the plateau table of RFC 1191 §5 (`shared/VECTORS.md` P4);
//! * the quoted packet is one the ICMP's destination sent (its source is
//!   the ICMP's destination) and was larger than the MTU reported;
//! * the quoted packet belongs to a TCP connection whose SYN or SYN-ACK
//!   crossed mtugate from the side the ICMP goes to, with the same
//!   addresses and ports. Every SYN and SYN-ACK that crosses is recorded,
//!   with the port it came in on, in a bounded table ([`FLOW_SLOTS`]
//!   entries; a newer connection replaces an older one in its slot). A
//!   forger outside
//!   must therefore guess a live connection's four-tuple, as it must to
//!   fool the host's own TCP (RFC 5927 §4.1).
//!
//! # What is remembered
//!
//! Per destination address, the smallest MTU learned, for `expires`
//! seconds (default 600, Linux's `mtu_expires`, P2). A larger MTU for a
//! destination already known does not raise it before it expires (P5); the
//! same or a smaller one renews it. The table is bounded ([`PMTU_SLOTS`]
//! entries, two per set, the older of a set replaced). A SYN or SYN-ACK
//! whose source or destination has a learned MTU is clamped to that MTU
//! minus 40 (IPv4) or 60 (IPv6), or to its rule's or `[mss]`'s clamp if
//! that is lower.
//!
//! # Shared by the workers
//!
//! RSS puts a connection's SYN and the ICMP error about it on queues of
//! their own (the error hashes on the router's address), so the tables
//! ([`LearnTables`]) are one set for the whole appliance, each worker
//! holding an `Arc` ([`crate::pipeline::State::share_learning`]): plain
//! atomics, no lock, a store per SYN recorded and a load or two per
//! lookup. The counters stay per worker.
//! Both tables are keyed by SipHash-1-3 under a secret key, so nobody
//! outside can choose which entries collide; time is the callers' `now`
//! in whole seconds (the workers of one appliance start together).

use crate::pipeline::PortId;
use crate::prf::SipKey;
use crate::wire::{checksum, icmp, ipv4, ipv6};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;

/// Flow table entries (SYNs and SYN-ACKs remembered; a power of two).
pub const FLOW_SLOTS: usize = 16384;
/// Path MTU entries (destinations remembered; a power of two).
pub const PMTU_SLOTS: usize = 4096;

/// Learning settings (`[pmtu]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PmtuSettings {
    /// Learn from ICMP errors at all.
    pub learn: bool,
    /// How long a learned MTU is used, in seconds.
    pub expires_secs: u64,
    /// The smallest IPv4 MTU believed (IPv6: always 1280).
    pub min_mtu_v4: u16,
}

impl Default for PmtuSettings {
    /// Off; when on, 600 s and 552 bytes, as Linux's `mtu_expires` and
    /// `min_pmtu`.
    fn default() -> Self {
        PmtuSettings {
            learn: false,
            expires_secs: 600,
            min_mtu_v4: 552,
        }
    }
}

/// Why an ICMP error was not learned from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Reject {
    /// Truncated, wrong checksum, or a quote that is not an IP packet with
    /// at least 4 bytes after its header.
    Malformed = 0,
    /// The MTU is below the floor (or 0).
    BelowFloor,
    /// The quoted packet's source is not the ICMP's destination, or it was
    /// not larger than the MTU reported.
    BadQuote,
    /// No connection with the quoted addresses and ports crossed mtugate
    /// (or the quote is not of TCP: only TCP connections are recorded).
    NoFlow,
    /// The connection crossed from the side the ICMP came from.
    WrongSide,
}

impl Reject {
    /// Number of reasons.
    pub const COUNT: usize = 5;
    /// Label values, by index.
    pub const NAMES: [&'static str; Self::COUNT] = [
        "malformed",
        "below_floor",
        "bad_quote",
        "no_flow",
        "wrong_side",
    ];
}

crate::counter_table! {
    /// What learning did, per worker (`entries`: of the shared tables).
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct PmtuCounters {
        /// Path MTUs learned (new, lowered or renewed).
        learned: u64 {
            metric: "mtugate_pmtu_learned_total",
            help: "ICMP Fragmentation Needed / Packet Too Big messages learned from (a path MTU remembered, lowered or renewed).",
            text: "pmtu learned",
        },
        /// ICMP errors not learned from, by reason.
        rejected: [u64; Reject::COUNT] {
            metric: "mtugate_pmtu_rejected_total",
            help: "ICMP Fragmentation Needed / Packet Too Big messages forwarded but not learned from, by reason.",
            text: "pmtu rejected {}",
            label: ("reason", &Reject::NAMES),
        },
        /// SYNs and SYN-ACKs whose MSS a learned path MTU lowered.
        clamped: u64 {
            metric: "mtugate_pmtu_clamped_total",
            help: "SYN and SYN-ACK segments whose MSS was lowered to a learned path MTU.",
            text: "pmtu clamped",
        },
        /// Destinations whose path MTU is remembered (at the last publication).
        entries: u64 {
            metric: "mtugate_pmtu_entries",
            help: "Destinations with a learned path MTU (not expired), at the last publication.",
            text: "pmtu entries",
            kind: Gauge,
        },
    }
}

/// A flow: family, source, destination (16 bytes each, IPv4 in the first
/// 4), source port, destination port.
type FlowKey = [u8; 37];
/// A destination: family and address.
type DestKey = [u8; 17];

fn flow_key(fam: usize, src: &[u8], dst: &[u8], sport: [u8; 2], dport: [u8; 2]) -> FlowKey {
    let mut k = [0u8; 37];
    k[0] = fam as u8;
    k[1..1 + src.len().min(16)].copy_from_slice(&src[..src.len().min(16)]);
    k[17..17 + dst.len().min(16)].copy_from_slice(&dst[..dst.len().min(16)]);
    k[33..35].copy_from_slice(&sport);
    k[35..37].copy_from_slice(&dport);
    k
}

fn dest_key(fam: usize, a: &[u8]) -> DestKey {
    let mut k = [0u8; 17];
    k[0] = fam as u8;
    k[1..1 + a.len().min(16)].copy_from_slice(&a[..a.len().min(16)]);
    k
}

/// Nanoseconds per second.
const NS: u64 = 1_000_000_000;

/// The flow table and the path MTU table, shared by every worker of an
/// appliance (each holds an `Arc`): a worker records the SYNs of its
/// queue, and the worker that receives the ICMP error about one of those
/// connections (RSS may well put it on another queue) finds it; every
/// worker clamps by what any of them learned.
///
/// Plain atomics, no lock, nothing allocated after creation. An entry is
/// a 64-bit fingerprint of its key (SipHash-1-3 under the tables' secret
/// key), not the key: a false match needs a 2^-56 coincidence (flows) or
/// 2^-63 (destinations). Writes are `Relaxed` stores; a reader that sees
/// the two words of a destination from two different writes notices it
/// (the value repeats 16 bits of the fingerprint) and takes the entry as
/// absent. Time is kept in whole seconds of the callers' `now`.
pub struct LearnTables {
    key: SipKey,
    /// Direct-mapped: `(fingerprint & !0xff) | (port + 1)`; 0 is empty.
    flows: Box<[AtomicU64]>,
    /// Two entries per set, two words per entry: `fingerprint | 1`, then
    /// `tag << 48 | mtu << 32 | seconds`; 0 is empty.
    paths: Box<[AtomicU64]>,
    /// Whether anything was ever learned: until then a SYN skips the two
    /// lookups.
    any: AtomicBool,
}

impl std::fmt::Debug for LearnTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LearnTables")
            .field("flows", &self.flows.len())
            .field("paths", &(self.paths.len() / 2))
            .finish_non_exhaustive()
    }
}

impl LearnTables {
    /// Empty tables ([`FLOW_SLOTS`] flows, [`PMTU_SLOTS`] destinations)
    /// under a key derived from `seed` (give it a secret one).
    pub fn new(seed: u64) -> LearnTables {
        let zeros = |n: usize| (0..n).map(|_| AtomicU64::new(0)).collect();
        LearnTables {
            key: SipKey::derive(seed, 0xf1),
            flows: zeros(FLOW_SLOTS),
            paths: zeros(2 * PMTU_SLOTS),
            any: AtomicBool::new(false),
        }
    }

    #[inline]
    fn record(&self, k: &FlowKey, port: PortId) {
        let h = self.key.hash13(k);
        let side = (port.index() as u64 + 1).min(0xff);
        self.flows[h as usize & (FLOW_SLOTS - 1)].store((h & !0xff) | side, Relaxed);
    }

    /// The port the connection's SYN (or SYN-ACK) came in on, if recorded.
    #[inline]
    fn flow_side(&self, k: &FlowKey) -> Option<PortId> {
        let h = self.key.hash13(k);
        let v = self.flows[h as usize & (FLOW_SLOTS - 1)].load(Relaxed);
        (v != 0 && v & !0xff == h & !0xff).then(|| PortId::new((v & 0xff) as usize - 1))
    }

    /// The word index of each way of `k`'s set, and its fingerprint.
    #[inline]
    fn ways(&self, k: &DestKey) -> ([usize; 2], u64) {
        let h = self.key.hash13(k);
        let set = (h >> 8) as usize & (PMTU_SLOTS / 2 - 1);
        ([4 * set, 4 * set + 2], h | 1)
    }

    /// The way's entry for fingerprint `fp`: (MTU, seconds written).
    #[inline]
    fn read(&self, w: usize, fp: u64) -> Option<(u16, u64)> {
        if self.paths[w].load(Relaxed) != fp {
            return None;
        }
        let v = self.paths[w + 1].load(Relaxed);
        (v >> 48 == fp >> 48).then_some(((v >> 32) as u16, v & 0xffff_ffff))
    }

    /// The MTU learned toward `k`, if in force at `now_s` (seconds).
    #[inline]
    fn path(&self, k: &DestKey, now_s: u64, exp_s: u64) -> Option<u16> {
        let (ways, fp) = self.ways(k);
        ways.into_iter().find_map(|w| {
            let (mtu, at) = self.read(w, fp)?;
            (now_s.saturating_sub(at) < exp_s).then_some(mtu)
        })
    }

    /// Remembers `mtu` toward `k` unless a lower one is in force (P5);
    /// whether it did.
    fn learn(&self, k: &DestKey, mtu: u16, now_s: u64, exp_s: u64) -> bool {
        let (ways, fp) = self.ways(k);
        let live = |w: usize| {
            self.read(w, fp)
                .filter(|&(_, at)| now_s.saturating_sub(at) < exp_s)
        };
        if ways
            .iter()
            .any(|&w| live(w).is_some_and(|(old, _)| mtu > old))
        {
            return false;
        }
        // Its own way, else an empty one, else the older.
        let age = |w: usize| match self.paths[w].load(Relaxed) {
            0 => 0,
            _ => 1 + (self.paths[w + 1].load(Relaxed) & 0xffff_ffff),
        };
        let w = ways
            .into_iter()
            .find(|&w| self.read(w, fp).is_some())
            .unwrap_or_else(|| ways.into_iter().min_by_key(|&w| age(w)).unwrap_or(ways[0]));
        self.paths[w].store(fp, Relaxed);
        let v = (fp >> 48) << 48 | u64::from(mtu) << 32 | (now_s & 0xffff_ffff);
        self.paths[w + 1].store(v, Relaxed);
        self.any.store(true, Relaxed);
        true
    }

    /// Destinations whose learned MTU is in force at `now_s`.
    fn live(&self, now_s: u64, exp_s: u64) -> u64 {
        self.paths
            .chunks_exact(2)
            .filter(|e| {
                let (f, v) = (e[0].load(Relaxed), e[1].load(Relaxed));
                f != 0 && v >> 48 == f >> 48 && now_s.saturating_sub(v & 0xffff_ffff) < exp_s
            })
            .count() as u64
    }
}

/// One worker's learning: the (shared) tables and its own counters.
#[derive(Debug, Clone)]
pub struct Learner {
    tables: Arc<LearnTables>,
    /// What learning did.
    pub counters: PmtuCounters,
}

/// A TCP segment seen crossing: what the flow table and the clamp need.
#[derive(Debug, Clone, Copy)]
pub struct Seen<'a> {
    /// 0 = IPv4, 1 = IPv6.
    pub fam: usize,
    /// Source address (4 or 16 bytes).
    pub src: &'a [u8],
    /// Destination address.
    pub dst: &'a [u8],
    /// Source and destination ports, as on the wire.
    pub ports: [u8; 4],
}

impl Learner {
    /// Learning over `tables` (shared with the other workers, or not).
    pub fn new(tables: Arc<LearnTables>) -> Learner {
        Learner {
            tables,
            counters: PmtuCounters::default(),
        }
    }

    /// Uses `tables` from now on (what was learned in the old ones is not
    /// carried over).
    pub fn set_tables(&mut self, tables: Arc<LearnTables>) {
        self.tables = tables;
    }

    /// Records a SYN or SYN-ACK that came in on `port`.
    #[inline]
    pub fn record_flow(&mut self, s: &Seen<'_>, port: PortId, _now: u64) {
        let [a, b, c, d] = s.ports;
        self.tables
            .record(&flow_key(s.fam, s.src, s.dst, [a, b], [c, d]), port);
    }

    /// The MSS a SYN or SYN-ACK between `s.src` and `s.dst` is limited to
    /// by a learned path MTU toward either of them.
    #[inline]
    pub fn clamp_for(&mut self, s: &Seen<'_>, now: u64, set: &PmtuSettings) -> Option<u16> {
        if !self.tables.any.load(Relaxed) {
            return None;
        }
        let (now_s, exp_s) = (now / NS, set.expires_secs);
        let a = self.tables.path(&dest_key(s.fam, s.src), now_s, exp_s);
        let b = self.tables.path(&dest_key(s.fam, s.dst), now_s, exp_s);
        let mtu = match (a, b) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        Some(mtu.saturating_sub(if s.fam == 0 { 40 } else { 60 }))
    }

    /// Remembers `mtu` toward `addr`: a new entry, a lower MTU, or the same
    /// one renewed; a higher one than in force is ignored (P5).
    fn learn(&mut self, fam: usize, addr: &[u8], mtu: u16, now: u64, set: &PmtuSettings) {
        if self
            .tables
            .learn(&dest_key(fam, addr), mtu, now / NS, set.expires_secs)
        {
            self.counters.learned += 1;
        }
    }

    fn reject(&mut self, r: Reject) {
        self.counters.rejected[r as usize] += 1;
    }

    /// An ICMPv4 message (`msg`: from its type byte to the end of the IP
    /// packet) sent to `to`, that came in on `port` and goes out of
    /// `toward`: learns from it if it is a Fragmentation Needed worth
    /// believing (see the module doc). Anything else is left alone.
    pub fn icmp_v4(
        &mut self,
        msg: &[u8],
        to: [u8; 4],
        toward: PortId,
        now: u64,
        set: &PmtuSettings,
    ) {
        if msg.len() < icmp::HEADER_LEN
            || msg[0] != icmp::v4::DEST_UNREACHABLE
            || msg[1] != icmp::v4::CODE_FRAG_NEEDED
        {
            return;
        }
        let m = icmp::Message::new_unchecked(msg);
        let mtu = m.next_hop_mtu();
        if checksum::checksum(msg) != 0 {
            return self.reject(Reject::Malformed);
        }
        let q = m.body();
        let Ok(ip) = quoted_v4(q) else {
            return self.reject(Reject::Malformed);
        };
        let hl = ip.header_len();
        if q.len() < hl + 4 {
            return self.reject(Reject::Malformed);
        }
        // Only TCP connections are recorded (their SYNs are what we clamp);
        // a non-first fragment quotes no ports.
        if ip.protocol() != ipv4::protocol::TCP || ip.frag_offset() != 0 {
            return self.reject(Reject::NoFlow);
        }
        if mtu < set.min_mtu_v4.max(ipv4::MIN_MTU) {
            return self.reject(Reject::BelowFloor);
        }
        if ip.src() != to || usize::from(ip.total_len()) <= usize::from(mtu) {
            return self.reject(Reject::BadQuote);
        }
        let ports = [q[hl], q[hl + 1], q[hl + 2], q[hl + 3]];
        self.check_flow(0, &ip.src(), &ip.dst(), ports, toward, mtu, now, set);
    }

    /// An ICMPv6 message (`msg`: from its type byte to the end of the IPv6
    /// packet) from `from` to `to`, that goes out of `toward`: learns from
    /// it if it is a Packet Too Big worth believing.
    #[allow(clippy::too_many_arguments)]
    pub fn icmp_v6(
        &mut self,
        msg: &[u8],
        from: &[u8; 16],
        to: &[u8; 16],
        toward: PortId,
        now: u64,
        set: &PmtuSettings,
    ) {
        if msg.len() < icmp::HEADER_LEN || msg[0] != icmp::v6::PACKET_TOO_BIG || msg[1] != 0 {
            return;
        }
        let Ok(len) = u32::try_from(msg.len()) else {
            return self.reject(Reject::Malformed);
        };
        let pseudo = checksum::pseudo_v6(from, to, ipv4::protocol::ICMPV6, len);
        if checksum::finish(checksum::sum(pseudo, msg)) != 0 {
            return self.reject(Reject::Malformed);
        }
        let m = icmp::Message::new_unchecked(msg);
        let mtu = m.mtu32();
        let q = m.body();
        if q.len() < ipv6::HEADER_LEN + 4 || q[0] >> 4 != 6 {
            return self.reject(Reject::Malformed);
        }
        // TCP right after the header: what a SYN we recorded looks like.
        if q[6] != ipv4::protocol::TCP {
            return self.reject(Reject::NoFlow);
        }
        if mtu < u32::from(ipv6::MIN_MTU) {
            return self.reject(Reject::BelowFloor);
        }
        let (src, dst) = (&q[8..24], &q[24..40]);
        let total = ipv6::HEADER_LEN + usize::from(u16::from_be_bytes([q[4], q[5]]));
        if src != to || total as u64 <= u64::from(mtu) {
            return self.reject(Reject::BadQuote);
        }
        let ports = [q[40], q[41], q[42], q[43]];
        let mtu = u16::try_from(mtu).unwrap_or(u16::MAX);
        self.check_flow(1, src, dst, ports, toward, mtu, now, set);
    }

    #[allow(clippy::too_many_arguments)]
    fn check_flow(
        &mut self,
        fam: usize,
        src: &[u8],
        dst: &[u8],
        ports: [u8; 4],
        toward: PortId,
        mtu: u16,
        now: u64,
        set: &PmtuSettings,
    ) {
        let k = flow_key(fam, src, dst, [ports[0], ports[1]], [ports[2], ports[3]]);
        match self.tables.flow_side(&k) {
            None => self.reject(Reject::NoFlow),
            Some(side) if side != toward => self.reject(Reject::WrongSide),
            Some(_) => self.learn(fam, dst, mtu, now, set),
        }
    }

    /// Sets the `entries` gauge: the destinations in force at `now` (in the
    /// shared tables: every worker reports the same number). Off the packet
    /// path: a scan of the table, before publishing.
    pub fn refresh(&mut self, now: u64, set: &PmtuSettings) {
        self.counters.entries = self.tables.live(now / NS, set.expires_secs);
    }
}

/// A quote of an IPv4 packet cut short (an ICMP error quotes the header and
/// at least 8 bytes, not the whole packet): checked like a packet, but
/// against the header length only.
fn quoted_v4(q: &[u8]) -> Result<ipv4::Packet<&[u8]>, crate::wire::WireError> {
    if q.len() < ipv4::MIN_HEADER_LEN || q[0] >> 4 != 4 {
        return Err(crate::wire::WireError::Truncated);
    }
    let hl = usize::from(q[0] & 0xf) * 4;
    if hl < ipv4::MIN_HEADER_LEN || q.len() < hl {
        return Err(crate::wire::WireError::Truncated);
    }
    Ok(ipv4::Packet::new_unchecked(&q[..hl]))
}
