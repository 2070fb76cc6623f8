//! Exact token buckets for the fast path, and a per-source SYN limiter.
//!
//! # Arithmetic
//!
//! Time is a `u64` count of nanoseconds supplied by the caller (`now`); this
//! module never reads a clock. A bucket counts **nano-tokens**: one token is
//! `10^9` nano-tokens. At `rate` tokens per second, one nanosecond earns
//! exactly `rate` nano-tokens, so a refill over `elapsed` nanoseconds adds
//!
//! ```text
//! earned = elapsed_ns × rate_per_sec          (nano-tokens, computed in u128)
//! tokens = min(tokens + earned, burst × 10^9)
//! ```
//!
//! and a grant subtracts `10^9`. No division, no float, no rounding: a rate of
//! 3 per second earns 3 nano-tokens per nanosecond, and the third of a token
//! that a float or a "nanoseconds per token" interval would round away is kept.
//!
//! # Why it is exact
//!
//! Let `t0` be the creation time and `t` the latest `now` seen. Every refill
//! adds at most `rate × (its elapsed)` nano-tokens, the elapsed intervals are
//! disjoint and sum to `t − t0`, and the bucket starts with `burst × 10^9`.
//! Tokens never go negative, so after `g` grants
//!
//! ```text
//! g × 10^9 ≤ burst × 10^9 + rate × (t − t0)
//! g ≤ burst + floor(rate × (t − t0) / 10^9)
//! ```
//!
//! The only way tokens are lost is the cap (a full bucket stops earning),
//! which is the point of a burst. The products are formed in `u128`
//! (`u64 × u64` cannot overflow it), so hours of idleness at any rate
//! saturate at the cap instead of wrapping. A `now` earlier than the latest
//! one seen counts as zero elapsed and does not move the bucket's clock back,
//! so jitter between sources of `now` can neither panic nor mint tokens.
//!
//! `burst × 10^9` is saturated to `u64::MAX` nano-tokens: a burst above
//! about 1.8 × 10^10 tokens is clamped to that, which only ever grants less.
//!
//! # Special rates
//!
//! * `rate 0, burst 0`: grants nothing, ever.
//! * `rate 0, burst n`: grants `n` tokens once, then nothing.
//! * `rate r, burst 0`: grants nothing, ever, because the bucket cannot hold a
//!   token. A configuration layer should reject this or pick `burst ≥ 1`.
//! * [`TokenBucket::unlimited`]: grants everything; costs one branch.
//!
//! # Per-source fairness
//!
//! [`SourceLimiter`] puts one bucket per source (an IPv4 address, an IPv6
//! /64, see [`source_key_v4`] and [`source_key_v6`]) in front of one global
//! [`SharedBucket`], so that a single flooding source cannot spend
//! everybody's SYN-rewrite budget, and the global budget is one for all
//! workers. See its documentation for the exact rules.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Nano-tokens per token, and nanoseconds per second.
const NANO: u64 = 1_000_000_000;

/// The state that changes on every packet: earned nano-tokens and the time of
/// the latest refill.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Level {
    /// Nano-tokens held, `≤ cap`.
    tokens: u64,
    /// The latest `now` seen, in nanoseconds.
    last: u64,
}

impl Level {
    /// Brings the level up to `now` at `rate` tokens per second, capped at
    /// `cap` nano-tokens. A `now` at or before `last` changes nothing.
    #[inline]
    fn refill(&mut self, rate: u64, cap: u64, now: u64) {
        if now > self.last {
            let earned = u128::from(now - self.last) * u128::from(rate);
            // ≤ (2^64 − 1) + (2^64 − 1)^2 < 2^128: no overflow.
            let total = u128::from(self.tokens) + earned;
            self.tokens = if total > u128::from(cap) {
                cap
            } else {
                total as u64
            };
            self.last = now;
        }
    }

    /// Takes one token if one is held.
    #[inline]
    fn take(&mut self) -> bool {
        if self.tokens >= NANO {
            self.tokens -= NANO;
            true
        } else {
            false
        }
    }
}

/// The bucket depth in nano-tokens for a burst in tokens.
#[inline]
fn cap_of(burst: u64) -> u64 {
    burst.saturating_mul(NANO)
}

/// A token bucket with exact integer arithmetic (see the [module docs](crate::ops::bucket)).
///
/// It holds at most `burst` tokens, starts full, and earns `rate_per_sec`
/// tokens per second. Over any sequence of calls it grants at most
/// `burst + floor(rate_per_sec × (t − t0) / 10^9)` tokens, where `t0` is the
/// creation time and `t` the latest `now` passed in.
///
/// ```
/// use mtugate_datapath::ops::bucket::TokenBucket;
///
/// let mut b = TokenBucket::new(10, 2, 0); // 10/s, burst 2, created at t = 0
/// assert!(b.try_take(0));
/// assert!(b.try_take(0));
/// assert!(!b.try_take(0));
/// assert!(!b.try_take(99_999_999)); // a token takes 100 ms to earn
/// assert!(b.try_take(100_000_000));
/// ```
#[derive(Clone, Debug)]
pub struct TokenBucket {
    /// Tokens earned per second.
    rate: u64,
    /// Depth in nano-tokens: `burst × 10^9`, saturated.
    cap: u64,
    level: Level,
    /// Grants everything; `rate`, `cap` and `level` are ignored.
    unlimited: bool,
}

impl TokenBucket {
    /// A bucket earning `rate_per_sec` tokens per second, holding at most
    /// `burst` tokens, created full at time `now` (nanoseconds).
    #[must_use]
    pub fn new(rate_per_sec: u64, burst: u64, now: u64) -> Self {
        let cap = cap_of(burst);
        Self {
            rate: rate_per_sec,
            cap,
            level: Level {
                tokens: cap,
                last: now,
            },
            unlimited: false,
        }
    }

