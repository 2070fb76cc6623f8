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
//!   entries per worker; the oldest of a set is replaced). A forger outside
//!   must therefore guess a live connection's four-tuple, as it must to
//!   fool the host's own TCP (RFC 5927 §4.1).
//!
//! # What is remembered
//!
//! Per destination address, the smallest MTU learned, for `expires`
//! seconds (default 600, Linux's `mtu_expires`, P2). A larger MTU for a
//! destination already known does not raise it before it expires (P5); the
//! same or a smaller one renews it. The table is bounded ([`PMTU_SLOTS`]
//! entries per worker, the oldest of a set replaced). A SYN or SYN-ACK
//! whose source or destination has a learned MTU is clamped to that MTU
//! minus 40 (IPv4) or 60 (IPv6), or to its rule's or `[mss]`'s clamp if
//! that is lower.
//!
//! # Per worker
//!
//! The tables belong to one worker (no lock, no shared cache line on the
//! packet path), like the rest of its state, and use the `now` the caller
//! passes in. With several queues, a worker learns from the ICMP errors of
//! its own queue only. Both tables are keyed by SipHash-1-3 under a
//! per-worker secret key, so nobody outside can choose which entries
//! collide.

use crate::pipeline::PortId;
use crate::prf::SipKey;
use crate::wire::{checksum, icmp, ipv4, ipv6};

/// Flow table entries per worker (SYNs and SYN-ACKs remembered).
pub const FLOW_SLOTS: usize = 8192;
/// Path MTU entries per worker (destinations remembered).
pub const PMTU_SLOTS: usize = 2048;
/// Entries per set: a key lives in one of the 4 slots of its set.
const WAYS: usize = 4;

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
    /// What learning did, per worker.
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

/// A bounded, set-associative table from `N`-byte keys to values, with
/// the time each entry was last written.
#[derive(Debug, Clone)]
struct Table<const N: usize, V> {
    slots: Vec<Option<Slot<N, V>>>,
    /// `sets - 1` (sets is a power of two).
    mask: usize,
    key: SipKey,
}

#[derive(Debug, Clone, Copy)]
struct Slot<const N: usize, V> {
    key: [u8; N],
    val: V,
    at: u64,
}

impl<const N: usize, V: Copy> Table<N, V> {
    fn new(slots: usize, key: SipKey) -> Self {
        let sets = (slots / WAYS).next_power_of_two();
        Table {
            slots: vec![None; sets * WAYS],
            mask: sets - 1,
            key,
        }
    }

    #[inline]
    fn set(&self, k: &[u8; N]) -> std::ops::Range<usize> {
        let s = (self.key.hash13(k) as usize & self.mask) * WAYS;
        s..s + WAYS
    }

    #[inline]
    fn get(&self, k: &[u8; N]) -> Option<(usize, &Slot<N, V>)> {
        let r = self.set(k);
        let start = r.start;
        self.slots[r]
            .iter()
            .enumerate()
            .find_map(|(i, s)| s.as_ref().filter(|s| s.key == *k).map(|s| (start + i, s)))
    }

    /// Writes `k`: over itself, else an empty slot, else the oldest of its set.
    #[inline]
    fn put(&mut self, k: [u8; N], val: V, now: u64) {
        let r = self.set(&k);
        let set = &mut self.slots[r];
        let i = set
            .iter()
            .position(|s| s.as_ref().is_some_and(|s| s.key == k))
            .or_else(|| set.iter().position(Option::is_none))
            .unwrap_or_else(|| {
                (0..WAYS)
                    .min_by_key(|&i| set[i].as_ref().map_or(0, |s| s.at))
                    .unwrap_or(0)
            });
        set[i] = Some(Slot {
            key: k,
            val,
            at: now,
        });
    }

