//! CRC32C of a concatenation from the CRCs of its parts, in O(log n) carry-less
//! multiplications: `combine(crc32c(a), crc32c(b), b.len()) == crc32c(a ++ b)`.
//!
//! An entry's checksum covers its envelope fields and the whole batch; the batch's own Kafka
//! CRC (verified when the batch was produced) already covers all of it but its first 21
//! bytes, so `append` derives the entry checksum from it instead of reading the batch again.
//!
//! The CRC register is a polynomial over GF(2) in reflected bit order (bit 31 is x^0).
//! Appending `n` bytes to a message multiplies its register by x^(8n) mod P before the new
//! bytes' CRC is added; x^(8n) is the product of the precomputed x^(2^k) for the bits of 8n.
//! (`crc32c::crc32c_combine` does the same with 32x32 bit-matrix squarings, some hundred
//! times slower: more than the hardware CRC of a 16 KiB batch.)

/// CRC-32C (Castagnoli) polynomial, reflected.
const POLY: u32 = 0x82F6_3B78;

/// x^0 in the reflected representation.
const ONE: u32 = 1 << 31;

/// `a * b mod P` for reflected polynomials.
const fn multiply(a: u32, mut b: u32) -> u32 {
    let mut product = 0;
    let mut bit = ONE;
    while bit != 0 {
        if a & bit != 0 {
            product ^= b;
        }
        bit >>= 1;
        b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
    }
    product
}

/// `X_POW_2K[k]` = x^(2^k) mod P.
const X_POW_2K: [u32; 64] = {
    let mut table = [0u32; 64];
    let mut p = ONE >> 1; // x^1
    let mut k = 0;
    while k < 64 {
        table[k] = p;
        p = multiply(p, p);
        k += 1;
    }
    table
};

/// x^(8 * bytes) mod P.
fn x_pow_8n(bytes: usize) -> u32 {
    let mut power = ONE;
    let mut n = bytes as u64;
    let mut k = 3; // 8n = n * 2^3
    while n != 0 {
        if n & 1 != 0 {
            power = multiply(X_POW_2K[k], power);
        }
        n >>= 1;
        k += 1;
    }
    power
}

/// CRC32C of `a ++ b` from `crc_a = crc32c(a)`, `crc_b = crc32c(b)` and `b.len()`.
pub fn combine(crc_a: u32, crc_b: u32, len_b: usize) -> u32 {
    multiply(x_pow_8n(len_b), crc_a) ^ crc_b
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random bytes (xorshift).
    fn bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn combining_equals_the_crc_of_the_concatenation() {
        let lens = [
            0, 1, 2, 3, 7, 8, 21, 63, 64, 100, 4095, 4096, 16_384, 16_975, 70_001,
        ];
        for (i, &len_a) in lens.iter().enumerate() {
            for (j, &len_b) in lens.iter().enumerate() {
                let a = bytes(i as u64 * 31 + 1, len_a);
                let b = bytes(j as u64 * 17 + 2, len_b);
                let whole = crc32c::crc32c_append(crc32c::crc32c(&a), &b);
                let combined = combine(crc32c::crc32c(&a), crc32c::crc32c(&b), b.len());
                assert_eq!(combined, whole, "len_a {len_a} len_b {len_b}");
            }
        }
    }

    #[test]
    fn agrees_with_the_crate_combine_on_large_lengths() {
        for len in [1usize << 20, (1 << 26) + 12_345, 3 << 30] {
            let (a, b) = (0x1234_5678, 0x9abc_def0);
            assert_eq!(
                combine(a, b, len),
                crc32c::crc32c_combine(a, b, len),
                "{len}"
            );
        }
    }
}