    /// A bucket that grants every request. [`try_take`](Self::try_take) costs
    /// one branch; [`available`](Self::available) reports `u64::MAX`.
    #[must_use]
    pub fn unlimited() -> Self {
        Self {
            rate: 0,
            cap: 0,
            level: Level { tokens: 0, last: 0 },
            unlimited: true,
        }
    }

    /// Takes one token at time `now` if the bucket holds one; returns whether
    /// it did. A refused request takes nothing.
    #[inline]
    #[must_use]
    pub fn try_take(&mut self, now: u64) -> bool {
        if self.unlimited {
            return true;
        }
        self.level.refill(self.rate, self.cap, now);
        self.level.take()
    }

    /// Whole tokens held at time `now`, after refilling (`u64::MAX` when
    /// unlimited). Meant for tests and statistics.
    #[must_use]
    pub fn available(&mut self, now: u64) -> u64 {
        if self.unlimited {
            return u64::MAX;
        }
        self.level.refill(self.rate, self.cap, now);
        self.level.tokens / NANO
    }

    /// Changes rate and burst at time `now` without losing what was earned:
    /// tokens are first earned at the old rate up to `now`, then capped at the
    /// new burst. An unlimited bucket becomes a limited one that starts full.
    pub fn set_rate(&mut self, rate_per_sec: u64, burst: u64, now: u64) {
        if self.unlimited {
            *self = Self::new(rate_per_sec, burst, now);
            return;
        }
        self.level.refill(self.rate, self.cap, now);
        self.rate = rate_per_sec;
        self.cap = cap_of(burst);
        self.level.tokens = self.level.tokens.min(self.cap);
    }

    /// Makes the bucket grant everything from now on.
    pub fn set_unlimited(&mut self) {
        *self = Self::unlimited();
    }

    /// Whether the bucket grants everything.
    #[must_use]
    pub fn is_unlimited(&self) -> bool {
        self.unlimited
    }

    /// Tokens earned per second (0 when unlimited).
    #[must_use]
    pub fn rate_per_sec(&self) -> u64 {
        self.rate
    }

    /// The depth in whole tokens: the configured burst, clamped to about
    /// 1.8 × 10^10 (0 when unlimited).
    #[must_use]
    pub fn burst(&self) -> u64 {
        self.cap / NANO
    }
}

/// The GCRA parameters of a budget of `rate_per_sec` tokens a second and
/// depth `burst`: `(interval, tolerance)`, the nanoseconds a token costs
/// (rounded up: never more than the rate) and `(burst - 1) * interval`. A
/// closed budget (rate or burst 0) is `(u64::MAX, 0)`: nothing is granted.
/// The one definition for [`SharedBucket`] and the XDP stage's policer
/// (`mtugate-xsk`), so both grant alike.
pub fn gcra(rate_per_sec: u64, burst: u64) -> (u64, u64) {
    if rate_per_sec == 0 || burst == 0 {
        return (u64::MAX, 0);
    }
    let interval = NANO.div_ceil(rate_per_sec);
    (interval, (burst - 1).saturating_mul(interval))
}

/// A token bucket shared by every worker of the appliance, so that a
/// configured rate means the whole box whatever the number of workers and
/// queues (each worker with a bucket of its own would multiply it).
///
/// It is lock-free: one [`AtomicU64`] holds the *theoretical arrival time*
/// of the generic cell rate algorithm (GCRA, ITU-T I.371), the time at which
/// the bucket would be full again. A token costs an interval
/// `I = ceil(10^9 / rate)` ns; a request at `now` is granted when
/// `max(tat, now) − now ≤ (burst − 1) × I`, and then moves `tat` to
/// `max(tat, now) + I` with one compare-and-swap. A refusal only reads:
/// under a flood every worker sees the same cache line in its shared state
/// and nothing bounces between cores.
///
/// Bound: over any interval of length `E` it grants at most
/// `burst + floor(E / I)` tokens, and since `I ≥ 10^9 / rate` that is never
/// more than the [`TokenBucket`] bound `burst + floor(rate × E / 10^9)`.
/// Rounding `I` up costs at most `rate / 10^9` of the rate (a hundred-
/// thousandth at 10 000/s). Time is the caller's `now` in nanoseconds; a
/// worker whose `now` lags another's is judged more strictly, never less.
///
/// * `rate 0`: grants nothing.
/// * [`SharedBucket::unlimited`]: grants everything (one load).
///
/// ```
/// use mtugate_datapath::ops::bucket::SharedBucket;
/// use std::sync::Arc;
///
/// let b = Arc::new(SharedBucket::new(10, 2, 0)); // 10/s, burst 2
/// let other_worker = Arc::clone(&b);
/// assert!(b.try_take(0));
/// assert!(other_worker.try_take(0));
/// assert!(!b.try_take(0)); // the burst was one budget for both
/// assert!(other_worker.try_take(100_000_000)); // 100 ms earns one token
/// ```
#[derive(Debug)]
pub struct SharedBucket {
    /// Theoretical arrival time, ns.
    tat: AtomicU64,
    /// Nanoseconds per token; 0 = unlimited, `u64::MAX` = grants nothing.
    interval: AtomicU64,
    /// `(burst − 1) × interval`, saturated.
    tolerance: AtomicU64,
}

impl SharedBucket {
    /// A bucket of `rate_per_sec` tokens per second and depth `burst`,
    /// full at time `now`.
    #[must_use]
    pub fn new(rate_per_sec: u64, burst: u64, now: u64) -> Self {
        let b = SharedBucket {
            tat: AtomicU64::new(now),
            interval: AtomicU64::new(0),
            tolerance: AtomicU64::new(0),
        };
        b.set_rate(rate_per_sec, burst, now);
        b
    }

    /// A bucket that grants every request.
    #[must_use]
    pub fn unlimited() -> Self {
        SharedBucket {
            tat: AtomicU64::new(0),
            interval: AtomicU64::new(0),
            tolerance: AtomicU64::new(0),
        }
    }

