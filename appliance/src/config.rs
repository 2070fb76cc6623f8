//! The configuration file (TOML): parsing, validation, and translation into
//! the datapath's [`Settings`].
//!
//! Every mistake produces one error line that names the offending key, and
//! validation finishes before anything is attached to an interface. Values
//! with a few accepted forms (the mode, MSS values, the match range, DF
//! policy, over-limit action) are read into their types as the file is
//! parsed, and a value that is none of the forms is refused there, naming
//! the key and the forms.
//!
//! Defaults: the pipeline's ([`Settings::default`]) are the only ones; the
//! `Default` of each section that feeds the pipeline is built from them.
//! The appliance's own (`[workers]`, `[xsk]`, `[mgmt]`) are written once, in
//! their section's `Default`.
//!
//! A validated configuration is two parts: [`Live`], what a running
//! appliance applies on a reload, and [`Restart`], what shapes sockets,
//! threads and listeners and needs a restart. Every key of the file is in
//! exactly one of them ([`FileConfig::split`] destructures the file
//! exhaustively), and a reload compares each part with `!=`
//! ([`Validated::reload_to`]).

use mtugate_datapath::pipeline::{
    Clamp, Config, DfPolicy, IcmpSettings, MssSettings, OverLimit, PortId, Rate, Settings,
    SettingsError, SynLimitSettings,
};
use mtugate_datapath::pmtu::PmtuSettings;
use mtugate_datapath::rules::{Prefix, RuleError, RuleMss, RuleSettings, Rules};
use mtugate_xsk::{FastPath, OnFailure, Steer, SynPolice};
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::marker::PhantomData;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

/// Bytes of a UMEM frame not available to a packet: the kernel puts the
/// packet `XDP_PACKET_HEADROOM` (256) bytes in, and an L3 packet needs an
/// Ethernet header plus up to two VLAN tags in front of it.
pub const FRAME_OVERHEAD: u32 = 256 + 14 + 8;

/// A configuration error: which key, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The path given.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key, a value of the wrong type, or a value
    /// that is none of its key's accepted forms.
    #[error("{path}: {message}")]
    Parse {
        /// The path given.
        path: String,
        /// What toml/serde said, with line and column, on one line.
        message: String,
    },
    /// A value that parses but is not acceptable.
    #[error("{key}: {message}")]
    Invalid {
        /// The dotted key, e.g. `port[1].mtu`.
        key: String,
        /// What is wrong and what would be right.
        message: String,
    },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

// ---------------------------------------------------------------------------
// Values with a few accepted forms, read as the file is parsed.

/// A value one key of the file holds, spelled as a word or a number and
/// checked as it is read. A value that is none of the accepted forms is
/// refused with `KEY: VALUE is not WHAT: use FORMS`.
trait KeyValue: Sized {
    /// What it is, for "is not ...": `an MSS`.
    const WHAT: &'static str;
    /// The accepted forms, for "use ...".
    fn forms() -> String;
    /// From a string of the file.
    fn from_word(s: &str) -> Option<Self>;
    /// From an integer of the file.
    fn from_int(_n: i64) -> Option<Self> {
        None
    }
    /// As the file spells it.
    fn spell(&self) -> String;
}

/// `"a", "b" or "c"`.
fn one_of(words: &[&str]) -> String {
    let quoted: Vec<String> = words.iter().map(|w| format!("\"{w}\"")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// Reads a [`KeyValue`] at `key`.
struct KeyVisitor<T> {
    key: &'static str,
    value: PhantomData<T>,
}

impl<T: KeyValue> KeyVisitor<T> {
    fn not<E: de::Error>(&self, shown: impl fmt::Display) -> E {
        E::custom(format_args!(
            "{}: {shown} is not {}: use {}",
            self.key,
            T::WHAT,
            T::forms()
        ))
    }
}

impl<T: KeyValue> de::Visitor<'_> for KeyVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} for {}: {}", T::WHAT, self.key, T::forms())
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<T, E> {
        T::from_word(s).ok_or_else(|| self.not(format_args!("{s:?}")))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<T, E> {
        T::from_int(n).ok_or_else(|| self.not(n))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<T, E> {
        i64::try_from(n)
            .ok()
            .and_then(T::from_int)
            .ok_or_else(|| self.not(n))
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<T, E> {
        Err(self.not(n))
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<T, E> {
        Err(self.not(b))
    }
}

fn read_key<'de, D: Deserializer<'de>, T: KeyValue>(
    d: D,
    key: &'static str,
) -> Result<T, D::Error> {
    d.deserialize_any(KeyVisitor {
        key,
        value: PhantomData,
    })
}

/// `deserialize_with` functions, one per key (serde does not tell a
/// deserializer which key it reads).
macro_rules! readers {
    ($($name:ident: $t:ty = $key:literal;)*) => {
        $(
            fn $name<'de, D: Deserializer<'de>>(d: D) -> Result<$t, D::Error> {
                read_key(d, $key)
            }
        )*
    };
}

readers! {
    read_mss_ipv4: Clamp = "mss.ipv4";
    read_mss_ipv6: Clamp = "mss.ipv6";
    read_df_policy: DfPolicy = "df.policy";
    read_over_limit: OverLimit = "syn_limit.over_limit";
    read_rule_mss_ipv4: Clamp = "rule.mss.ipv4";
    read_rule_mss_ipv6: Clamp = "rule.mss.ipv6";
}

fn read_mss_match<'de, D: Deserializer<'de>>(d: D) -> Result<Option<MssRange>, D::Error> {
    read_key(d, "mss.match").map(Some)
}

fn read_rule_df<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DfPolicy>, D::Error> {
    read_key(d, "rule.df").map(Some)
}

fn read_rule_mss_match<'de, D: Deserializer<'de>>(d: D) -> Result<Option<MssRange>, D::Error> {
    read_key(d, "rule.mss.match").map(Some)
}

fn spell<T: KeyValue, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&v.spell())
}

fn spell_opt<T: KeyValue, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_some(&v.spell()),
        None => s.serialize_none(),
    }
}

/// The operating mode (`mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Two ports, a transparent bump in the wire.
    Wire,
    /// An L3 gateway over any number of ports, with the kernel as its
    /// control plane (addresses, routes, neighbours).
    Router,
}

impl Mode {
    /// Every mode. A new one goes here and in [`Mode::name`].
    pub const ALL: [Mode; 2] = [Mode::Wire, Mode::Router];

    /// As the file spells it.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Wire => "wire",
            Mode::Router => "router",
        }
    }
}

impl KeyValue for Mode {
    const WHAT: &'static str = "a mode";
    fn forms() -> String {
        one_of(&Mode::ALL.map(Mode::name))
    }
    fn from_word(s: &str) -> Option<Self> {
        Mode::ALL.into_iter().find(|m| m.name() == s)
    }
    fn spell(&self) -> String {
        self.name().into()
    }
}

/// Read from the key `mode` (the only key that holds a mode).
impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        read_key(d, "mode")
    }
}

impl Serialize for Mode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        spell(self, s)
    }
}

/// An MSS value: `"auto"`, `"off"`, or a number 1..=65535 (whether it fits
/// the port MTUs is checked by [`FileConfig::validate`]).
impl KeyValue for Clamp {
    const WHAT: &'static str = "an MSS";
    fn forms() -> String {
        "\"auto\", \"off\" or a number 1..=65535".into()
    }
    fn from_word(s: &str) -> Option<Self> {
        match s {
            "auto" => Some(Clamp::Auto),
            "off" => Some(Clamp::Off),
            _ => None,
        }
    }
    fn from_int(n: i64) -> Option<Self> {
        u16::try_from(n).ok().filter(|&n| n >= 1).map(Clamp::Fixed)
    }
    fn spell(&self) -> String {
        match self {
            Clamp::Auto => "auto".into(),
            Clamp::Off => "off".into(),
            Clamp::Fixed(n) => n.to_string(),
        }
    }
}

/// `[mss] match`: only clamp an MSS in `lo..=hi`, written `"lo:hi"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MssRange {
    /// Smallest MSS clamped, at least 1.
    pub lo: u16,
    /// Largest MSS clamped, at least `lo`.
    pub hi: u16,
}

impl KeyValue for MssRange {
    const WHAT: &'static str = "an MSS range";
    fn forms() -> String {
        "\"lo:hi\" with 1 <= lo <= hi <= 65535".into()
    }
    fn from_word(s: &str) -> Option<Self> {
        let (lo, hi) = s.split_once(':')?;
        let lo: u16 = lo.trim().parse().ok()?;
        let hi: u16 = hi.trim().parse().ok()?;
        (lo >= 1 && lo <= hi).then_some(MssRange { lo, hi })
    }
    fn spell(&self) -> String {
        format!("{}:{}", self.lo, self.hi)
    }
}

impl KeyValue for DfPolicy {
    const WHAT: &'static str = "a DF policy";
    fn forms() -> String {
        one_of(&DF_POLICIES.map(df_policy_name))
    }
    fn from_word(s: &str) -> Option<Self> {
        DF_POLICIES.into_iter().find(|&p| df_policy_name(p) == s)
    }
    fn spell(&self) -> String {
        df_policy_name(*self).into()
    }
}

/// Every DF policy. A new one goes here and in [`df_policy_name`].
const DF_POLICIES: [DfPolicy; 3] = [DfPolicy::Respect, DfPolicy::ClearUdp, DfPolicy::ClearAll];

fn df_policy_name(p: DfPolicy) -> &'static str {
    match p {
        DfPolicy::Respect => "respect",
        DfPolicy::ClearUdp => "clear-udp",
        DfPolicy::ClearAll => "clear-all",
    }
}

impl KeyValue for OverLimit {
    const WHAT: &'static str = "an over-limit action";
    fn forms() -> String {
        one_of(&OVER_LIMITS.map(over_limit_name))
    }
    fn from_word(s: &str) -> Option<Self> {
        OVER_LIMITS.into_iter().find(|&o| over_limit_name(o) == s)
    }
    fn spell(&self) -> String {
        over_limit_name(*self).into()
    }
}

/// Every over-limit action. A new one goes here and in [`over_limit_name`].
const OVER_LIMITS: [OverLimit; 2] = [OverLimit::Pass, OverLimit::Drop];

