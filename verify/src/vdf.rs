//! The seed's delay: sloth (Lenstra and Wesolowski, "A random zoo: sloth, unicorn, and
//! trx", 2015), a verifiable delay function made of iterated modular square roots.
//!
//! Why a delay. The parties reveal their secrets one after another; the last to reveal
//! sees every other reveal first. If the seed followed from the reveals at once, that
//! party could compute the outcome both ways (reveal, or withhold) and choose. Here the
//! seed is `SHA-256(sloth(h, T))` where `h` hashes the frozen list and every reveal (a
//! fixed marker in place of a withheld one), and `T` square roots take longer to compute
//! than the reveal window lasts: by the time anyone could know the outcome, every reveal
//! was due, so withholding is a blind choice. Checking is fast: squaring undoes a root.
//!
//! One step on `x` in `[0, p)`, with `p` the 2048-bit MODP prime of RFC 3526 (group 14,
//! `p ≡ 3 (mod 4)`, so `sqrt(a) = a^((p+1)/4)` for a quadratic residue `a`, and exactly
//! one of `a`, `p - a` is a residue):
//! 1. flip the lowest bit (`σ`): without a step that is not algebraic, `T` roots in a row
//!    would be one exponentiation by `((p+1)/4)^T mod (p-1)`, no delay at all;
//! 2. take the square root (`ρ`): of `x` when it is a residue, the even root; otherwise of
//!    `p - x`, the odd root. The parity tells the checker which it was.
//!
//! The check runs the steps backwards: `y² mod p` (or `p - y²` for an odd `y`), then the
//! bit flip, `T` times, and compares with the input: `T` squarings for `T` exponentiations
//! of 2048 bits, about a thousand times less work.

use num_bigint::BigUint;
use num_integer::Integer;

/// RFC 3526, 2048-bit MODP group (14): a safe prime, so `p ≡ 3 (mod 4)`.
const P_HEX: &str = "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD1\
29024E088A67CC74020BBEA63B139B22514A08798E3404DD\
EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245\
E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED\
EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3D\
C2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F\
83655D23DCA3AD961C62F356208552BB9ED529077096966D\
670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B\
E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9\
DE2BCBF6955817183995497CEA956AE515D2261898FA0510\
15728E5A8AACAA68FFFFFFFFFFFFFFFF";

fn prime() -> BigUint {
    match BigUint::parse_bytes(P_HEX.as_bytes(), 16) {
        Some(p) => p,
        None => unreachable!("the constant is hexadecimal"),
    }
}

/// The field element a 32-byte input names (below `p`: it is far shorter).
fn element(input: &[u8]) -> BigUint {
    BigUint::from_bytes_be(input)
}

/// `σ`: the lowest bit flipped, unless that leaves the field (only `p - 1` would).
fn flip(x: BigUint, p: &BigUint) -> BigUint {
    let flipped = if x.is_even() {
        x.clone() + 1u32
    } else {
        x.clone() - 1u32
    };
    if &flipped < p {
        flipped
    } else {
        x
    }
}

/// Bytes of an output: always this many, big-endian, left-padded with zeros. One
/// spelling per value: with leading zeros allowed, every padding would check and give
/// another seed, which whoever writes the seed could grind through at one hash apiece.
pub const OUTPUT_BYTES: usize = 256;

/// The slow direction: `iterations` steps from `input`. Seconds to minutes; run it on a
/// blocking thread.
pub fn delay(input: &[u8], iterations: u64) -> Vec<u8> {
    let p = prime();
    let exponent: BigUint = (&p + 1u32) >> 2;
    let mut x = element(input) % &p;
    for _ in 0..iterations {
        x = flip(x, &p);
        let root = x.modpow(&exponent, &p);
        x = if (&root * &root) % &p == x {
            // A residue: its even root.
            if root.is_even() {
                root
            } else {
                &p - root
            }
        } else {
            // Not a residue, so `p - x` is: its odd root.
            let r = (&p - &x).modpow(&exponent, &p);
            if r.is_odd() {
                r
            } else {
                &p - r
            }
        };
    }
    let bytes = x.to_bytes_be();
    let mut out = vec![0u8; OUTPUT_BYTES - bytes.len().min(OUTPUT_BYTES)];
    out.extend_from_slice(&bytes);
    out
}

/// The fast direction: whether `output` is `iterations` steps from `input`.
pub fn check(input: &[u8], iterations: u64, output: &[u8]) -> bool {
    if output.len() != OUTPUT_BYTES {
        return false;
    }
    let p = prime();
    let mut y = element(output);
    if y >= p {
        return false;
    }
    for _ in 0..iterations {
        let square = (&y * &y) % &p;
        let x = if y.is_even() {
            square
        } else if square.is_zero_like() {
            return false;
        } else {
            &p - square
        };
        y = flip(x, &p);
    }
    y == element(input) % &p
}

/// `BigUint` zero without pulling in `num_traits`.
trait ZeroLike {
    fn is_zero_like(&self) -> bool;
}

impl ZeroLike for BigUint {
    fn is_zero_like(&self) -> bool {
        self.bits() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_output_checks_and_nothing_else_does() {
        let input = crate::seed::sha256(b"frozen root and reveals");
        let out = delay(&input, 12);
        assert!(check(&input, 12, &out));
        assert!(!check(&input, 11, &out), "another number of steps");
        assert!(!check(&input, 13, &out), "another number of steps");
        let mut other = out.clone();
        if let Some(last) = other.last_mut() {
            *last ^= 1;
        }
        assert!(!check(&input, 12, &other), "another output");
        // One spelling per value: padded or trimmed, the same number does not check.
        let mut padded = vec![0u8];
        padded.extend_from_slice(&out);
        assert!(!check(&input, 12, &padded), "a longer spelling");
        let trimmed: Vec<u8> = out.iter().copied().skip_while(|b| *b == 0).collect();
        if trimmed.len() < out.len() {
            assert!(!check(&input, 12, &trimmed), "a shorter spelling");
        }
        assert_eq!(out.len(), OUTPUT_BYTES);
        let input2 = crate::seed::sha256(b"another input");
        assert!(!check(&input2, 12, &out), "another input");
    }

    /// Each step is a permutation of the field: the roots it takes are of `x` or of
    /// `p - x`, told apart by parity, so the check recovers every step exactly, residue or
    /// not (both occur within a few steps).
    #[test]
    fn every_step_is_undone_by_the_check() {
        for seed in 0u8..16 {
            let input = crate::seed::sha256(&[seed]);
            for t in 1..4 {
                assert!(
                    check(&input, t, &delay(&input, t)),
                    "seed {seed}, {t} steps"
                );
            }
        }
    }

    #[test]
    fn the_prime_is_three_mod_four_and_2048_bits() {
        let p = prime();
        assert_eq!(p.bits(), 2048);
        assert_eq!(&p % 4u32, BigUint::from(3u32));
    }
}