    /// Takes one token at time `now` if the bucket holds one.
    #[inline]
    #[must_use]
    pub fn try_take(&self, now: u64) -> bool {
        let interval = self.interval.load(Ordering::Relaxed);
        if interval == 0 {
            return true;
        }
        let tolerance = self.tolerance.load(Ordering::Relaxed);
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let base = tat.max(now);
            if base - now > tolerance || interval == u64::MAX {
                return false;
            }
            match self.tat.compare_exchange_weak(
                tat,
                base.saturating_add(interval),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(seen) => tat = seen,
            }
        }
    }

    /// Changes rate and burst at time `now` (a reload). What was spent
    /// stays spent: the tokens held are re-expressed at the new rate, capped
    /// at the new burst. Every worker may call it with the same values.
    pub fn set_rate(&self, rate_per_sec: u64, burst: u64, now: u64) {
        let (interval, tolerance) = gcra(rate_per_sec, burst);
        // Tokens held under the old rate (everything when it was unlimited
        // or closed: start full), kept, capped at the new burst.
        let held = match self.interval.load(Ordering::Relaxed) {
            0 | u64::MAX => u64::MAX,
            _ => self.available(now),
        };
        self.interval.store(interval, Ordering::Relaxed);
        self.tolerance.store(tolerance, Ordering::Relaxed);
        if interval != u64::MAX {
            let missing = burst - held.min(burst);
            self.tat.store(
                now.saturating_add(missing.saturating_mul(interval)),
                Ordering::Relaxed,
            );
        }
    }

    /// Makes the bucket grant everything from now on.
    pub fn set_unlimited(&self) {
        self.interval.store(0, Ordering::Relaxed);
    }

    /// Whole tokens held at `now` (`u64::MAX` when unlimited); for tests
    /// and statistics.
    #[must_use]
    pub fn available(&self, now: u64) -> u64 {
        let interval = self.interval.load(Ordering::Relaxed);
        if interval == 0 {
            return u64::MAX;
        }
        if interval == u64::MAX {
            return 0;
        }
        let tolerance = self.tolerance.load(Ordering::Relaxed);
        let used = self.tat.load(Ordering::Relaxed).max(now) - now;
        // Grants left k satisfy used + (k − 1) × I ≤ tolerance.
        (tolerance + interval).saturating_sub(used) / interval
    }
}

/// The IPv4 half of the key space: keys of IPv4 sources have these top 32
/// bits. As an IPv6 /64 that is `ffff:ffff::/32`, inside the multicast range
/// `ff00::/8`, which is never a valid source (RFC 4291 §2.7).
const V4_TAG: u64 = 0xffff_ffff_0000_0000;

/// The [`SourceLimiter`] key of an IPv4 source address: the address itself.
///
/// Not its /24: a /24 shares a budget among up to 254 hosts, so a flood
/// spoofing or coming from one of them would spend its neighbours' budget
/// (measured: the legitimate client's SYNs were refused while sources in its
/// /24 flooded). An IPv6 host owns at least a /64 (SLAAC, privacy
/// addresses), so that is the IPv6 unit.
///
/// Keys of IPv4 sources never equal keys of valid IPv6 sources: they are the
/// /64 keys of the multicast prefix `ffff:ffff::/32`, and a multicast address
/// must not be a source (RFC 4291 §2.7).
#[inline]
#[must_use]
pub fn source_key_v4(src: [u8; 4]) -> u64 {
    V4_TAG | u64::from(u32::from_be_bytes(src))
}

/// The [`SourceLimiter`] key of an IPv6 source address: its /64.
#[inline]
#[must_use]
pub fn source_key_v6(src: &[u8; 16]) -> u64 {
    let mut prefix = [0; 8];
    prefix.copy_from_slice(&src[..8]);
    u64::from_be_bytes(prefix)
}

/// What [`SourceLimiter::take`] decided, for counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[must_use]
pub enum Decision {
    /// Granted: a token from the source's own bucket and one from the global bucket.
    Granted,
    /// Granted from the global bucket alone: the source's slot is held by
    /// another, still-active source (a hash collision).
    GrantedShared,
    /// Refused: the source's own bucket is empty. No global token was spent.
    SourceLimited,
    /// Refused: the global bucket is empty. No token was spent.
    GlobalLimited,
}

impl Decision {
    /// Whether the request was granted.
    #[inline]
    #[must_use]
    pub fn is_granted(self) -> bool {
        matches!(self, Self::Granted | Self::GrantedShared)
    }
}

/// One slot of the [`SourceLimiter`] table: the source that holds it and the
/// level of its bucket.
#[derive(Clone, Copy, Debug)]
struct Slot {
    key: u64,
    level: Level,
}

/// SplitMix64's finaliser: turns a seed of any quality into well-mixed bits.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Per-source token buckets in front of one global [`SharedBucket`], for SYN
/// rewrites. The per-source table is the worker's own; the global bucket is
/// shared by every worker.
///
/// A fixed table of slots (a power of two, allocated once by [`new`](Self::new);
/// nothing is allocated per packet) holds one bucket per active source key
/// (see [`source_key_v4`], [`source_key_v6`]). The slot of a key is chosen by
/// a multiply-shift hash whose odd multiplier is derived from a seed the
/// caller supplies, so that without the seed an attacker cannot aim many
/// prefixes at one slot. All per-source buckets share one rate and burst.
///
/// [`take`](Self::take) decides in O(1), at time `now`:
///
/// 1. The key's slot is refilled. If it holds another key and its bucket is
///    full, that key is idle (a fresh bucket would be full too), and the slot
///    is taken over by this key.
/// 2. If the slot holds this key: an empty source bucket refuses
///    ([`Decision::SourceLimited`]) **without touching the global bucket**,
///    so one flooding source cannot use up everybody else's budget. Otherwise
///    the request needs a global token too; only if both are available is
///    one taken from each ([`Decision::Granted`], else
///    [`Decision::GlobalLimited`] and nothing is spent).
/// 3. If the slot is held by another, still-active key (a collision), the
///    request is judged by the global bucket alone
///    ([`Decision::GrantedShared`] or [`Decision::GlobalLimited`]).
///
/// Guarantees, with `E` the time since creation:
///
/// * all grants together never exceed the global bound
///   `global_burst + floor(global_rate × E / 10^9)`;
/// * grants of kind [`Decision::Granted`] to one key never exceed
///   `per_source_burst + floor(per_source_rate × E / 10^9)`: while a key holds
///   its slot, the slot's bucket is exactly the bucket the key would have on
///   its own, and it is handed over only when full.
///
/// Limits: a colliding source is bounded by the global bucket only, and an
/// attacker who owns many prefixes (an IPv6 /48 holds 65 536 /64s) gets many
/// buckets; the global bucket is the bound that always holds.
#[derive(Clone)]
pub struct SourceLimiter {
    global: Arc<SharedBucket>,
    /// Per-source rate, tokens per second.
    rate: u64,
    /// Per-source depth in nano-tokens.
    cap: u64,
    /// Odd multiplier of the slot hash.
    mul: u64,
    slots: Box<[Slot]>,
}