fn over_limit_name(o: OverLimit) -> &'static str {
    match o {
        OverLimit::Pass => "pass",
        OverLimit::Drop => "drop",
    }
}

// ---------------------------------------------------------------------------
// The file.

/// The whole file, as written.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Operating mode.
    pub mode: Mode,
    /// Exactly two ports.
    #[serde(rename = "port")]
    pub ports: Vec<PortConfig>,
    /// MSS clamping.
    #[serde(default)]
    pub mss: MssConfig,
    /// DF policy.
    #[serde(default)]
    pub df: DfConfig,
    /// ICMP errors.
    #[serde(default)]
    pub icmp: IcmpConfig,
    /// SYN rewrite limit.
    #[serde(default)]
    pub syn_limit: SynLimitConfig,
    /// Queues and cores.
    #[serde(default)]
    pub workers: WorkersConfig,
    /// AF_XDP socket tuning and the XDP stage.
    #[serde(default)]
    pub xsk: XskConfig,
    /// Wire-mode behaviour (wire mode only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wire: Option<WireConfig>,
    /// Router-mode behaviour (router mode only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router: Option<RouterConfig>,
    /// Management thread.
    #[serde(default)]
    pub mgmt: MgmtConfig,
    /// `[[rule]]`: rules, in order (first match wins).
    #[serde(default, rename = "rule", skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RuleConfig>,
    /// `[pmtu]`: learned path MTUs.
    #[serde(default)]
    pub pmtu: PmtuConfig,
}

/// One `[[rule]]`. Prefixes and the port are read as text here and checked
/// by [`FileConfig::validate`], which names the rule and the entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Its name: the `rule` label of its counters.
    pub name: String,
    /// The `[[port]]` name SYNs must arrive on; any when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Source prefixes (IPv4 and IPv6); any source when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub src: Vec<String>,
    /// Destination prefixes; any destination when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dst: Vec<String>,
    /// Outer VLAN ids; any frame (tagged or not) when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vlan: Vec<u16>,
    /// The clamp: `"auto"`, `"off"`, a number (both families), or a table
    /// `{ ipv4, ipv6, match, insert }`.
    #[serde(default, deserialize_with = "read_rule_mss")]
    pub mss: RuleMssConfig,
    /// DF policy of the packets it matches; `[df] policy` when unset.
    #[serde(
        default,
        deserialize_with = "read_rule_df",
        serialize_with = "spell_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub df: Option<DfPolicy>,
}

/// A rule's `mss`, always written back as a table (so `mss = "auto"` and
/// `mss = { ipv4 = "auto", ipv6 = "auto" }` are the same to a reload).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuleMssConfig {
    /// IPv4 clamp (default `auto`).
    #[serde(deserialize_with = "read_rule_mss_ipv4", serialize_with = "spell")]
    pub ipv4: Clamp,
    /// IPv6 clamp (default `auto`).
    #[serde(deserialize_with = "read_rule_mss_ipv6", serialize_with = "spell")]
    pub ipv6: Clamp,
    /// Only clamp MSS values in this range.
    #[serde(
        rename = "match",
        deserialize_with = "read_rule_mss_match",
        serialize_with = "spell_opt"
    )]
    pub match_range: Option<MssRange>,
    /// Insert an MSS option into matching SYNs without one.
    pub insert: bool,
}

impl Default for RuleMssConfig {
    fn default() -> Self {
        let d = RuleMss::default();
        RuleMssConfig {
            ipv4: d.ipv4,
            ipv6: d.ipv6,
            match_range: None,
            insert: d.insert,
        }
    }
}

/// Reads a rule's `mss`: one word or number for both families, or a table.
fn read_rule_mss<'de, D: Deserializer<'de>>(d: D) -> Result<RuleMssConfig, D::Error> {
    struct V;
    impl<'de> de::Visitor<'de> for V {
        type Value = RuleMssConfig;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an MSS for rule.mss: \"auto\", \"off\", a number 1..=65535, or a table { ipv4, ipv6, match, insert }")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<RuleMssConfig, E> {
            let k = KeyVisitor::<Clamp> {
                key: "rule.mss",
                value: PhantomData,
            };
            let c = de::Visitor::visit_str(k, s)?;
            Ok(both(c))
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> Result<RuleMssConfig, E> {
            let k = KeyVisitor::<Clamp> {
                key: "rule.mss",
                value: PhantomData,
            };
            let c = de::Visitor::visit_i64(k, n)?;
            Ok(both(c))
        }
        fn visit_map<A: de::MapAccess<'de>>(self, m: A) -> Result<RuleMssConfig, A::Error> {
            RuleMssConfig::deserialize(de::value::MapAccessDeserializer::new(m))
        }
    }
    fn both(c: Clamp) -> RuleMssConfig {
        RuleMssConfig {
            ipv4: c,
            ipv6: c,
            ..RuleMssConfig::default()
        }
    }
    d.deserialize_any(V)
}

/// `[pmtu]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PmtuConfig {
    /// Learn path MTUs from the ICMP errors crossing toward the hosts.
    pub learn: bool,
    /// Seconds a learned path MTU is used.
    pub expires: u64,
    /// The smallest IPv4 MTU believed (IPv6: always 1280).
    pub min_mtu: u16,
}

impl Default for PmtuConfig {
    fn default() -> Self {
        let d = PmtuSettings::default();
        PmtuConfig {
            learn: d.learn,
            expires: d.expires_secs,
            min_mtu: d.min_mtu_v4,
        }
    }
}

/// One `[[port]]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PortConfig {
    /// A name for logs and metric labels.
    pub name: String,
    /// The network interface.
    pub iface: String,
    /// Largest L3 packet allowed to leave through this port (wire mode,
    /// required; router mode takes each route's MTU from the kernel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
}

/// `[mss]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MssConfig {
    /// IPv4 clamp.
    #[serde(deserialize_with = "read_mss_ipv4", serialize_with = "spell")]
    pub ipv4: Clamp,
    /// IPv6 clamp.
    #[serde(deserialize_with = "read_mss_ipv6", serialize_with = "spell")]
    pub ipv6: Clamp,
    /// Only clamp MSS values in this range, like `-m tcpmss`.
    #[serde(
        rename = "match",
        deserialize_with = "read_mss_match",
        serialize_with = "spell_opt"
    )]
    pub match_range: Option<MssRange>,
    /// Insert an MSS option into SYNs without one.
    pub insert: bool,
}

impl Default for MssConfig {
    fn default() -> Self {
        let d = Settings::default().mss;
        MssConfig {
            ipv4: d.ipv4,
            ipv6: d.ipv6,
            match_range: d.range.map(|(lo, hi)| MssRange { lo, hi }),
            insert: d.insert,
        }
    }
}

/// `[df]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DfConfig {
    /// `respect`, `clear-udp` or `clear-all`.
    #[serde(deserialize_with = "read_df_policy", serialize_with = "spell")]
    pub policy: DfPolicy,
    /// Give a packet fragmented despite DF a fresh random IPv4 ID first.
    pub random_id: bool,
}

impl Default for DfConfig {
    fn default() -> Self {
        let d = Settings::default();
        DfConfig {
            policy: d.df,
            random_id: d.df_random_id,
        }
    }
}

/// A token bucket as the file states it: `(rate_pps, burst)`, where a
/// rate of 0 means no bucket. The burst of no bucket is 1, the smallest
/// one a rate can be given.
fn rate_keys(r: Option<Rate>) -> (u64, u64) {
    r.map_or((0, 1), |r| (r.per_sec, r.burst))
}

/// `[icmp]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IcmpConfig {
    /// Source of ICMPv4 errors (default: the offending packet's destination).
    pub source_v4: Option<Ipv4Addr>,
    /// Source of ICMPv6 errors (default: the offending packet's destination).
    pub source_v6: Option<Ipv6Addr>,
    /// Errors per second, both families; 0 sends none (and breaks PMTU
    /// discovery for your hosts: only if you must not emit ICMP).
    pub rate_pps: u64,
    /// Bucket depth.
    pub burst: u64,
}

impl Default for IcmpConfig {
    /// The pipeline's defaults. (The pipeline can also send errors without
    /// a limit, which the file cannot say; its default has a limit.)
    fn default() -> Self {
        let d = Settings::default().icmp;
        let (rate_pps, burst) = rate_keys(d.limit.filter(|_| d.enabled));
        IcmpConfig {
            source_v4: d.source_v4.map(Ipv4Addr::from),
            source_v6: d.source_v6.map(Ipv6Addr::from),
            rate_pps,
            burst,
        }
    }
}

/// `[syn_limit]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SynLimitConfig {
    /// SYN rewrites per second over all sources; 0 = unlimited.
    pub rate_pps: u64,
    /// Bucket depth.
    pub burst: u64,
    /// SYN rewrites per second per source /24 or /64; 0 = no per-source limit.
    pub per_source_pps: u64,
    /// Per-source bucket depth.
    pub per_source_burst: u64,
    /// `pass` (forward unclamped) or `drop`.
    #[serde(deserialize_with = "read_over_limit", serialize_with = "spell")]
    pub over_limit: OverLimit,
}

impl Default for SynLimitConfig {
    fn default() -> Self {
        let d = Settings::default().syn_limit;
        let (rate_pps, burst) = rate_keys(d.global);
        let (per_source_pps, per_source_burst) = rate_keys(d.per_source);
        SynLimitConfig {
            rate_pps,
            burst,
            per_source_pps,
            per_source_burst,
            over_limit: d.over_limit,
        }
    }
}

/// `[workers]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WorkersConfig {
    /// Queue ids to bind; default: every RX queue of the ports.
    pub queues: Option<Vec<u32>>,
    /// Core for each queue's worker, in order; default: cores 1.. (core 0
    /// is left to the system), wrapping.
    pub cores: Option<Vec<usize>>,
}

