//! The append path's one copy of payload, into a write chunk, with non-temporal stores.
//!
//! A chunk's bytes are written to the disk by DMA shortly after the copy. Written with ordinary
//! stores, they sit dirty in this CPU's cache when the device reads them; on the VM this was
//! measured on, one O_DIRECT write of 1 MiB took 0.69-0.80 ms when the buffer was filled just
//! before with ordinary stores, 0.59-0.68 ms with streaming stores, 0.53-0.75 ms when filled
//! long before (`bench/experiments/2026-12-04-dma-fresh-buffers.rs`). Streaming stores go to memory
//! through the write-combining buffers and leave the cache to the shard's other work. Reads of
//! the same bytes by the tail cache still see them (a core sees its own stores in order).

/// Below this many bytes the copy is an ordinary one (not worth a fence).
#[cfg(target_arch = "x86_64")]
const STREAMING_MIN_BYTES: usize = 1024;

/// Copies `src` into `dst` (the same length), bypassing the cache where the CPU can; the
/// bytes are visible to the device once this returns.
pub fn copy_for_dma(dst: &mut [u8], src: &[u8]) {
    assert_eq!(dst.len(), src.len(), "copy_for_dma needs equal lengths");
    #[cfg(target_arch = "x86_64")]
    if src.len() >= STREAMING_MIN_BYTES {
        return copy_streaming(dst, src);
    }
    dst.copy_from_slice(src);
}

/// SSE2 (part of x86_64) streaming stores of 16 aligned bytes each, after an ordinary copy of
/// the bytes up to the first 16-byte boundary of `dst`; the rest (under 16 bytes) ordinary.
#[cfg(target_arch = "x86_64")]
fn copy_streaming(dst: &mut [u8], src: &[u8]) {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_sfence, _mm_stream_si128};
    const LANE: usize = 16;
    let head = dst.as_ptr().align_offset(LANE).min(dst.len());
    dst[..head].copy_from_slice(&src[..head]);
    let body = (dst.len() - head) / LANE * LANE;
    let (d, s) = (
        dst[head..head + body].as_mut_ptr(),
        src[head..head + body].as_ptr(),
    );
    // SAFETY: both ranges hold `body` bytes (the slices above checked it); every store is to
    // a 16-byte aligned address of `dst` (`head` aligned it), loads are unaligned; the fence
    // orders the streaming stores before anything that follows (the write's submission).
    unsafe {
        let mut at = 0;
        while at + 4 * LANE <= body {
            let v0 = _mm_loadu_si128(s.add(at).cast::<__m128i>());
            let v1 = _mm_loadu_si128(s.add(at + LANE).cast::<__m128i>());
            let v2 = _mm_loadu_si128(s.add(at + 2 * LANE).cast::<__m128i>());
            let v3 = _mm_loadu_si128(s.add(at + 3 * LANE).cast::<__m128i>());
            _mm_stream_si128(d.add(at).cast::<__m128i>(), v0);
            _mm_stream_si128(d.add(at + LANE).cast::<__m128i>(), v1);
            _mm_stream_si128(d.add(at + 2 * LANE).cast::<__m128i>(), v2);
            _mm_stream_si128(d.add(at + 3 * LANE).cast::<__m128i>(), v3);
            at += 4 * LANE;
        }
        while at < body {
            let v = _mm_loadu_si128(s.add(at).cast::<__m128i>());
            _mm_stream_si128(d.add(at).cast::<__m128i>(), v);
            at += LANE;
        }
        _mm_sfence();
    }
    dst[head + body..].copy_from_slice(&src[head + body..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_every_length_at_every_alignment() {
        let src: Vec<u8> = (0..5100u32).map(|i| (i * 7 + 3) as u8).collect();
        let mut dst = vec![0u8; 5100];
        for len in [0, 1, 15, 16, 17, 1023, 1024, 1025, 1088, 4096, 4999] {
            for shift in 0..20 {
                dst.fill(0xee);
                let from = (shift * 3) % 40;
                copy_for_dma(&mut dst[shift..shift + len], &src[from..from + len]);
                assert_eq!(
                    &dst[shift..shift + len],
                    &src[from..from + len],
                    "{len} at {shift}"
                );
                assert!(
                    dst[..shift].iter().all(|&b| b == 0xee),
                    "before {len} at {shift}"
                );
                assert!(
                    dst[shift + len..].iter().all(|&b| b == 0xee),
                    "after {len} at {shift}"
                );
            }
        }
    }
}