impl SourceLimiter {
    /// A limiter created at `now` in front of the shared `global` bucket,
    /// with `slots` per-source buckets (`per_source_rate`/s,
    /// `per_source_burst` each), all full.
    ///
    /// `slots` is rounded up to a power of two, and to at least 1. `seed`
    /// keys the slot hash; pass a random value.
    ///
    /// # Panics
    ///
    /// If `slots` exceeds the largest power of two a `usize` holds.
    #[must_use]
    pub fn new(
        global: Arc<SharedBucket>,
        per_source_rate: u64,
        per_source_burst: u64,
        slots: usize,
        seed: u64,
        now: u64,
    ) -> Self {
        let n = slots
            .max(1)
            .checked_next_power_of_two()
            .expect("SourceLimiter: too many slots");
        let cap = cap_of(per_source_burst);
        let empty = Slot {
            key: 0,
            level: Level {
                tokens: cap,
                last: now,
            },
        };
        Self {
            global,
            rate: per_source_rate,
            cap,
            mul: splitmix64(seed) | 1,
            slots: vec![empty; n].into_boxed_slice(),
        }
    }

    /// The slot of `key`: the top bits of `key × mul mod 2^64` (Dietzfelbinger's
    /// multiply-shift, a universal family over the odd multipliers), taken as
    /// `(h × n) >> 64` so that one slot needs no special case.
    #[inline]
    fn slot_index(&self, key: u64) -> usize {
        let h = key.wrapping_mul(self.mul);
        ((u128::from(h) * self.slots.len() as u128) >> 64) as usize
    }

    /// Decides one request from source `key` at time `now` (see the type's
    /// documentation), spending tokens only if it is granted.
    #[inline]
    pub fn take(&mut self, key: u64, now: u64) -> Decision {
        let (rate, cap) = (self.rate, self.cap);
        let i = self.slot_index(key);
        let slot = &mut self.slots[i];
        slot.level.refill(rate, cap, now);
        if slot.key != key {
            if slot.level.tokens == cap {
                slot.key = key;
            } else {
                return if self.global.try_take(now) {
                    Decision::GrantedShared
                } else {
                    Decision::GlobalLimited
                };
            }
        }
        if slot.level.tokens < NANO {
            Decision::SourceLimited
        } else if self.global.try_take(now) {
            slot.level.tokens -= NANO;
            Decision::Granted
        } else {
            Decision::GlobalLimited
        }
    }

    /// Whether one request from source `key` at time `now` is granted; the
    /// same as [`take`](Self::take)`(key, now).is_granted()`.
    #[inline]
    #[must_use]
    pub fn try_take(&mut self, key: u64, now: u64) -> bool {
        self.take(key, now).is_granted()
    }

    /// Changes the per-source rate and burst at time `now`, keeping what
    /// every bucket has earned, capped at its new burst (as
    /// [`TokenBucket::set_rate`]). The global bucket is its owner's to
    /// change. Costs O(slots): for the control path, not per packet.
    pub fn set_rates(&mut self, per_source_rate: u64, per_source_burst: u64, now: u64) {
        let new_cap = cap_of(per_source_burst);
        for slot in self.slots.iter_mut() {
            slot.level.refill(self.rate, self.cap, now);
            slot.level.tokens = slot.level.tokens.min(new_cap);
        }
        self.rate = per_source_rate;
        self.cap = new_cap;
    }

    /// The number of per-source slots.
    #[must_use]
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Whole tokens in the global bucket at time `now`, after refilling.
    #[must_use]
    pub fn global_available(&self, now: u64) -> u64 {
        self.global.available(now)
    }
}