/// `[xsk]`: AF_XDP socket tuning.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct XskConfig {
    /// `auto` (zero-copy if the driver can, else copy), `copy`, `zerocopy`.
    pub mode: XskModeName,
    /// UMEM frame size: 2048 or 4096.
    pub frame_size: u32,
    /// UMEM frames per queue (shared by both ports).
    pub frames: u32,
    /// RX and TX ring size (power of two).
    pub ring_size: u32,
    /// Descriptors per batch.
    pub batch: u32,
    /// Busy polling (SO_PREFER_BUSY_POLL, SO_BUSY_POLL) where the kernel
    /// offers it.
    pub busy_poll: bool,
    /// `exceptions`: the XDP program forwards frames that need no work
    /// itself and steers only the rest to AF_XDP; `all`: every frame
    /// through AF_XDP.
    pub steer: Steer,
    /// A bpffs mount where the XDP links are pinned (so that the XDP stage
    /// outlives the process).
    pub bpffs: PathBuf,
    /// Where the ports' receive processing (NAPI: the XDP stage, the copy
    /// into the UMEM) runs: `workers` (threaded NAPI, pinned to the
    /// workers' cores) or `kernel` (left as the system has it).
    pub napi: NapiPlacement,
}

/// `[xsk] napi`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NapiPlacement {
    /// Threaded NAPI on every port, its threads pinned to the workers'
    /// cores: one queue's receive work, fast path and slow path on the
    /// cores mtugate owns.
    Workers,
    /// Untouched: receive work runs where the system's IRQ / RPS settings
    /// put it.
    #[default]
    Kernel,
}

impl Default for XskConfig {
    fn default() -> Self {
        XskConfig {
            mode: XskModeName::default(),
            frame_size: 4096,
            // Measured (BENCHMARKS.md, "Bursts"): 5000 SYNs at full speed
            // with the worker's core shared by a busy loop lost frames in
            // 8 of 12 runs at 2048 / 8192 and in none of 12 at 4096 /
            // 16384. Cost: 16384 × 4 KiB = 64 MiB of UMEM per queue.
            frames: 16384,
            ring_size: 4096,
            batch: 64,
            busy_poll: false,
            steer: Steer::Exceptions,
            bpffs: PathBuf::from("/sys/fs/bpf"),
            // Not "workers": receive work on the workers' cores competes
            // with anything else that runs there (e2e-limits' 5000-SYN
            // burst with the worker's core shared lost 10 % of it), so
            // moving it is the operator's choice for dedicated cores.
            napi: NapiPlacement::Kernel,
        }
    }
}

/// `[wire]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WireConfig {
    /// What the XDP stage does with frames that need work while no worker
    /// runs (mtugate stopped or died): `bypass` forwards them unprocessed,
    /// `block` drops them.
    pub on_failure: OnFailure,
}

impl Default for WireConfig {
    fn default() -> Self {
        WireConfig {
            on_failure: OnFailure::Bypass,
        }
    }
}

/// `[router]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouterConfig {
    /// What the XDP stage does with frames that need work (SYNs to clamp,
    /// too big, TTL expiring) while no worker runs: `bypass` gives them to
    /// the kernel, which forwards them unclamped (and sends its own ICMP
    /// errors); `block` drops them. Plain transit traffic keeps taking the
    /// XDP fast path either way.
    pub on_failure: OnFailure,
    /// Who fragments an IPv4 packet with DF clear that is larger than its
    /// route's MTU: the workers, or the kernel (the XDP stage hands it to
    /// the kernel's forwarding, which fragments it at the same route MTU).
    pub fragment: Fragmenter,
}

/// `[router] fragment`: where DF-clear IPv4 packets over the route MTU are
/// fragmented.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fragmenter {
    /// A worker: copied into user space, fragmented, each fragment sent
    /// (counted as mtugate's `fragmented`).
    Workers,
    /// The kernel's forwarding path, which fragments in place (counted by
    /// the XDP stage as `frag_to_kernel`, by the kernel as
    /// `Ip: FragCreates`): the default, about three times the workers'
    /// rate in the lab (BENCHMARKS.md), since it saves the copies into and
    /// out of user space that copy-mode AF_XDP makes.
    #[default]
    Kernel,
}

impl RouterConfig {
    fn is_default(&self) -> bool {
        *self == RouterConfig::default()
    }
}

impl WireConfig {
    fn is_default(&self) -> bool {
        *self == WireConfig::default()
    }
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            on_failure: OnFailure::Bypass,
            fragment: Fragmenter::default(),
        }
    }
}

/// AF_XDP bind modes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum XskModeName {
    /// Zero-copy if possible, else copy.
    #[default]
    Auto,
    /// Copy mode only.
    Copy,
    /// Zero-copy or fail.
    Zerocopy,
}

/// `[mgmt]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MgmtConfig {
    /// Address of the read-only HTTP endpoint (`/metrics`, `/stats`).
    pub listen: SocketAddr,
    /// Must be true to listen on a non-loopback address.
    pub allow_remote: bool,
    /// Statistics interval in milliseconds; 0 turns collection off (the
    /// workers then record and publish nothing).
    pub interval_ms: u64,
    /// Log a one-line summary every this many seconds; 0 = never.
    pub summary_secs: u64,
    /// Directory of the control socket (`mtugate.sock`, root only).
    pub run_dir: PathBuf,
}

/// The default `mgmt.run_dir`.
pub const DEFAULT_RUN_DIR: &str = "/run/mtugate";

impl Default for MgmtConfig {
    fn default() -> Self {
        MgmtConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            allow_remote: false,
            interval_ms: 1000,
            summary_secs: 0,
            run_dir: PathBuf::from(DEFAULT_RUN_DIR),
        }
    }
}

// ---------------------------------------------------------------------------
// The two parts.

/// What a reload applies: the pipeline's settings as the file states them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Live {
    /// Each port's `mtu`, in `[[port]]` order.
    #[serde(rename = "port")]
    pub ports: Vec<PortMtu>,
    /// `[mss]`.
    pub mss: MssConfig,
    /// `[df]`.
    pub df: DfConfig,
    /// `[icmp]`.
    pub icmp: IcmpConfig,
    /// `[syn_limit]`.
    pub syn_limit: SynLimitConfig,
    /// `[[rule]]`.
    #[serde(rename = "rule", skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RuleConfig>,
    /// `[pmtu]`.
    pub pmtu: PmtuConfig,
}

/// The live part of a `[[port]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortMtu {
    /// Largest L3 packet allowed to leave through this port (router mode:
    /// unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
}

/// What only a restart changes: the mode, the ports' identities, the
/// queues and cores, the sockets and the management listeners.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Restart {
    /// `mode`.
    pub mode: Mode,
    /// Each port's `name` and `iface`, in `[[port]]` order.
    #[serde(rename = "port")]
    pub ports: Vec<PortIdentity>,
    /// `[workers]`.
    pub workers: WorkersConfig,
    /// `[xsk]`.
    pub xsk: XskConfig,
    /// `[wire]` (shown only when not the default: a router has none).
    #[serde(skip_serializing_if = "WireConfig::is_default")]
    pub wire: WireConfig,
    /// `[router]` (shown only when not the default: a wire has none).
    #[serde(skip_serializing_if = "RouterConfig::is_default")]
    pub router: RouterConfig,
    /// `[mgmt]`.
    pub mgmt: MgmtConfig,
}

/// The restart part of a `[[port]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortIdentity {
    /// A name for logs and metric labels.
    pub name: String,
    /// The network interface.
    pub iface: String,
}

/// A validated configuration: its two parts and the datapath settings
/// derived from the live one.
#[derive(Debug, Clone, PartialEq)]
pub struct Validated {
    /// What needs a restart to change.
    pub restart: Restart,
    /// What a reload applies.
    pub live: Live,
    /// What the pipeline runs with (from `live`).
    pub settings: Settings,
}

impl Validated {
    /// The XDP stage of port `port`, given the ifindex of its egress port:
    /// wire mode forwards to the other port, whose MTU bounds the fast
    /// path. `None` for a port the configuration does not have.
    pub fn fast_path(&self, port: usize, egress_ifindex: u32) -> Option<FastPath> {
        if self.restart.mode == Mode::Router {
            return self.router_fast_path(port);
        }
        let egress = self.egress_port(port)?;
        Some(FastPath {
            steer: self.restart.xsk.steer,
            on_failure: self.restart.wire.on_failure,
            egress: Some((egress_ifindex, *self.settings.port_mtu.get(egress)?)),
            syn: self.syn_police(port),
            pmtu_errors: self.settings.pmtu.learn,
            router: false,
            frag_kernel: false,
        })
    }

    /// Router mode: the XDP stage of `port` looks every frame up in the
    /// kernel's FIB; no fixed egress. `None` for a port the configuration
    /// does not have.
    pub fn router_fast_path(&self, port: usize) -> Option<FastPath> {
        (port < self.restart.ports.len()).then(|| FastPath {
            steer: self.restart.xsk.steer,
            on_failure: self.restart.router.on_failure,
            egress: None,
            syn: self.syn_police(port),
            // Learning is wire mode's for now (refused in router mode).
            pmtu_errors: false,
            router: true,
            frag_kernel: self.restart.router.fragment == Fragmenter::Kernel,
        })
    }

    /// The pipeline's configuration for the workers (wire or router).
    pub fn worker_config(&self) -> Result<Config, SettingsError> {
        match self.restart.mode {
            Mode::Wire => Config::new(self.worker_settings()),
            Mode::Router => Config::router(self.worker_settings()),
        }
    }

    /// How the XDP stage of `port` polices SYNs: the ones the pipeline
    /// clamps on that port (per family), with the `[syn_limit]` budgets.
    /// The budgets are the appliance's: every port's program shares one set.
    pub fn syn_police(&self, port: usize) -> SynPolice {
        let s = &self.settings;
        let on = s.mss.on_ingress.get(port).copied().unwrap_or(false);
        let rate = |r: Option<Rate>| r.map(|r| (r.per_sec, r.burst));
        // A rule may clamp what `[mss]` leaves alone, and learning records
        // every SYN's connection: then every SYN is the pipeline's.
        let all = !s.rules.is_empty() || s.pmtu.learn;
        SynPolice {
            clamp: [
                all || (on && s.mss.ipv4 != Clamp::Off),
                all || (on && s.mss.ipv6 != Clamp::Off),
            ],
            enabled: s.syn_limit.global.is_some() || s.syn_limit.per_source.is_some(),
            global: rate(s.syn_limit.global),
            per_source: rate(s.syn_limit.per_source),
            over_pass: s.syn_limit.over_limit == OverLimit::Pass,
        }
    }

