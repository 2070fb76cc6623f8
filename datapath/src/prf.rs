//! A keyed pseudo-random function: SipHash (Aumasson and Bernstein, 2012).
//!
//! The datapath needs two things an outsider must not predict: the slot a
//! flow or a destination lands in (the learned-PMTU tables, so that nobody
//! can aim at one slot) and the fresh IPv4 IDs of `random-id`. Both are a
//! keyed PRF over a small input. SipHash-1-3 (one compression round, three
//! finalization rounds: the variant Rust's standard library hashes with) is
//! fast on 8- to 40-byte inputs; the rounds are a parameter so that the
//! published SipHash-2-4 vectors check the same code.
//!
//! The key comes from the caller (the datapath reads no randomness): the
//! appliance gives each worker a seed read from the kernel's random source.

/// A 128-bit SipHash key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SipKey {
    k0: u64,
    k1: u64,
}

/// SplitMix64's output function: spreads a 64-bit seed over a key.
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl SipKey {
    /// A key from its two 64-bit halves.
    pub const fn new(k0: u64, k1: u64) -> SipKey {
        SipKey { k0, k1 }
    }

    /// A key derived from a 64-bit `seed` for one `purpose` (domain
    /// separation: the tables' key and the IDs' key of one worker differ).
    pub fn derive(seed: u64, purpose: u64) -> SipKey {
        let a = splitmix(seed ^ purpose.wrapping_mul(0xd6e8_feb8_6659_fd93));
        SipKey {
            k0: a,
            k1: splitmix(a ^ seed),
        }
    }

    /// SipHash-1-3 of `data`.
    #[inline]
    pub fn hash13(&self, data: &[u8]) -> u64 {
        self.hash::<1, 3>(data)
    }

    /// SipHash-c-d of `data`.
    #[inline]
    pub fn hash<const C: usize, const D: usize>(&self, data: &[u8]) -> u64 {
        let mut v = [
            self.k0 ^ 0x736f_6d65_7073_6575,
            self.k1 ^ 0x646f_7261_6e64_6f6d,
            self.k0 ^ 0x6c79_6765_6e65_7261,
            self.k1 ^ 0x7465_6462_7974_6573,
        ];
        let mut words = data.chunks_exact(8);
        for w in &mut words {
            let m = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
            v[3] ^= m;
            for _ in 0..C {
                round(&mut v);
            }
            v[0] ^= m;
        }
        let mut last = [0u8; 8];
        let rest = words.remainder();
        last[..rest.len()].copy_from_slice(rest);
        last[7] = data.len() as u8;
        let b = u64::from_le_bytes(last);
        v[3] ^= b;
        for _ in 0..C {
            round(&mut v);
        }
        v[0] ^= b;
        v[2] ^= 0xff;
        for _ in 0..D {
            round(&mut v);
        }
        v[0] ^ v[1] ^ v[2] ^ v[3]
    }
}

#[inline(always)]
fn round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

/// Fresh IPv4 identification values for `random-id` (after OpenBSD pf's
/// `scrub random-id`): SipHash-1-3 of a counter under a per-worker secret
/// key. Each value is unpredictable without the key, and IDs do not repeat
/// in a pattern an observer could exploit; a collision of two 16-bit
/// values is as likely as for any random choice.
#[derive(Debug, Clone)]
pub struct IdGen {
    key: SipKey,
    counter: u64,
}

impl IdGen {
    /// A generator keyed from a worker's seed.
    pub fn new(seed: u64) -> IdGen {
        IdGen {
            key: SipKey::derive(seed, 0x1d),
            counter: 0,
        }
    }

    /// The next ID.
    #[inline]
    pub fn next_id(&mut self) -> u16 {
        self.counter = self.counter.wrapping_add(1);
        self.key.hash13(&self.counter.to_le_bytes()) as u16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference key and messages of the SipHash paper (Appendix A) and
    /// of its reference implementation's `vectors.h`: key 00..0f, message
    /// 00..(n-1).
    fn reference(n: usize) -> u64 {
        let key = SipKey::new(0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908);
        let msg: Vec<u8> = (0..n as u8).collect();
        key.hash::<2, 4>(&msg)
    }

    #[test]
    fn siphash24_published_vectors() {
        // The paper's worked example (15 bytes) and vectors.h entries 0, 1, 8, 63.
        assert_eq!(reference(15), 0xa129_ca61_49be_45e5);
        assert_eq!(reference(0), 0x726f_db47_dd0e_0e31);
        assert_eq!(reference(1), 0x74f8_39c5_93dc_67fd);
        assert_eq!(reference(8), 0x93f5_f579_9a93_2462);
        assert_eq!(reference(63), 0x958a_324c_eb06_4572);
    }

    #[test]
    fn siphash13_differs_by_key_and_input() {
        let a = SipKey::derive(1, 0);
        let b = SipKey::derive(2, 0);
        assert_ne!(a, b);
        assert_ne!(a.hash13(b"x"), b.hash13(b"x"));
        assert_ne!(a.hash13(b"x"), a.hash13(b"y"));
        assert_ne!(SipKey::derive(1, 0), SipKey::derive(1, 1));
    }

    #[test]
    fn ids_look_uniform() {
        // 65536 draws into 16 buckets of the high nibble: each near 4096.
        let mut g = IdGen::new(42);
        let mut buckets = [0u32; 16];
        for _ in 0..65536 {
            buckets[usize::from(g.next_id() >> 12)] += 1;
        }
        for b in buckets {
            assert!((3700..4500).contains(&b), "{buckets:?}");
        }
        let (mut x, mut y) = (IdGen::new(1), IdGen::new(2));
        let xs: Vec<u16> = (0..8).map(|_| x.next_id()).collect();
        let ys: Vec<u16> = (0..8).map(|_| y.next_id()).collect();
        assert_ne!(xs, ys, "two workers' seeds give different sequences");
    }
}