impl fmt::Debug for SourceLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceLimiter")
            .field("global", &self.global)
            .field("per_source_rate", &self.rate)
            .field("per_source_burst", &(self.cap / NANO))
            .field("slots", &self.slots.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: u64 = 1_000_000;
    const SEC: u64 = 1_000_000_000;

    /// `burst + floor(rate × elapsed / 10^9)`, the most a bucket may grant.
    fn bound(rate: u64, burst: u64, elapsed: u64) -> u128 {
        u128::from(burst) + u128::from(rate) * u128::from(elapsed) / u128::from(SEC)
    }

    fn take_all(b: &mut TokenBucket, now: u64) -> u64 {
        let mut n = 0;
        while b.try_take(now) {
            n += 1;
        }
        n
    }

    #[test]
    fn starts_full_then_refuses() {
        let t0 = 5 * SEC;
        let mut b = TokenBucket::new(1, 7, t0);
        assert_eq!(b.available(t0), 7);
        for _ in 0..7 {
            assert!(b.try_take(t0));
        }
        assert!(!b.try_take(t0));
        assert_eq!(b.available(t0), 0);
    }

    #[test]
    fn refills_at_exactly_the_rate() {
        // 1000/s: one token per 1 ms, to the nanosecond.
        let mut b = TokenBucket::new(1000, 1, 0);
        assert!(b.try_take(0));
        for k in 1..=2000 {
            assert!(!b.try_take(k * MS - 1), "token {k} early");
            assert!(b.try_take(k * MS), "token {k} late");
        }
        assert!(!b.try_take(2000 * MS));
    }

    #[test]
    fn fractional_rate_is_exact_over_ten_seconds() {
        // 3/s: after the burst, token k is earned at ceil(k × 10^9 / 3) ns.
        // Burst 2 keeps the cap out of the way (a token is taken as soon as
        // it is due, so the bucket never holds more than one).
        let mut b = TokenBucket::new(3, 2, 0);
        assert_eq!(take_all(&mut b, 0), 2);
        for k in 1..=30u64 {
            let due = (k * SEC).div_ceil(3);
            assert!(!b.try_take(due - 1), "token {k} before {due}");
            assert!(b.try_take(due), "token {k} at {due}");
        }
        // Token 30 is due at exactly 10 s: the thirds added up without loss.
        assert_eq!((30 * SEC).div_ceil(3), 10 * SEC);
        assert_eq!(b.available(10 * SEC), 0);

        // Polling every 1 ms for 10 s: burst 2 + 3 × 10 earned = 32 grants.
        let mut b = TokenBucket::new(3, 2, 0);
        let grants = (0..=10_000).filter(|&i| b.try_take(i * MS)).count();
        assert_eq!(grants, 2 + 3 * 10);
    }

    #[test]
    fn cap_discards_what_a_full_bucket_would_earn() {
        // Burst 1 at 3/s polled every 1 ms: the token is due at 333.33 ms but
        // seen at 334 ms, and the 2 ms of excess is dropped at the cap, so a
        // grant comes every 334 ms: 1 + floor(10 000 / 334) = 30 in 10 s, not 31.
        let mut b = TokenBucket::new(3, 1, 0);
        let grants = (0..=10_000).filter(|&i| b.try_take(i * MS)).count();
        assert_eq!(grants, 1 + 10_000 / 334);
    }

    #[test]
    fn rate_zero() {
        let mut b = TokenBucket::new(0, 0, 0);
        assert!(!b.try_take(0));
        assert!(!b.try_take(u64::MAX));
        assert_eq!(b.available(u64::MAX), 0);

        let mut b = TokenBucket::new(0, 3, 0);
        assert_eq!(take_all(&mut b, 0), 3);
        assert_eq!(take_all(&mut b, 1_000 * SEC), 0);
    }

    #[test]
    fn burst_zero_never_grants() {
        let mut b = TokenBucket::new(1_000_000, 0, 0);
        for i in 0..1000 {
            assert!(!b.try_take(i * 10 * MS));
        }
    }

    #[test]
    fn unlimited_grants_everything() {
        let mut b = TokenBucket::unlimited();
        assert!(b.is_unlimited());
        for i in 0..10_000 {
            assert!(b.try_take(i % 3));
        }
        assert_eq!(b.available(0), u64::MAX);
        b.set_rate(0, 2, 100);
        assert!(!b.is_unlimited());
        assert_eq!(take_all(&mut b, 100), 2);
    }

    #[test]
    fn backwards_time_grants_nothing_extra() {
        let mut b = TokenBucket::new(10, 1, 10 * SEC);
        assert!(b.try_take(10 * SEC));
        // Earlier than creation and than the last arrival: zero elapsed.
        assert!(!b.try_take(0));
        assert!(!b.try_take(9 * SEC));
        // Going back must not move the clock back: from 10 s, a token at 10.1 s.
        assert!(!b.try_take(10 * SEC + 100 * MS - 1));
        assert!(b.try_take(10 * SEC + 100 * MS));
        assert!(!b.try_take(5 * SEC));
        assert!(!b.try_take(10 * SEC + 199 * MS));
        assert!(b.try_take(10 * SEC + 200 * MS));
    }

    #[test]
    fn huge_elapsed_does_not_overflow() {
        let mut b = TokenBucket::new(u64::MAX, 5, 0);
        assert_eq!(take_all(&mut b, 0), 5);
        assert_eq!(b.available(u64::MAX), 5);
        assert_eq!(take_all(&mut b, u64::MAX), 5);

        // Hours idle at a high rate: capped at the burst.
        let mut b = TokenBucket::new(100_000_000, 1000, 0);
        assert_eq!(take_all(&mut b, 0), 1000);
        assert_eq!(b.available(10 * 3600 * SEC), 1000);

        // A burst whose nano-tokens overflow u64 saturates (≈ 1.8 × 10^10 tokens).
        let mut b = TokenBucket::new(u64::MAX, u64::MAX, 0);
        assert_eq!(b.burst(), u64::MAX / SEC);
        assert_eq!(b.available(u64::MAX), u64::MAX / SEC);
    }

    #[test]
    fn set_rate_keeps_earned_tokens_capped() {
        let mut b = TokenBucket::new(10, 10, 0);
        assert_eq!(take_all(&mut b, 0), 10);
        // 500 ms at 10/s earns 5; the switch keeps them.
        b.set_rate(1000, 100, 500 * MS);
        assert_eq!(b.available(500 * MS), 5);
        // Then 1000/s: 20 ms later 20 more.
        assert_eq!(b.available(520 * MS), 25);
        // Lowering the burst caps what was earned.
        b.set_rate(1, 3, 520 * MS);
        assert_eq!(b.available(520 * MS), 3);
        assert_eq!(b.rate_per_sec(), 1);
        assert_eq!(b.burst(), 3);
        assert_eq!(take_all(&mut b, 520 * MS), 3);
        assert!(!b.try_take(1520 * MS - 1));
        assert!(b.try_take(1520 * MS));
        // A set_rate with a stale `now` earns nothing at the old rate.
        b.set_rate(1000, 10, 0);
        assert_eq!(b.available(1520 * MS), 0);
        assert_eq!(b.available(1521 * MS), 1);
        b.set_unlimited();
        assert!(b.try_take(0));
    }

    proptest! {
        /// Upper bound over arbitrary sorted arrivals, several requests each.
        #[test]
        fn never_more_than_rate_times_elapsed_plus_burst(
            rate in prop_oneof![0u64..20, 0u64..10_000_000],
            burst in 0u64..10_000,
            t0 in 0u64..(1 << 62),
            arrivals in prop::collection::vec((0u64..3 * SEC, 1u32..5), 1..300),
        ) {
            let mut b = TokenBucket::new(rate, burst, t0);
            let (mut now, mut grants) = (t0, 0u128);
            for (gap, tries) in arrivals {
                now += gap;
                for _ in 0..tries {
                    grants += u128::from(b.try_take(now));
                }
            }
            prop_assert!(grants <= bound(rate, burst, now - t0));
        }

        /// Upper bound when `now` jumps back and forth: only the latest time counts.
        #[test]
        fn unordered_time_grants_nothing_extra(
            rate in prop_oneof![0u64..20, 0u64..10_000_000],
            burst in prop_oneof![0u64..10, 0u64..10_000],
            times in prop::collection::vec((0u64..20 * SEC, 1u32..5), 1..300),
        ) {
            let t0 = 10 * SEC;
            let mut b = TokenBucket::new(rate, burst, t0);
            let mut grants = 0u128;
            for &(t, tries) in &times {
                for _ in 0..tries {
                    grants += u128::from(b.try_take(t));
                }
            }
            let latest = times.iter().map(|&(t, _)| t).max().unwrap_or(t0).max(t0);
            prop_assert!(grants <= bound(rate, burst, latest - t0));
        }

        /// Liveness, backlog: drained at every arrival and never idle long enough
        /// to hit the cap (gap × rate ≤ (burst − 1) × 10^9), the bucket grants
        /// exactly burst + floor(rate × elapsed / 10^9).
        #[test]
        fn drained_bucket_grants_exactly_the_bound(
            rate in 1u64..10_000_000,
            burst in 1u64..1000,
            fracs in prop::collection::vec(0u64..=1000, 0..50),
        ) {
            let max_gap = (burst - 1) * SEC / rate;
            let mut b = TokenBucket::new(rate, burst, 0);
            let mut grants = u128::from(take_all(&mut b, 0));
            let mut now = 0;
            for f in fracs {
                now += max_gap * f / 1000;
                grants += u128::from(take_all(&mut b, now));
            }
            prop_assert_eq!(grants, bound(rate, burst, now));
        }

        /// Liveness, one request per arrival: with arrivals at least as fast as
        /// tokens (gap × rate ≤ 10^9) and burst ≥ 2 nothing is lost to the cap, so
        /// the bucket grants min(arrivals, burst + floor(rate × elapsed / 10^9)).
        #[test]
        fn dense_arrivals_get_every_earned_token(
            rate in 0u64..10_000_000,
            burst in 2u64..10_000,
            fracs in prop::collection::vec(0u64..=1000, 0..2000),
        ) {
            let max_gap = SEC.checked_div(rate).unwrap_or(SEC);
            let mut b = TokenBucket::new(rate, burst, 0);
            let mut grants = u128::from(b.try_take(0));
            let mut now = 0;
            let arrivals = 1 + fracs.len() as u128;
            for f in fracs {
                now += max_gap * f / 1000;
                grants += u128::from(b.try_take(now));
            }
            let upper = bound(rate, burst, now);
            prop_assert!(grants <= upper);
            prop_assert!(grants >= arrivals.min(upper), "{} < min({}, {})", grants, arrivals, upper);
        }
    }

    // ---- SharedBucket ----

    #[test]
    fn shared_bucket_burst_then_rate() {
        let b = SharedBucket::new(1000, 3, 0);
        assert_eq!(b.available(0), 3);
        assert!(b.try_take(0) && b.try_take(0) && b.try_take(0));
        assert!(!b.try_take(0));
        for k in 1..=1000 {
            assert!(!b.try_take(k * MS - 1), "token {k} early");
            assert!(b.try_take(k * MS), "token {k} late");
        }
        // Idle for an hour: full again, and no fuller than the burst.
        assert_eq!(b.available(3600 * SEC), 3);
    }

    #[test]
    fn shared_bucket_special_rates_and_reload() {
        let b = SharedBucket::new(0, 10, 0);
        assert!(!b.try_take(0) && !b.try_take(100 * SEC));
        let b = SharedBucket::unlimited();
        assert!((0..10_000).all(|_| b.try_take(0)));
        // Unlimited → limited starts full.
        b.set_rate(1, 2, 5 * SEC);
        assert_eq!(b.available(5 * SEC), 2);
        assert!(b.try_take(5 * SEC) && b.try_take(5 * SEC) && !b.try_take(5 * SEC));
        // A reload keeps what was spent: still empty at the same instant.
        b.set_rate(10, 5, 5 * SEC);
        assert!(!b.try_take(5 * SEC));
        assert!(b.try_take(5 * SEC + 100 * MS));
        b.set_unlimited();
        assert!(b.try_take(5 * SEC + 100 * MS));
    }

    /// What a run of `workers` threads, each offering `per_worker` requests
    /// spread over `span` ns of fake time, gets from one shared bucket.
    fn shared_grants(workers: u64, rate: u64, burst: u64, span: u64, offered: u64) -> u64 {
        let b = Arc::new(SharedBucket::new(rate, burst, 0));
        let per_worker = offered / workers;
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let b = Arc::clone(&b);
                std::thread::spawn(move || {
                    (0..per_worker)
                        .filter(|i| {
                            // Each worker's clock: its own requests spread
                            // evenly, offset so that workers interleave.
                            let now = (i * workers + w) * span / offered;
                            b.try_take(now)
                        })
                        .count() as u64
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    }

    #[test]
    fn one_two_and_four_workers_share_one_budget() {
        // 100 000 requests over 2 s against 5000/s burst 500: the budget is
        // 500 + 10 000, whatever the number of workers.
        let (rate, burst, span, offered) = (5000, 500, 2 * SEC, 100_000);
        let budget = burst + rate * span / SEC;
        let one = shared_grants(1, rate, burst, span, offered);
        assert!(
            one <= budget && one >= budget * 95 / 100,
            "1 worker: {one} of {budget}"
        );
        for workers in [2, 4] {
            let n = shared_grants(workers, rate, burst, span, offered);
            assert!(n <= budget, "{workers} workers: {n} > {budget}");
            let ratio = n as f64 / one as f64;
            assert!(
                (0.9..=1.1).contains(&ratio),
                "{workers} workers: {n} vs {one} ({ratio:.3})"
            );
        }
    }

    proptest! {
        /// The shared bucket never grants more than the exact bound, and
        /// never more than a private exact bucket offered the same requests
        /// plus one (rounding of the interval only ever grants less).
        #[test]
        fn shared_bucket_bound(
            rate in prop_oneof![0u64..100, 0u64..1_000_000],
            burst in 0u64..300,
            gaps in prop::collection::vec(0u64..20 * MS, 1..800),
        ) {
            let shared = SharedBucket::new(rate, burst, 0);
            let mut exact = TokenBucket::new(rate, burst, 0);
            let (mut now, mut n_shared, mut n_exact) = (0u64, 0u128, 0u128);
            for gap in gaps {
                now += gap;
                n_shared += u128::from(shared.try_take(now));
                n_exact += u128::from(exact.try_take(now));
            }
            prop_assert!(n_shared <= bound(rate, burst, now));
            prop_assert!(n_shared <= n_exact + 1, "{} vs exact {}", n_shared, n_exact);
        }
    }

    // ---- SourceLimiter ----

    /// A limiter with a global bucket of its own.
    fn lim(
        g_rate: u64,
        g_burst: u64,
        s_rate: u64,
        s_burst: u64,
        slots: usize,
        seed: u64,
        now: u64,
    ) -> SourceLimiter {
        let g = Arc::new(SharedBucket::new(g_rate, g_burst, now));
        SourceLimiter::new(g, s_rate, s_burst, slots, seed, now)
    }

    /// A seed under which keys `a` and `b` land in different slots.
    fn seed_separating(a: u64, b: u64, slots: usize) -> u64 {
        (0..)
            .find(|&s| {
                let l = lim(1, 1, 1, 1, slots, s, 0);
                l.slot_index(a) != l.slot_index(b)
            })
            .unwrap()
    }

    #[test]
    fn source_keys_are_the_v4_address_and_the_v6_64() {
        assert_eq!(source_key_v4([192, 0, 2, 1]), 0xffff_ffff_c000_0201);
        assert_ne!(
            source_key_v4([192, 0, 2, 1]),
            source_key_v4([192, 0, 2, 254])
        );
        assert_ne!(source_key_v4([192, 0, 2, 1]), source_key_v4([192, 0, 3, 1]));
        assert_ne!(source_key_v4([10, 0, 0, 1]), source_key_v4([11, 0, 0, 1]));

        let mut a = [0u8; 16];
        a[..8].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 2]);
        let mut b = a;
        b[8..].copy_from_slice(&[0xff; 8]);
        assert_eq!(source_key_v6(&a), 0x2001_0db8_0001_0002);
        assert_eq!(source_key_v6(&a), source_key_v6(&b));
        let mut c = a;
        c[7] = 3;
        assert_ne!(source_key_v6(&a), source_key_v6(&c));

        // The families are disjoint: ::ffff:192.0.2.1 and 192.0.2.1 differ,
        // and so do 0.0.0.0/24 and ::/64.
        let mut mapped = [0u8; 16];
        mapped[10..12].copy_from_slice(&[0xff, 0xff]);
        mapped[12..].copy_from_slice(&[192, 0, 2, 1]);
        assert_ne!(source_key_v6(&mapped), source_key_v4([192, 0, 2, 1]));
        assert_ne!(source_key_v6(&[0; 16]), source_key_v4([0; 4]));
    }

    #[test]
    fn v4_neighbours_have_their_own_buckets_v6_64s_share_one() {
        let h1 = source_key_v4([198, 51, 100, 1]);
        let h2 = source_key_v4([198, 51, 100, 99]);
        let mut l = lim(1000, 1000, 1, 2, 64, seed_separating(h1, h2, 64), 0);
        // h2 floods its /24; h1, next door, keeps its whole budget.
        assert_eq!(l.take(h2, 0), Decision::Granted);
        assert_eq!(l.take(h2, 0), Decision::Granted);
        for _ in 0..100 {
            assert_eq!(l.take(h2, 0), Decision::SourceLimited);
        }
        assert_eq!(l.take(h1, 0), Decision::Granted);
        assert_eq!(l.take(h1, 0), Decision::Granted);
        assert_eq!(l.take(h1, 0), Decision::SourceLimited);

        let mut p = [0u8; 16];
        p[..8].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0xaa, 0xbb, 0xcc, 0xdd]);
        let mut q = p;
        p[15] = 1;
        q[8] = 0x42;
        let (k1, k2) = (source_key_v6(&p), source_key_v6(&q));
        assert_eq!(l.take(k1, 0), Decision::Granted);
        assert_eq!(l.take(k2, 0), Decision::Granted);
        assert_eq!(l.take(k1, 0), Decision::SourceLimited);
    }

    #[test]
    fn empty_source_spends_no_global_tokens() {
        let (a, b) = (
            source_key_v4([203, 0, 113, 0]),
            source_key_v4([192, 0, 2, 0]),
        );
        let seed = seed_separating(a, b, 16);
        let mut l = lim(1, 5, 0, 2, 16, seed, 0);
        assert_eq!(l.take(a, 0), Decision::Granted);
        assert_eq!(l.take(a, 0), Decision::Granted);
        for _ in 0..1000 {
            assert_eq!(l.take(a, 0), Decision::SourceLimited);
        }
        assert_eq!(l.global_available(0), 3);
        assert_eq!(l.take(b, 0), Decision::Granted);
        assert_eq!(l.take(b, 0), Decision::Granted);
        assert_eq!(l.take(b, 0), Decision::SourceLimited);
        assert_eq!(l.global_available(0), 1);
    }

    #[test]
    fn global_refusal_spends_no_source_token() {
        // Global 1/s burst 1; per source rate 0 burst 2: a has exactly 2 tokens ever.
        let a = source_key_v4([203, 0, 113, 0]);
        let mut l = lim(1, 1, 0, 2, 16, 5, 0);
        assert_eq!(l.take(a, 0), Decision::Granted);
        assert_eq!(l.take(a, 0), Decision::GlobalLimited);
        assert_eq!(l.take(a, SEC - 1), Decision::GlobalLimited);
        assert_eq!(l.take(a, SEC), Decision::Granted);
        assert_eq!(l.take(a, 2 * SEC), Decision::SourceLimited);
    }

    #[test]
    fn flooding_source_cannot_starve_another() {
        // Per source 10/s burst 10; global 25/s burst 20.
        let (per_rate, per_burst, g_rate, g_burst) = (10, 10, 25, 20);
        let a = source_key_v4([203, 0, 113, 7]);
        let b = source_key_v4([198, 51, 100, 7]);
        let seed = seed_separating(a, b, 1024);
        let mut l = lim(g_rate, g_burst, per_rate, per_burst, 1024, seed, 0);

        // A sends 1000/s (100× its rate) for 10 s; B sends 10/s, its own rate.
        let (mut a_granted, mut a_refused, mut b_granted) = (0u64, 0u64, 0u64);
        for ms in 0..=10_000u64 {
            let now = ms * MS;
            if ms % 100 == 0 && ms < 10_000 {
                assert_eq!(l.take(b, now), Decision::Granted, "B refused at {ms} ms");
                b_granted += 1;
            }
            match l.take(a, now) {
                Decision::Granted => a_granted += 1,
                Decision::SourceLimited => a_refused += 1,
                d => panic!("A got {d:?} at {ms} ms"),
            }
        }
        assert_eq!(b_granted, 100);
        // A gets its burst plus exactly its rate over 10 s, nothing more.
        assert_eq!(a_granted, per_burst + per_rate * 10);
        assert_eq!(a_refused, 10_001 - a_granted);
        // The scenario must fit the global budget, or B's test proves nothing.
        assert!(a_granted + b_granted <= g_burst + g_rate * 10);
    }

    #[test]
    fn collision_falls_back_to_global_then_takes_over_idle_slot() {
        // Global 1/s burst 100; per source 1/s burst 1; 4 slots.
        let mut l = lim(1, 100, 1, 1, 4, 99, 0);
        let a = 1u64;
        let b = (2u64..)
            .find(|&k| l.slot_index(k) == l.slot_index(a))
            .unwrap();
        assert_eq!(l.take(a, 0), Decision::Granted); // a's bucket empty: active
                                                     // b collides with active a: judged by the global bucket alone, and
                                                     // without touching a's bucket.
        assert_eq!(l.take(b, 0), Decision::GrantedShared);
        assert_eq!(l.take(b, 0), Decision::GrantedShared);
        assert_eq!(l.take(a, 0), Decision::SourceLimited);
        assert_eq!(l.take(b, SEC - 1), Decision::GrantedShared);
        // At 1 s a's bucket is full again: idle, and b takes the slot over.
        assert_eq!(l.take(b, SEC), Decision::Granted);
        assert_eq!(l.take(b, SEC), Decision::SourceLimited);
        // Now a is the one colliding with an active key.
        assert_eq!(l.take(a, SEC), Decision::GrantedShared);
        // 1 + 2 + 1 + 1 + 1 grants from a global burst of 100, one token
        // earned in the second.
        assert_eq!(l.global_available(SEC), 95);
    }

    #[test]
    fn slots_round_up_to_a_power_of_two() {
        assert_eq!(lim(1, 1, 1, 1, 0, 0, 0).slots(), 1);
        assert_eq!(lim(1, 1, 1, 1, 1000, 0, 0).slots(), 1024);
        let l = lim(1, 1, 1, 1, 1, 0, 0);
        assert_eq!(l.slot_index(u64::MAX), 0);
        // A weak seed still spreads a /24 sweep over the table.
        let l = lim(1, 1, 1, 1, 1024, 0, 0);
        let mut used = vec![false; 1024];
        for c in 0..=255u8 {
            used[l.slot_index(source_key_v4([10, 0, c, 0]))] = true;
        }
        assert!(used.iter().filter(|&&u| u).count() > 150);
    }

    proptest! {
        /// Across many sources and a small table (many collisions): the global
        /// bound holds, and each key's own-slot grants obey the per-source bound.
        #[test]
        fn limiter_bounds_hold(
            g_rate in prop_oneof![0u64..100, 0u64..100_000],
            g_burst in 0u64..200,
            s_rate in prop_oneof![0u64..5, 0u64..10_000],
            s_burst in prop_oneof![0u64..8, 0u64..50],
            slots in 1usize..32,
            sources in 1u64..40,
            seed: u64,
            arrivals in prop::collection::vec((0u64..50 * MS, 0u64..40), 1..500),
        ) {
            let mut l = lim(g_rate, g_burst, s_rate, s_burst, slots, seed, 0);
            let mut own = [0u128; 40];
            let (mut now, mut total) = (0u64, 0u128);
            for (gap, src) in arrivals {
                let src = src % sources;
                now += gap;
                let key = source_key_v4([10, 0, src as u8, 1]);
                match l.take(key, now) {
                    Decision::Granted => { own[src as usize] += 1; total += 1; }
                    Decision::GrantedShared => total += 1,
                    Decision::SourceLimited | Decision::GlobalLimited => {}
                }
            }
            prop_assert!(total <= bound(g_rate, g_burst, now));
            let per_source = bound(s_rate, s_burst, now);
            for (src, &n) in own.iter().enumerate() {
                prop_assert!(n <= per_source, "source {} got {} > {}", src, n, per_source);
            }
        }
    }
}