    /// What the workers' pipeline runs with: the settings, less the SYN
    /// limits, which the XDP stage enforces before the copy (a SYN that
    /// reaches a worker has been granted its tokens already; charging it
    /// twice would halve the budget).
    pub fn worker_settings(&self) -> Settings {
        let mut s = self.settings.clone();
        s.syn_limit.global = None;
        s.syn_limit.per_source = None;
        s
    }

    /// The port frames arriving on `port` leave by (wire mode: the other).
    pub fn egress_port(&self, port: usize) -> Option<usize> {
        if self.restart.mode == Mode::Wire && port < 2 && self.restart.ports.len() == 2 {
            Some(1 - port)
        } else {
            None
        }
    }
}

/// Flattens a TOML error onto one line (toml's message spans lines: a
/// snippet of the file).
fn one_line(e: &toml::de::Error) -> String {
    e.to_string()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

impl FileConfig {
    /// Reads and parses a file (no validation beyond types, known keys and
    /// accepted forms).
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|e| ConfigError::Parse {
            path: path.display().to_string(),
            message: one_line(&e),
        })
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<FileConfig, toml::de::Error> {
        toml::from_str(text)
    }

    /// Sorts every key into the part it belongs to. Exhaustive on purpose:
    /// a new key of the file does not compile until it is given a part.
    pub fn split(self) -> (Restart, Live) {
        let FileConfig {
            mode,
            ports,
            mss,
            df,
            icmp,
            syn_limit,
            workers,
            xsk,
            wire,
            router,
            mgmt,
            rules,
            pmtu,
        } = self;
        let (ids, mtus) = ports
            .into_iter()
            .map(|PortConfig { name, iface, mtu }| (PortIdentity { name, iface }, PortMtu { mtu }))
            .unzip();
        (
            Restart {
                mode,
                ports: ids,
                workers,
                xsk,
                wire: wire.unwrap_or_default(),
                router: router.unwrap_or_default(),
                mgmt,
            },
            Live {
                ports: mtus,
                mss,
                df,
                icmp,
                syn_limit,
                rules,
                pmtu,
            },
        )
    }

    /// Checks every value that can be checked without touching the system
    /// and derives the datapath settings.
    pub fn validate(self) -> Result<Validated, ConfigError> {
        let mode = self.mode;
        match (mode, &self.wire, &self.router) {
            (Mode::Router, Some(_), _) => {
                return Err(invalid(
                    "wire",
                    "a [wire] section is for mode = \"wire\" only",
                ))
            }
            (Mode::Wire, _, Some(_)) => {
                return Err(invalid(
                    "router",
                    "a [router] section is for mode = \"router\" only",
                ))
            }
            _ => {}
        }
        let (restart, live) = self.split();
        let ports = &restart.ports;
        match restart.mode {
            Mode::Wire => {
                if ports.len() != 2 {
                    return Err(invalid(
                        "port",
                        format!(
                            "wire mode needs exactly two [[port]] tables, found {}",
                            ports.len()
                        ),
                    ));
                }
            }
            Mode::Router => {
                // Rules and learned path MTUs are wire mode's for now: the
                // router clamps to the kernel's route MTUs.
                if !live.rules.is_empty() {
                    return Err(invalid(
                        "rule",
                        "[[rule]] is for mode = \"wire\" only for now (router mode clamps to the kernel's route MTUs: set a route's mtu)",
                    ));
                }
                if live.pmtu.learn {
                    return Err(invalid(
                        "pmtu.learn",
                        "learning path MTUs is for mode = \"wire\" only for now (router mode: the kernel learns them, set a route's mtu)",
                    ));
                }
                let max = mtugate_xsk::MAX_PORTS as usize;
                if ports.is_empty() || ports.len() > max {
                    return Err(invalid(
                        "port",
                        format!(
                            "router mode needs 1 to {max} [[port]] tables, found {}",
                            ports.len()
                        ),
                    ));
                }
            }
        }
        let x = &restart.xsk;
        if x.frame_size != 2048 && x.frame_size != 4096 {
            return Err(invalid(
                "xsk.frame_size",
                format!("{} is not 2048 or 4096", x.frame_size),
            ));
        }
        for (key, v) in [("xsk.ring_size", x.ring_size), ("xsk.frames", x.frames)] {
            if !v.is_power_of_two() || v < 64 {
                return Err(invalid(
                    key,
                    format!("{v} must be a power of two and at least 64"),
                ));
            }
        }
        if x.frames < 2 * x.ring_size {
            return Err(invalid(
                "xsk.frames",
                format!(
                    "{} frames cannot keep two ports' rings ({} each) supplied; use at least {}",
                    x.frames,
                    x.ring_size,
                    2 * x.ring_size
                ),
            ));
        }
        if x.batch == 0 || x.batch > x.ring_size || x.batch > 256 {
            return Err(invalid(
                "xsk.batch",
                format!("{} must be 1..=256 and at most xsk.ring_size", x.batch),
            ));
        }
        let mut mtus = vec![0u16; ports.len()];
        for (i, (p, m)) in ports.iter().zip(&live.ports).enumerate() {
            if p.iface.is_empty() || p.iface.len() > 15 || p.iface.contains('/') {
                return Err(invalid(
                    format!("port[{i}].iface"),
                    format!("\"{}\" is not an interface name", p.iface),
                ));
            }
            let max = x.frame_size - FRAME_OVERHEAD;
            let mtu = match (mode, m.mtu) {
                (Mode::Wire, Some(mtu)) => mtu,
                (Mode::Wire, None) => {
                    return Err(invalid(
                        format!("port[{i}].mtu"),
                        "missing: wire mode needs each port's MTU",
                    ))
                }
                // The route MTU decides; the port's bounds ICMP errors only.
                (Mode::Router, None) => max,
                (Mode::Router, Some(_)) => {
                    return Err(invalid(
                        format!("port[{i}].mtu"),
                        "router mode takes the MTU from the kernel's routes (ip route ... mtu N): remove it",
                    ))
                }
            };
            if !(68..=max).contains(&mtu) {
                return Err(invalid(
                    format!("port[{i}].mtu"),
                    format!(
                        "{} is outside 68..={max} (68 is the IPv4 minimum; {max} is what an xsk.frame_size of {} leaves after headroom and L2 headers)",
                        mtu, x.frame_size
                    ),
                ));
            }
            mtus[i] = mtu as u16;
        }
        for (j, p) in ports.iter().enumerate() {
            if ports[..j].iter().any(|q| q.iface == p.iface) {
                return Err(invalid(
                    format!("port[{j}].iface"),
                    "two ports name the same interface",
                ));
            }
            if ports[..j].iter().any(|q| q.name == p.name) {
                return Err(invalid(
                    format!("port[{j}].name"),
                    "two ports have the same name",
                ));
            }
        }
        // Router mode: a fixed clamp is bounded by the largest packet only.
        let min_mtu = match mode {
            Mode::Wire => mtus.iter().copied().min().unwrap_or(0),
            Mode::Router => u16::MAX,
        };
        for (key, c, overhead) in [
            ("mss.ipv4", live.mss.ipv4, 40u16),
            ("mss.ipv6", live.mss.ipv6, 60u16),
        ] {
            let max = min_mtu.saturating_sub(overhead);
            if let Clamp::Fixed(n) = c {
                if n > max {
                    return Err(invalid(
                        key,
                        format!(
                            "{n} is larger than the smallest port MTU ({min_mtu}) minus {overhead}: use at most {max}, or \"auto\""
                        ),
                    ));
                }
            }
        }
        let rate = |key: &str, pps: u64, burst: u64| -> Result<Option<Rate>, ConfigError> {
            if pps == 0 {
                return Ok(None);
            }
            if burst == 0 {
                return Err(invalid(key, "burst must be at least 1 when a rate is set"));
            }
            Ok(Some(Rate {
                per_sec: pps,
                burst,
            }))
        };
        let (icmp, s) = (&live.icmp, &live.syn_limit);
        // rate_pps = 0 means "send none" (not "unlimited"): ICMP errors are
        // the one thing an operator may need to switch off entirely.
        let icmp_limit = rate("icmp.burst", icmp.rate_pps, icmp.burst)?;
        // SYNs are clamped on every port (the file cannot say otherwise).
        let settings = Settings {
            port_mtu: mtus.clone(),
            mss: MssSettings {
                ipv4: live.mss.ipv4,
                ipv6: live.mss.ipv6,
                range: live.mss.match_range.map(|r| (r.lo, r.hi)),
                insert: live.mss.insert,
                on_ingress: vec![true; mtus.len()],
            },
            df: live.df.policy,
            df_random_id: live.df.random_id,
            rules: rules_settings(&live.rules, ports, &mtus)?,
            pmtu: pmtu_settings(&live.pmtu)?,
            icmp: IcmpSettings {
                source_v4: icmp.source_v4.map(|a| a.octets()),
                source_v6: icmp.source_v6.map(|a| a.octets()),
                enabled: icmp.rate_pps > 0,
                limit: icmp_limit,
            },
            syn_limit: SynLimitSettings {
                global: rate("syn_limit.burst", s.rate_pps, s.burst)?,
                per_source: rate(
                    "syn_limit.per_source_burst",
                    s.per_source_pps,
                    s.per_source_burst,
                )?,
                over_limit: s.over_limit,
            },
        };
        if let Some(src) = icmp.source_v4 {
            if !mtugate_datapath::wire::ipv4::is_unicast_source(src.octets()) {
                return Err(invalid(
                    "icmp.source_v4",
                    format!("{src} is not a unicast address"),
                ));
            }
        }
        if let Some(src) = icmp.source_v6 {
            if !mtugate_datapath::wire::ipv6::is_unicast_source(&src.octets()) {
                return Err(invalid(
                    "icmp.source_v6",
                    format!("{src} is not a unicast address"),
                ));
            }
        }
        let w = &restart.workers;
        if let Some(q) = &w.queues {
            if q.is_empty() {
                return Err(invalid("workers.queues", "the list is empty"));
            }
            let mut sorted = q.clone();
            sorted.sort_unstable();
            sorted.dedup();
            if sorted.len() != q.len() {
                return Err(invalid("workers.queues", "a queue id appears twice"));
            }
        }
        if let (Some(q), Some(c)) = (&w.queues, &w.cores) {
            if q.len() != c.len() {
                return Err(invalid(
                    "workers.cores",
                    format!(
                        "{} cores for {} queues: give one core per queue",
                        c.len(),
                        q.len()
                    ),
                ));
            }
        }
        let m = &restart.mgmt;
        if !m.listen.ip().is_loopback() && !m.allow_remote {
            return Err(invalid(
                "mgmt.listen",
                format!(
                    "{} is not a loopback address; set mgmt.allow_remote = true to expose the read-only endpoint",
                    m.listen
                ),
            ));
        }
        if m.interval_ms != 0 && !(100..=60_000).contains(&m.interval_ms) {
            return Err(invalid(
                "mgmt.interval_ms",
                format!(
                    "{} must be 0 (statistics off) or 100..=60000",
                    m.interval_ms
                ),
            ));
        }
        if m.summary_secs > 86_400 {
            return Err(invalid(
                "mgmt.summary_secs",
                format!("{} is more than a day (86400)", m.summary_secs),
            ));
        }
        if m.summary_secs > 0 && m.interval_ms == 0 {
            return Err(invalid(
                "mgmt.summary_secs",
                "a summary needs statistics: set mgmt.interval_ms above 0, or summary_secs = 0",
            ));
        }
        if !m.run_dir.is_absolute() || m.run_dir == Path::new("/") {
            return Err(invalid(
                "mgmt.run_dir",
                format!(
                    "\"{}\" must be an absolute path of a directory of its own (default {DEFAULT_RUN_DIR})",
                    m.run_dir.display()
                ),
            ));
        }
        // The datapath's own checks (they should all have been caught above).
        match mode {
            Mode::Wire => Config::new(settings.clone()),
            Mode::Router => Config::router(settings.clone()),
        }
        .map_err(|e| invalid("config", e.to_string()))?;
        Ok(Validated {
            restart,
            live,
            settings,
        })
    }
}