    fn remove(&mut self, i: usize) {
        if let Some(s) = self.slots.get_mut(i) {
            *s = None;
        }
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

/// A learned path MTU.
#[derive(Debug, Clone, Copy)]
struct Learned {
    mtu: u16,
}

/// One worker's learning state: the flow table, the path MTU table, and
/// their counters.
#[derive(Debug, Clone)]
pub struct Learner {
    flows: Table<37, PortId>,
    paths: Table<17, Learned>,
    /// Live entries in `paths` (some may have expired since: see
    /// [`Learner::refresh`]).
    paths_used: usize,
    /// What learning did.
    pub counters: PmtuCounters,
}

/// Nanoseconds per second.
const NS: u64 = 1_000_000_000;

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
    /// Empty tables keyed from a worker's seed.
    pub fn new(seed: u64) -> Learner {
        Learner {
            flows: Table::new(FLOW_SLOTS, SipKey::derive(seed, 0xf1)),
            paths: Table::new(PMTU_SLOTS, SipKey::derive(seed, 0x9a)),
            paths_used: 0,
            counters: PmtuCounters::default(),
        }
    }

    /// Records a SYN or SYN-ACK that came in on `port`.
    #[inline]
    pub fn record_flow(&mut self, s: &Seen<'_>, port: PortId, now: u64) {
        let [a, b, c, d] = s.ports;
        self.flows
            .put(flow_key(s.fam, s.src, s.dst, [a, b], [c, d]), port, now);
    }

    /// The learned MTU toward `addr`, if one is in force at `now`.
    #[inline]
    fn path_mtu(&mut self, fam: usize, addr: &[u8], now: u64, expires: u64) -> Option<u16> {
        let (i, s) = self.paths.get(&dest_key(fam, addr))?;
        if now.saturating_sub(s.at) < expires {
            return Some(s.val.mtu);
        }
        self.paths.remove(i);
        self.paths_used = self.paths_used.saturating_sub(1);
        None
    }

    /// The MSS a SYN or SYN-ACK between `s.src` and `s.dst` is limited to
    /// by a learned path MTU toward either of them.
    #[inline]
    pub fn clamp_for(&mut self, s: &Seen<'_>, now: u64, set: &PmtuSettings) -> Option<u16> {
        if self.paths_used == 0 {
            return None;
        }
        let exp = set.expires_secs.saturating_mul(NS);
        let a = self.path_mtu(s.fam, s.src, now, exp);
        let b = self.path_mtu(s.fam, s.dst, now, exp);
        let mtu = match (a, b) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        Some(mtu.saturating_sub(if s.fam == 0 { 40 } else { 60 }))
    }

    /// Remembers `mtu` toward `addr`: a new entry, a lower MTU, or the same
    /// one renewed; a higher one than in force is ignored (P5).
    fn learn(&mut self, fam: usize, addr: &[u8], mtu: u16, now: u64, set: &PmtuSettings) {
        let k = dest_key(fam, addr);
        if let Some(old) = self.path_mtu(fam, addr, now, set.expires_secs.saturating_mul(NS)) {
            if mtu > old {
                return;
            }
        } else {
            let r = self.paths.set(&k);
            let full = self.paths.slots[r].iter().all(Option::is_some);
            if !full {
                self.paths_used += 1;
            }
        }
        self.paths.put(k, Learned { mtu }, now);
        self.counters.learned += 1;
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
        match self.flows.get(&k) {
            None => self.reject(Reject::NoFlow),
            Some((_, s)) if s.val != toward => self.reject(Reject::WrongSide),
            Some(_) => self.learn(fam, dst, mtu, now, set),
        }
    }

    /// Drops the entries expired at `now` and sets the `entries` gauge.
    /// Off the packet path (the worker calls it before publishing).
    pub fn refresh(&mut self, now: u64, set: &PmtuSettings) {
        let exp = set.expires_secs.saturating_mul(NS);
        let mut used = 0;
        for s in &mut self.paths.slots {
            match s {
                Some(e) if now.saturating_sub(e.at) >= exp => *s = None,
                Some(_) => used += 1,
                None => {}
            }
        }
        self.paths_used = used;
        self.counters.entries = used as u64;
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