/// The rules as the pipeline takes them, each mistake named by its key
/// (`rule[1].dst[0]`, `rule[2].from`, ...).
fn rules_settings(
    rules: &[RuleConfig],
    ports: &[PortIdentity],
    mtus: &[u16],
) -> Result<Vec<RuleSettings>, ConfigError> {
    let mut out = Vec::with_capacity(rules.len());
    for (i, r) in rules.iter().enumerate() {
        let key = |k: &str| format!("rule[{i}].{k}");
        let from = match &r.from {
            None => None,
            Some(name) => match ports.iter().position(|p| &p.name == name) {
                Some(p) => Some(PortId::new(p)),
                None => {
                    let names: Vec<&str> = ports.iter().map(|p| p.name.as_str()).collect();
                    return Err(invalid(
                        key("from"),
                        format!("{name:?} is not a port: use {}", one_of(&names)),
                    ));
                }
            },
        };
        let prefixes = |k: &str, list: &[String]| -> Result<Vec<Prefix>, ConfigError> {
            list.iter()
                .enumerate()
                .map(|(j, s)| {
                    Prefix::parse(s)
                        .map_err(|e| invalid(format!("rule[{i}].{k}[{j}]"), e.to_string()))
                })
                .collect()
        };
        if let Some(v) = r.vlan.iter().find(|&&v| v > 4094) {
            return Err(invalid(
                key("vlan"),
                format!("{v} is not a VLAN id: use 0..=4094"),
            ));
        }
        out.push(RuleSettings {
            name: r.name.clone(),
            from,
            src: prefixes("src", &r.src)?,
            dst: prefixes("dst", &r.dst)?,
            vlan: r.vlan.clone(),
            mss: RuleMss {
                ipv4: r.mss.ipv4,
                ipv6: r.mss.ipv6,
                range: r.mss.match_range.map(|m| (m.lo, m.hi)),
                insert: r.mss.insert,
            },
            df: r.df,
        });
    }
    Rules::compile(&out, mtus).map_err(|e| {
        let at = |name: &str| rules.iter().position(|r| r.name == name).unwrap_or(0);
        match &e {
            RuleError::TooMany(_) => invalid("rule", e.to_string()),
            RuleError::DuplicateName(n) => {
                let second = rules.iter().rposition(|r| &r.name == n).unwrap_or(0);
                invalid(format!("rule[{second}].name"), e.to_string())
            }
            RuleError::BadName(n) => invalid(format!("rule[{}].name", at(n)), e.to_string()),
            RuleError::ClampTooLarge { rule, family, .. } => {
                invalid(format!("rule[{}].mss.{family}", at(rule)), e.to_string())
            }
            RuleError::BadPort { rule, .. } | RuleError::EmptyRange { rule, .. } => {
                invalid(format!("rule[{}]", at(rule)), e.to_string())
            }
            RuleError::BadPrefix(_) | RuleError::HostBits { .. } | RuleError::BadVlan(_) => {
                invalid("rule", e.to_string())
            }
        }
    })?;
    Ok(out)
}

/// `[pmtu]` as the pipeline takes it.
fn pmtu_settings(p: &PmtuConfig) -> Result<PmtuSettings, ConfigError> {
    if p.min_mtu < 68 {
        return Err(invalid(
            "pmtu.min_mtu",
            format!("{} is below the IPv4 minimum of 68", p.min_mtu),
        ));
    }
    if !(1..=86_400).contains(&p.expires) {
        return Err(invalid(
            "pmtu.expires",
            format!("{} must be 1..=86400 seconds", p.expires),
        ));
    }
    Ok(PmtuSettings {
        learn: p.learn,
        expires_secs: p.expires,
        min_mtu_v4: p.min_mtu,
    })
}

// ---------------------------------------------------------------------------
// Reloads.

/// One key whose value differs between two configurations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The dotted key, e.g. `mss.ipv4`.
    pub key: String,
    /// The value in force, as the file spells it (`unset`: not in the file).
    pub old: String,
    /// The value in the file.
    pub new: String,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} -> {}", self.key, self.old, self.new)
    }
}

/// What a reload from the configuration in force to a new one does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadPlan {
    /// Both parts are equal: nothing to do.
    Unchanged,
    /// Only the live part differs: apply it. The changes, key by key.
    Apply(Vec<Change>),
    /// The restart part differs: refuse the whole file. The restart part's
    /// changes, key by key (live ones, if any, are not applied either).
    Restart(Vec<Change>),
}

impl Validated {
    /// Compares the parts with `!=`: the restart part decides first.
    pub fn reload_to(&self, new: &Validated) -> ReloadPlan {
        if self.restart != new.restart {
            ReloadPlan::Restart(changes("restart settings", &self.restart, &new.restart))
        } else if self.live != new.live {
            ReloadPlan::Apply(changes("live settings", &self.live, &new.live))
        } else {
            ReloadPlan::Unchanged
        }
    }
}

/// The keys whose values differ between two unequal parts, in file order,
/// from their serialized form (so no key can be left out). Never empty:
/// should serializing lose a difference, the part is named instead.
fn changes<T: Serialize>(part: &str, old: &T, new: &T) -> Vec<Change> {
    let (a, b) = (flat(old), flat(new));
    let mut out = Vec::new();
    let value = |kv: &[(String, String)], k: &str| {
        kv.iter()
            .find(|(key, _)| key == k)
            .map_or_else(|| "unset".to_string(), |(_, v)| v.clone())
    };
    // Both lists are in the struct's order, each without its unset keys:
    // merge them, a key only `old` has going after its predecessor there.
    let mut order: Vec<&str> = b.iter().map(|(k, _)| k.as_str()).collect();
    let mut at = 0;
    for (k, _) in &a {
        match order.iter().position(|o| o == k) {
            Some(i) => at = i + 1,
            None => {
                order.insert(at, k);
                at += 1;
            }
        }
    }
    for key in order {
        let (o, n) = (value(&a, key), value(&b, key));
        if o != n {
            out.push(Change {
                key: key.to_string(),
                old: o,
                new: n,
            });
        }
    }
    if out.is_empty() {
        out.push(Change {
            key: part.to_string(),
            old: "(in force)".into(),
            new: "(changed)".into(),
        });
    }
    out
}

/// `(dotted key, value as the file spells it)` for every key `v` holds, in
/// order; an array of tables gives `port[1].mtu`.
fn flat<T: Serialize>(v: &T) -> Vec<(String, String)> {
    fn walk(prefix: &str, v: &toml::Value, out: &mut Vec<(String, String)>) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            toml::Value::Array(a) if a.iter().all(toml::Value::is_table) && !a.is_empty() => {
                for (i, v) in a.iter().enumerate() {
                    walk(&format!("{prefix}[{i}]"), v, out);
                }
            }
            v => out.push((prefix.to_string(), show(v))),
        }
    }
    fn show(v: &toml::Value) -> String {
        match v {
            toml::Value::String(s) => s.clone(),
            toml::Value::Array(a) => {
                format!("[{}]", a.iter().map(show).collect::<Vec<_>>().join(", "))
            }
            v => v.to_string(),
        }
    }
    let mut out = Vec::new();
    // Serializing plain data into a TOML value cannot fail for these types;
    // if it ever did, the caller's fallback names the part.
    if let Ok(v) = toml::Value::try_from(v) {
        walk("", &v, &mut out);
    }
    out
}
#[cfg(test)]
mod tests {
    use super::*;
    use mtugate_datapath::router::Route;

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
"#;

    const ROUTER: &str = r#"
mode = "router"
[[port]]
name = "inside"
iface = "in0"
[[port]]
name = "outside"
iface = "out0"
[[port]]
name = "dmz"
iface = "dmz0"
"#;

    #[test]
    fn router_mode_takes_any_number_of_ports_and_no_mtu() {
        let v = FileConfig::parse(ROUTER).unwrap().validate().unwrap();
        assert_eq!(v.restart.mode, Mode::Router);
        assert_eq!(v.settings.port_mtu.len(), 3);
        assert_eq!(v.egress_port(0), None);
        let fp = v.fast_path(2, 0).unwrap();
        assert!(fp.router);
        assert_eq!(fp.egress, None);
        assert_eq!(fp.on_failure, OnFailure::Bypass);
        assert_eq!(fp.syn.clamp, [true, true]);
        assert!(fp.frag_kernel, "the kernel fragments unless told");
        let w = FileConfig::parse(&format!("{ROUTER}[router]\nfragment = \"workers\"\n"))
            .unwrap()
            .validate()
            .unwrap();
        assert!(!w.fast_path(0, 0).unwrap().frag_kernel);
        let e = FileConfig::parse(&format!("{ROUTER}[router]\nfragment = \"nobody\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("fragment"), "{e}");
        let cfg = v.worker_config().unwrap();
        assert_eq!(cfg.port_count(), 3);
        let port = PortId::new(1);
        let route = |mtu, reverse_mtu| Route {
            egress: PortId::new(0),
            next_hop: [0; 6],
            src_mac: [0; 6],
            mtu,
            reverse_mtu,
            advmss: None,
            icmp_v4: None,
            icmp_v6: None,
        };
        // auto: the smaller route MTU minus 40 / 60.
        assert_eq!(
            cfg.router_clamp(0, port, &route(1400, Some(1500))),
            Some(1360)
        );
        assert_eq!(
            cfg.router_clamp(1, port, &route(1500, Some(1400))),
            Some(1340)
        );
        assert_eq!(cfg.router_clamp(0, port, &route(1500, None)), Some(1460));
        let fixed = FileConfig::parse(&format!(
            "{ROUTER}[mss]\nipv4 = 1300\n[router]\non_failure = \"block\"\n"
        ))
        .unwrap()
        .validate()
        .unwrap();
        assert_eq!(fixed.fast_path(0, 0).unwrap().on_failure, OnFailure::Block);
        let cfg = fixed.worker_config().unwrap();
        assert_eq!(
            cfg.router_clamp(0, port, &route(1400, Some(1500))),
            Some(1300)
        );
        // Each mode's section belongs to it; a reload cannot switch modes.
        let wire = FileConfig::parse(LAB).unwrap().validate().unwrap();
        assert!(matches!(wire.reload_to(&v), ReloadPlan::Restart(_)));
    }

    fn err(text: &str) -> String {
        match FileConfig::parse(text) {
            Err(e) => one_line(&e),
            Ok(f) => f.validate().unwrap_err().to_string(),
        }
    }

    /// The message of a value refused while parsing.
    fn parse_err(text: &str) -> String {
        FileConfig::parse(text).unwrap_err().message().to_string()
    }

    /// `(key, message)` of a value refused by validation.
    fn invalid_err(text: &str) -> (String, String) {
        match FileConfig::parse(text).unwrap().validate() {
            Err(ConfigError::Invalid { key, message }) => (key, message),
            other => panic!("not ConfigError::Invalid: {other:?}"),
        }
    }

    #[test]
    fn the_xdp_stage_forwards_to_the_other_port_under_its_mtu() {
        let v = FileConfig::parse(&format!("{LAB}[wire]\non_failure = \"block\"\n"))
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(
            v.fast_path(0, 7),
            Some(FastPath {
                steer: Steer::Exceptions,
                on_failure: OnFailure::Block,
                egress: Some((7, 1400)),
                syn: SynPolice {
                    clamp: [true, true],
                    enabled: true,
                    global: Some((100_000, 10_000)),
                    per_source: Some((200, 200)),
                    over_pass: false,
                },
                pmtu_errors: false,
                router: false,
                frag_kernel: false,
            })
        );
        assert_eq!(v.fast_path(1, 3).and_then(|f| f.egress), Some((3, 1500)));
        assert_eq!(v.egress_port(1), Some(0));
        assert_eq!(v.fast_path(2, 3), None);
    }

    #[test]
    fn the_xdp_stage_polices_what_the_pipeline_clamps() {
        let v = FileConfig::parse(&format!(
            "{LAB}[mss]\nipv6 = \"off\"\n[syn_limit]\nrate_pps = 10\nburst = 20\nper_source_pps = 0\nover_limit = \"pass\"\n"
        ))
        .unwrap()
        .validate()
        .unwrap();
        let p = v.syn_police(0);
        assert_eq!(p.clamp, [true, false]);
        assert!(p.enabled && p.over_pass);
        assert_eq!((p.global, p.per_source), (Some((10, 20)), None));
        // The XDP stage enforces the limits: the workers do not charge twice.
        let w = v.worker_settings();
        assert_eq!((w.syn_limit.global, w.syn_limit.per_source), (None, None));
        assert_eq!(w.icmp, v.settings.icmp);

        let off = FileConfig::parse(&format!(
            "{LAB}[syn_limit]\nrate_pps = 0\nper_source_pps = 0\n"
        ))
        .unwrap()
        .validate()
        .unwrap();
        assert!(!off.syn_police(1).enabled);
        assert_eq!(off.syn_police(1).clamp, [true, true]);
        assert_eq!(off.syn_police(2).clamp, [false, false]);
    }

    #[test]
    fn lab_defaults() {
        let v = FileConfig::parse(LAB).unwrap().validate().unwrap();
        assert_eq!(v.settings.port_mtu, [1500, 1400]);
        assert_eq!(v.settings.mss.ipv4, Clamp::Auto);
        let cfg = Config::new(v.settings).unwrap();
        assert_eq!(cfg.clamp_for(0, PortId::new(0)), Some(1360));
        assert_eq!(cfg.clamp_for(1, PortId::new(1)), Some(1340));
        assert_eq!(v.restart.mgmt.listen.port(), 9090);
    }

    #[test]
    fn every_example_config_validates() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/configs");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                FileConfig::load(&p)
                    .and_then(FileConfig::validate)
                    .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                n += 1;
            }
        }
        assert!(n >= 4, "expected the example configs, found {n}");
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (format!("{LAB}\n[mss]\nipv4 = 1361\n"), "mss.ipv4"),
            (format!("{LAB}\n[mss]\nipv6 = 1341\n"), "mss.ipv6"),
            (format!("{LAB}\n[mss]\nipv4 = \"sometimes\"\n"), "mss.ipv4"),
            (LAB.replace("mtu = 1400", "mtu = 67"), "port[1].mtu"),
            (LAB.replace("mtu = 1400", "mtu = 9000"), "port[1].mtu"),
            (LAB.replace("out0", "in0"), "port[1].iface"),
            (LAB.replace("\"wire\"", "\"bridge\""), "mode"),
            // Router mode takes MTUs from the routes, not the file.
            (LAB.replace("\"wire\"", "\"router\""), "port[0].mtu"),
            (
                format!("{LAB}\n[router]\non_failure = \"block\"\n"),
                "router",
            ),
            (format!("{}\n[wire]\n", ROUTER), "wire"),
            (ROUTER.replace("out0", "in0"), "port[1].iface"),
            (format!("{LAB}\nbogus = 1\n"), "bogus"),
            (format!("{LAB}\n[df]\npolicy = \"ignore\"\n"), "df.policy"),
            (
                format!("{LAB}\n[mss]\nmatch = \"1536:1361\"\n"),
                "mss.match",
            ),
            (
                format!("{LAB}\n[syn_limit]\nburst = 0\n"),
                "syn_limit.burst",
            ),
            (
                format!("{LAB}\n[icmp]\nsource_v4 = \"224.0.0.1\"\n"),
                "icmp.source_v4",
            ),
            (
                format!("{LAB}\n[workers]\nqueues = [0, 1]\ncores = [1]\n"),
                "workers.cores",
            ),
            (
                format!("{LAB}\n[workers]\nqueues = [0, 0]\n"),
                "workers.queues",
            ),
            (
                format!("{LAB}\n[xsk]\nframe_size = 3000\n"),
                "xsk.frame_size",
            ),
            (
                format!("{LAB}\n[mgmt]\nlisten = \"0.0.0.0:9090\"\n"),
                "mgmt.listen",
            ),
            (format!("{LAB}\n[mss]\nwhatever = 1\n"), "whatever"),
        ];
        for (text, key) in cases {
            let e = err(&text);
            assert!(e.contains(key), "error for {key} does not name it: {e}");
            assert!(!e.contains('\n'), "not one line: {e}");
        }
    }

    #[test]
    fn rules_and_pmtu_read_and_refuse_naming_the_key() {
        let rule = |body: &str| format!("{LAB}\n[[rule]]\nname = \"t\"\n{body}\n");
        let v = validated(&rule(
            "from = \"inside\"\ndst = [\"10.8.0.0/16\", \"fd08::/32\"]\nvlan = [100]\nmss = { ipv4 = 1300 }\ndf = \"clear-udp\"",
        ));
        let r = &v.settings.rules[0];
        assert_eq!(r.from, Some(PortId::new(0)));
        assert_eq!(r.dst.len(), 2);
        assert_eq!((r.mss.ipv4, r.mss.ipv6), (Clamp::Fixed(1300), Clamp::Auto));
        assert_eq!(r.df, Some(DfPolicy::ClearUdp));
        // One word or number sets both families, and reads back as a table:
        // the two spellings are no change to a reload.
        let a = validated(&rule("mss = \"off\""));
        assert_eq!(a.settings.rules[0].mss.ipv6, Clamp::Off);
        let b = validated(&rule("mss = { ipv4 = \"off\", ipv6 = \"off\" }"));
        assert_eq!(a.reload_to(&b), ReloadPlan::Unchanged);
        assert_eq!(
            validated(&rule("mss = 1200")).settings.rules[0].mss.ipv6,
            Clamp::Fixed(1200)
        );
        for (body, key) in [
            ("dst = [\"10.8.0.0/16\", \"10.8.0.1/16\"]", "rule[0].dst[1]"),
            ("src = [\"nonsense\"]", "rule[0].src[0]"),
            ("from = \"elsewhere\"", "rule[0].from"),
            ("vlan = [4095]", "rule[0].vlan"),
            ("mss = { ipv4 = 1400 }", "rule[0].mss.ipv4"),
            ("[[rule]]\nname = \"t\"", "rule[1].name"),
            ("[[rule]]\nname = \"a b\"", "rule[1].name"),
        ] {
            let (k, m) = invalid_err(&rule(body));
            assert_eq!(k, key, "{body}: {m}");
        }
        for (body, want) in [
            (
                "mss = \"sometimes\"",
                "rule.mss: \"sometimes\" is not an MSS",
            ),
            (
                "mss = { ipv4 = \"x\" }",
                "rule.mss.ipv4: \"x\" is not an MSS",
            ),
            ("df = \"never\"", "rule.df: \"never\" is not a DF policy"),
            ("mss = { ipv5 = 1 }", "unknown field `ipv5`"),
        ] {
            let e = parse_err(&rule(body));
            assert!(e.contains(want), "{body}: {e}");
        }
        // Learning works with the fast path: the XDP stage steers the ICMP
        // errors it learns from (and every SYN) to the workers.
        let v = validated(&format!("{LAB}\n[pmtu]\nlearn = true\nmin_mtu = 576\n"));
        assert!(v.settings.pmtu.learn);
        assert_eq!(v.settings.pmtu.min_mtu_v4, 576);
        let fp = v.fast_path(0, 7).unwrap();
        assert!(fp.pmtu_errors);
        assert_eq!(fp.syn.clamp, [true, true]);
        assert!(!validated(LAB).fast_path(0, 7).unwrap().pmtu_errors);
        let (k, _) = invalid_err(&format!("{LAB}\n[pmtu]\nmin_mtu = 67\n"));
        assert_eq!(k, "pmtu.min_mtu");
    }

    #[test]
    fn icmp_rate_zero_sends_none() {
        let v = FileConfig::parse(&format!("{LAB}\n[icmp]\nrate_pps = 0\n"))
            .unwrap()
            .validate()
            .unwrap();
        assert!(!v.settings.icmp.enabled);
        let v = FileConfig::parse(LAB).unwrap().validate().unwrap();
        assert!(v.settings.icmp.enabled);
        assert_eq!(v.settings.icmp.limit.map(|r| r.per_sec), Some(1000));
    }

    #[test]
    fn mgmt_keys() {
        let v = FileConfig::parse(LAB).unwrap().validate().unwrap();
        assert_eq!(v.restart.mgmt.interval_ms, 1000);
        assert_eq!(v.restart.mgmt.summary_secs, 0);
        assert_eq!(v.restart.mgmt.run_dir, Path::new(DEFAULT_RUN_DIR));
        let t = format!(
            "{LAB}\n[mgmt]\ninterval_ms = 0\nrun_dir = \"/run/mtugate-lab\"\nlisten = \"0.0.0.0:9100\"\nallow_remote = true\n"
        );
        let v = FileConfig::parse(&t).unwrap().validate().unwrap();
        assert_eq!(v.restart.mgmt.interval_ms, 0);
        assert_eq!(v.restart.mgmt.run_dir, Path::new("/run/mtugate-lab"));
        for (text, key) in [
            (
                format!("{LAB}\n[mgmt]\ninterval_ms = 50\n"),
                "mgmt.interval_ms",
            ),
            (
                format!("{LAB}\n[mgmt]\ninterval_ms = 60001\n"),
                "mgmt.interval_ms",
            ),
            (
                format!("{LAB}\n[mgmt]\nsummary_secs = 86401\n"),
                "mgmt.summary_secs",
            ),
            (
                format!("{LAB}\n[mgmt]\ninterval_ms = 0\nsummary_secs = 10\n"),
                "mgmt.summary_secs",
            ),
            (
                format!("{LAB}\n[mgmt]\nrun_dir = \"run/x\"\n"),
                "mgmt.run_dir",
            ),
            (format!("{LAB}\n[mgmt]\nrun_dir = \"/\"\n"), "mgmt.run_dir"),
            (format!("{LAB}\n[mgmt]\ninterval_ms = -1\n"), "interval_ms"),
            (
                format!("{LAB}\n[mgmt]\nlisten = \"[::]:9090\"\n"),
                "mgmt.listen",
            ),
        ] {
            let e = err(&text);
            assert!(e.contains(key), "error for {key} does not name it: {e}");
            assert!(!e.contains('\n'), "not one line: {e}");
        }
    }

    fn validated(text: &str) -> Validated {
        FileConfig::parse(text).unwrap().validate().unwrap()
    }

    fn lab_with(extra: &str) -> Validated {
        validated(&format!("{LAB}\n{extra}"))
    }

    /// Whether the plan applies or refuses, and the keys it names.
    fn plan_keys(p: &ReloadPlan) -> (&'static str, Vec<&str>) {
        match p {
            ReloadPlan::Unchanged => ("unchanged", Vec::new()),
            ReloadPlan::Apply(d) => ("apply", d.iter().map(|c| c.key.as_str()).collect()),
            ReloadPlan::Restart(d) => ("restart", d.iter().map(|c| c.key.as_str()).collect()),
        }
    }

    #[test]
    fn reload_sorts_live_from_restart() {
        let base = lab_with("[mss]\nipv4 = 1360\n");
        assert_eq!(base.reload_to(&base.clone()), ReloadPlan::Unchanged);

        let p = base.reload_to(&lab_with(
            "[mss]\nipv4 = 1300\n[df]\npolicy = \"clear-udp\"\n[icmp]\nrate_pps = 10\n",
        ));
        assert_eq!(
            plan_keys(&p),
            ("apply", vec!["mss.ipv4", "df.policy", "icmp.rate_pps"])
        );
        let ReloadPlan::Apply(d) = p else {
            unreachable!()
        };
        assert_eq!(d[0].to_string(), "mss.ipv4: 1360 -> 1300");
        assert_eq!(d[1].to_string(), "df.policy: respect -> clear-udp");
        assert_eq!(d[2].to_string(), "icmp.rate_pps: 1000 -> 10");

        let mtu =
            validated(&format!("{LAB}\n[mss]\nipv4 = 1360\n").replace("mtu = 1400", "mtu = 1420"));
        let p = base.reload_to(&mtu);
        assert_eq!(plan_keys(&p), ("apply", vec!["port[1].mtu"]));
        assert_eq!(
            p,
            ReloadPlan::Apply(vec![Change {
                key: "port[1].mtu".into(),
                old: "1400".into(),
                new: "1420".into()
            }])
        );

        let iface = validated(&format!("{LAB}\n[mss]\nipv4 = 1360\n").replace("out0", "out1"));
        assert_eq!(
            plan_keys(&base.reload_to(&iface)),
            ("restart", vec!["port[1].iface"])
        );
        let name = validated(&format!("{LAB}\n[mss]\nipv4 = 1360\n").replace("inside", "in"));
        assert_eq!(
            plan_keys(&base.reload_to(&name)),
            ("restart", vec!["port[0].name"])
        );

        for (extra, key, line) in [
            (
                "[workers]\nqueues = [0]\n",
                "workers.queues",
                "workers.queues: unset -> [0]",
            ),
            (
                "[workers]\ncores = [1]\n",
                "workers.cores",
                "workers.cores: unset -> [1]",
            ),
            ("[xsk]\nbatch = 32\n", "xsk.batch", "xsk.batch: 64 -> 32"),
            (
                "[xsk]\nmode = \"copy\"\n",
                "xsk.mode",
                "xsk.mode: auto -> copy",
            ),
            (
                "[mgmt]\nlisten = \"127.0.0.1:9191\"\n",
                "mgmt.listen",
                "mgmt.listen: 127.0.0.1:9090 -> 127.0.0.1:9191",
            ),
            (
                "[mgmt]\ninterval_ms = 0\n",
                "mgmt.interval_ms",
                "mgmt.interval_ms: 1000 -> 0",
            ),
            (
                "[mgmt]\nrun_dir = \"/run/x\"\n",
                "mgmt.run_dir",
                "mgmt.run_dir: /run/mtugate -> /run/x",
            ),
        ] {
            let p = base.reload_to(&lab_with(&format!("[mss]\nipv4 = 1360\n{extra}")));
            assert_eq!(plan_keys(&p), ("restart", vec![key]), "{extra}");
            let ReloadPlan::Restart(d) = p else {
                unreachable!()
            };
            assert_eq!(d[0].to_string(), line);
        }
    }

    #[test]
    fn changes_come_in_file_order() {
        let a = lab_with("[workers]\nqueues = [0]\n[xsk]\nbatch = 32\n");
        let b = lab_with(
            "[icmp]\nsource_v4 = \"192.0.2.1\"\n[xsk]\nbatch = 16\n[mgmt]\nallow_remote = true\n",
        );
        let ReloadPlan::Restart(d) = a.reload_to(&b) else {
            panic!("must need a restart")
        };
        let lines: Vec<String> = d.iter().map(Change::to_string).collect();
        assert_eq!(
            lines,
            [
                "workers.queues: [0] -> unset",
                "xsk.batch: 32 -> 16",
                "mgmt.allow_remote: false -> true"
            ]
        );
        let ReloadPlan::Apply(d) = lab_with("").reload_to(&lab_with(
            "[mss]\nmatch = \"1361:1536\"\n[icmp]\nsource_v6 = \"2001:db8::1\"\n",
        )) else {
            panic!("must apply")
        };
        let lines: Vec<String> = d.iter().map(Change::to_string).collect();
        assert_eq!(
            lines,
            [
                "mss.match: unset -> 1361:1536",
                "icmp.source_v6: unset -> 2001:db8::1"
            ]
        );
    }

    #[test]
    fn a_live_and_a_restart_change_together_are_refused() {
        let base = lab_with("[mss]\nipv4 = 1360\n");
        let live = "[mss]\nipv4 = 1300\n[icmp]\nrate_pps = 10\n";
        for (text, key) in [
            (
                format!("{LAB}\n{live}").replace("out0", "out9"),
                "port[1].iface",
            ),
            (
                format!("{LAB}\n{live}[workers]\nqueues = [0]\n"),
                "workers.queues",
            ),
            (
                format!("{LAB}\n{live}[xsk]\nbusy_poll = true\n"),
                "xsk.busy_poll",
            ),
            (
                format!("{LAB}\n{live}[mgmt]\nsummary_secs = 5\n"),
                "mgmt.summary_secs",
            ),
        ] {
            let new = validated(&text);
            assert_ne!(new.live, base.live);
            assert_eq!(
                plan_keys(&base.reload_to(&new)),
                ("restart", vec![key]),
                "{text}"
            );
        }
    }

    #[test]
    fn spelling_alone_is_no_change() {
        let a = lab_with("[mss]\nmatch = \"1361:1536\"\n");
        let b = lab_with(
            "[mss]\nmatch = \" 1361 : 1536 \"\nipv4 = \"auto\"\n[df]\npolicy = \"respect\"\n",
        );
        assert_eq!(a.reload_to(&b), ReloadPlan::Unchanged);
    }

    /// Every key of the file, each set to a value that is not its default.
    const FULL: &str = r#"
mode = "wire"
[[port]]
name = "a"
iface = "a0"
mtu = 1400
[[port]]
name = "b"
iface = "b0"
mtu = 1450
[mss]
ipv4 = 1300
ipv6 = "off"
match = "1301:1536"
insert = true
[df]
policy = "clear-all"
random_id = true
[icmp]
source_v4 = "192.0.2.1"
source_v6 = "2001:db8::1"
rate_pps = 10
burst = 5
[syn_limit]
rate_pps = 10
burst = 5
per_source_pps = 2
per_source_burst = 1
over_limit = "pass"
[workers]
queues = [0, 1]
cores = [1, 2]
[xsk]
mode = "copy"
frame_size = 2048
frames = 4096
ring_size = 1024
batch = 32
busy_poll = true
steer = "all"
bpffs = "/run/mtugate/bpffs"
napi = "workers"
[wire]
on_failure = "block"
[mgmt]
listen = "0.0.0.0:9191"
allow_remote = true
interval_ms = 500
summary_secs = 10
run_dir = "/run/mtugate-full"
[[rule]]
name = "into-tunnel"
from = "a"
src = ["192.0.2.0/24"]
dst = ["10.8.0.0/16", "fd08::/32"]
vlan = [100, 200]
mss = { ipv4 = 1300, ipv6 = 1340, match = "1301:1536", insert = true }
df = "respect"
[pmtu]
learn = true
expires = 300
min_mtu = 576
"#;

    fn keys<T: Serialize>(v: &T) -> Vec<String> {
        flat(v).into_iter().map(|(k, _)| k).collect()
    }

    #[test]
    fn every_key_is_in_exactly_one_part() {
        let file = FileConfig::parse(FULL).unwrap();
        let all = keys(&file);
        assert_eq!(all.len(), 52, "FULL sets every key: {all:?}");
        let (restart, live) = file.clone().split();
        let (r, l) = (keys(&restart), keys(&live));
        for k in &all {
            assert!(
                r.contains(k) != l.contains(k),
                "{k} is in both parts or none"
            );
        }
        assert_eq!(r.len() + l.len(), all.len());

        // And a reload sees a change of any one of them: FULL differs from
        // the defaults in every key (but the mode: there is only one).
        let full = file.validate().unwrap();
        let base = validated(
            "mode = \"wire\"\n[[port]]\nname = \"a\"\niface = \"a0\"\nmtu = 1500\n[[port]]\nname = \"b\"\niface = \"b0\"\nmtu = 1500\n[xsk]\nframe_size = 2048\n",
        );
        let restart_keys: Vec<&str> = r
            .iter()
            .map(String::as_str)
            .filter(|&k| k != "mode" && !k.ends_with(".name") && !k.ends_with(".iface"))
            .filter(|&k| k != "xsk.frame_size")
            .collect();
        assert_eq!(plan_keys(&base.reload_to(&full)), ("restart", restart_keys));
        let live_only = Validated {
            restart: base.restart.clone(),
            ..full.clone()
        };
        let live_keys: Vec<&str> = l.iter().map(String::as_str).collect();
        assert_eq!(plan_keys(&base.reload_to(&live_only)), ("apply", live_keys));
    }

    #[test]
    fn defaults_are_the_pipelines() {
        let v = validated(&LAB.replace("mtu = 1400", "mtu = 1500"));
        assert_eq!(v.settings, Settings::default());
        let empty = validated(&format!(
            "{}\n[mss]\n[df]\n[icmp]\n[syn_limit]\n[workers]\n[xsk]\n[mgmt]\n",
            LAB.replace("mtu = 1400", "mtu = 1500")
        ));
        assert_eq!(empty, v);
    }

    #[test]
    fn values_of_no_accepted_form_are_refused_naming_key_and_forms() {
        let mss = "is not an MSS: use \"auto\", \"off\" or a number 1..=65535";
        let range = "is not an MSS range: use \"lo:hi\" with 1 <= lo <= hi <= 65535";
        let cases = [
            (
                "[mss]\nipv4 = \"sometimes\"\n",
                format!("mss.ipv4: \"sometimes\" {mss}"),
            ),
            ("[mss]\nipv4 = \"1360\"\n", format!("mss.ipv4: \"1360\" {mss}")),
            ("[mss]\nipv4 = \"Auto\"\n", format!("mss.ipv4: \"Auto\" {mss}")),
            ("[mss]\nipv6 = 0\n", format!("mss.ipv6: 0 {mss}")),
            ("[mss]\nipv6 = 65536\n", format!("mss.ipv6: 65536 {mss}")),
            ("[mss]\nipv4 = -1\n", format!("mss.ipv4: -1 {mss}")),
            ("[mss]\nipv4 = true\n", format!("mss.ipv4: true {mss}")),
            ("[mss]\nipv4 = 1360.5\n", format!("mss.ipv4: 1360.5 {mss}")),
            (
                "[mss]\nipv4 = [1360]\n",
                "invalid type: sequence, expected an MSS for mss.ipv4: \"auto\", \"off\" or a number 1..=65535".to_string(),
            ),
            (
                "[mss]\nmatch = \"1536:1361\"\n",
                format!("mss.match: \"1536:1361\" {range}"),
            ),
            ("[mss]\nmatch = \"0:1361\"\n", format!("mss.match: \"0:1361\" {range}")),
            ("[mss]\nmatch = \"1361\"\n", format!("mss.match: \"1361\" {range}")),
            ("[mss]\nmatch = 1361\n", format!("mss.match: 1361 {range}")),
            (
                "[df]\npolicy = \"ignore\"\n",
                "df.policy: \"ignore\" is not a DF policy: use \"respect\", \"clear-udp\" or \"clear-all\"".into(),
            ),
            (
                "[syn_limit]\nover_limit = \"queue\"\n",
                "syn_limit.over_limit: \"queue\" is not an over-limit action: use \"pass\" or \"drop\"".into(),
            ),
        ];
        for (extra, want) in &cases {
            assert_eq!(&parse_err(&format!("{LAB}\n{extra}")), want, "{extra}");
        }
        assert_eq!(
            parse_err(&LAB.replace("\"wire\"", "\"bridge\"")),
            "mode: \"bridge\" is not a mode: use \"wire\" or \"router\""
        );
        assert_eq!(
            parse_err(&LAB.replace("\"wire\"", "2")),
            "mode: 2 is not a mode: use \"wire\" or \"router\""
        );

        // Through a file: ConfigError::Parse, one line: where, then what.
        let path = std::env::temp_dir().join(format!("mtugate-cfg-{}.toml", std::process::id()));
        std::fs::write(&path, format!("{LAB}\n[mss]\nipv4 = \"sometimes\"\n")).unwrap();
        let e = FileConfig::load(&path).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        match &e {
            ConfigError::Parse { path: p, message } => {
                assert_eq!(p, &path.display().to_string());
                assert!(
                    message.starts_with("TOML parse error at line 13, column 8 "),
                    "{message}"
                );
                assert!(message.ends_with(&cases[0].1), "{message}");
                assert!(!message.contains('\n'), "{message}");
                assert!(!message.contains("MssValue") && !message.contains("untagged"));
            }
            other => panic!("not ConfigError::Parse: {other:?}"),
        }
    }

    #[test]
    fn values_that_do_not_fit_are_refused_naming_the_key() {
        assert_eq!(
            invalid_err(&format!("{LAB}\n[mss]\nipv4 = 1361\n")),
            (
                "mss.ipv4".into(),
                "1361 is larger than the smallest port MTU (1400) minus 40: use at most 1360, or \"auto\"".into()
            )
        );
        assert_eq!(
            invalid_err(&format!("{LAB}\n[mss]\nipv6 = 1341\n")),
            (
                "mss.ipv6".into(),
                "1341 is larger than the smallest port MTU (1400) minus 60: use at most 1340, or \"auto\"".into()
            )
        );
        let three = format!("{LAB}\n[[port]]\nname = \"third\"\niface = \"x0\"\nmtu = 1500\n");
        assert_eq!(
            invalid_err(&three),
            (
                "port".into(),
                "wire mode needs exactly two [[port]] tables, found 3".into()
            )
        );
    }

    #[test]
    fn every_word_reads_back() {
        for m in Mode::ALL {
            assert_eq!(Mode::from_word(&m.spell()), Some(m));
        }
        for p in DF_POLICIES {
            assert_eq!(DfPolicy::from_word(&p.spell()), Some(p));
        }
        for o in OVER_LIMITS {
            assert_eq!(OverLimit::from_word(&o.spell()), Some(o));
        }
        for c in [Clamp::Auto, Clamp::Off] {
            assert_eq!(Clamp::from_word(&c.spell()), Some(c));
        }
        for n in [1, 536, 65535] {
            assert_eq!(Clamp::from_int(n.into()), Some(Clamp::Fixed(n)));
            assert_eq!(Clamp::Fixed(n).spell(), n.to_string());
        }
        let r = MssRange { lo: 1, hi: 65535 };
        assert_eq!(MssRange::from_word(&r.spell()), Some(r));
        assert_eq!(one_of(&["a"]), "\"a\"");
        assert_eq!(one_of(&["a", "b", "c"]), "\"a\", \"b\" or \"c\"");
    }

    #[test]
    fn fixed_and_off() {
        let t = format!(
            "{LAB}\n[mss]\nipv4 = 1360\nipv6 = \"off\"\nmatch = \"1361:1536\"\ninsert = true\n"
        );
        let v = FileConfig::parse(&t).unwrap().validate().unwrap();
        assert_eq!(v.settings.mss.ipv4, Clamp::Fixed(1360));
        assert_eq!(v.settings.mss.ipv6, Clamp::Off);
        assert_eq!(v.settings.mss.range, Some((1361, 1536)));
        assert_eq!(
            v.live.mss.match_range,
            Some(MssRange { lo: 1361, hi: 1536 })
        );
        assert!(v.settings.mss.insert);
    }
}
