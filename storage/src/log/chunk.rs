//! Write chunks: the DMA buffers appends encode entries into, in place.
//!
//! A chunk covers the file from a page boundary (`file_pos`): its first bytes repeat the
//! partial last page already appended (the "prefix"), then come the entries appended while it
//! was the filling chunk. `append` copies each batch once, from the request into the chunk,
//! and patches it there; the writer task seals the chunk (zero pads it to a page and freezes
//! it behind an `Rc`) and writes it with one O_DIRECT write; the tail cache keeps serving the
//! batches from the same buffer until it evicts them. Nothing here awaits.
//!
//! A chunk that is followed by another when it is sealed is written without its partial last
//! page (the next chunk starts with a copy of it and writes it), so the writer can have both
//! writes in flight at once without two writes of the same page; the chunk keeps that page's
//! bytes aside for the cache.

use std::cell::RefCell;
use std::rc::Rc;

use glommio::io::DmaBuffer;

use crate::segment::{align_down, align_up, PAGE_BYTES, WRITE_CHUNK_BYTES_MAX};

enum Buffer {
    /// Still receiving entries (owned by the log; appends write into it).
    Filling(DmaBuffer),
    /// Sealed by the writer: read-only, zero padded to a page, shared with the write.
    Sealed(Rc<DmaBuffer>),
    /// Only while `seal` swaps the two.
    Sealing,
}

struct State {
    buf: Buffer,
    /// Bytes holding data: the prefix and the entries.
    len: usize,
    /// Last offset of the entries in it (-1: none yet).
    last_offset: i64,
    /// Sealed without its partial last page: those bytes (data [written, len)).
    tail_copy: Vec<u8>,
}

/// One write chunk of the active segment (see module docs).
pub(super) struct Chunk {
    pub segment_base: i64,
    /// File position of the buffer's first byte (page aligned).
    pub file_pos: u64,
    capacity: usize,
    state: RefCell<State>,
}

impl Chunk {
    /// A chunk for the segment whose appended bytes end at `end`; `prefix` holds the file bytes
    /// [align_down(end), end). Room for at least `entry_bytes` more.
    pub fn new(
        segment_base: i64,
        end: u64,
        prefix: &[u8],
        entry_bytes: usize,
        hint: usize,
    ) -> Self {
        let file_pos = align_down(end);
        assert_eq!(
            prefix.len() as u64,
            end - file_pos,
            "prefix is the partial page"
        );
        let capacity = align_up((prefix.len() + entry_bytes).max(hint) as u64) as usize;
        // Not from the executor's registered pool: a chunk lives on in the tail cache.
        let mut buf = glommio::allocate_dma_buffer_global(capacity);
        buf.as_bytes_mut()[..prefix.len()].copy_from_slice(prefix);
        Chunk {
            segment_base,
            file_pos,
            capacity,
            state: RefCell::new(State {
                buf: Buffer::Filling(buf),
                len: prefix.len(),
                last_offset: -1,
                tail_copy: Vec::new(),
            }),
        }
    }

    /// Bytes of memory this chunk holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Sealed by the writer: it takes no more entries.
    pub fn is_sealed(&self) -> bool {
        matches!(self.state.borrow().buf, Buffer::Sealed(_))
    }

    /// Logical file position after its data.
    pub fn end(&self) -> u64 {
        self.file_pos + self.state.borrow().len as u64
    }

    /// Whether an entry of `entry_bytes` can still be appended.
    pub fn has_room(&self, entry_bytes: usize) -> bool {
        let s = self.state.borrow();
        matches!(s.buf, Buffer::Filling(_)) && s.len + entry_bytes <= self.capacity
    }

    /// Appends one entry: `fill` gets exactly `entry_bytes` bytes of the buffer to encode it
    /// into. Returns the entry's position in the buffer. Needs `has_room(entry_bytes)`.
    pub fn append(
        &self,
        entry_bytes: usize,
        last_offset: i64,
        fill: impl FnOnce(&mut [u8]),
    ) -> usize {
        let mut s = self.state.borrow_mut();
        let at = s.len;
        let Buffer::Filling(buf) = &mut s.buf else {
            panic!("append to a sealed chunk");
        };
        fill(&mut buf.as_bytes_mut()[at..at + entry_bytes]);
        s.len = at + entry_bytes;
        s.last_offset = last_offset;
        at
    }

    /// Calls `take` with the data bytes [from, to), in one or two pieces.
    pub fn copy_out(&self, from: usize, to: usize, mut take: impl FnMut(&[u8])) {
        let s = self.state.borrow();
        let buf = match &s.buf {
            Buffer::Filling(b) => b.as_bytes(),
            Buffer::Sealed(b) => b.as_bytes(),
            Buffer::Sealing => unreachable!("only inside seal"),
        };
        let in_buf = buf.len().min(s.len);
        if from < in_buf {
            take(&buf[from..to.min(in_buf)]);
        }
        if to > in_buf {
            take(&s.tail_copy[from.max(in_buf) - in_buf..to - in_buf]);
        }
    }

    /// The partial last page of its data: the prefix of the chunk that follows (only asked
    /// of the newest chunk, which is never sealed without it).
    pub fn tail_page(&self) -> Vec<u8> {
        let len = self.state.borrow().len;
        let from = (align_down(self.file_pos + len as u64) - self.file_pos) as usize;
        let mut page = Vec::with_capacity(len - from);
        self.copy_out(from, len, |b| page.extend_from_slice(b));
        page
    }

    /// Seals the chunk (no more appends) and returns the page-aligned buffer to write at
    /// `file_pos` (possibly empty), the data length, the last offset, and whether the buffer
    /// holds the partial last page (zero padded). `followed`: a later chunk exists and writes
    /// that page. Sealing again returns the same (a retried write).
    pub fn seal(&self, followed: bool) -> (Rc<DmaBuffer>, usize, i64, bool) {
        let mut s = self.state.borrow_mut();
        let len = s.len;
        if matches!(s.buf, Buffer::Filling(_)) {
            let Buffer::Filling(mut buf) = std::mem::replace(&mut s.buf, Buffer::Sealing) else {
                unreachable!("checked above");
            };
            let whole_pages = (align_down(self.file_pos + len as u64) - self.file_pos) as usize;
            if followed {
                s.tail_copy = buf.as_bytes()[whole_pages..len].to_vec();
                buf.trim_to_size(whole_pages);
            } else {
                let padded = align_up(len as u64) as usize;
                buf.as_bytes_mut()[len..padded].fill(0);
                buf.trim_to_size(padded);
            }
            s.buf = Buffer::Sealed(Rc::new(buf));
        }
        let Buffer::Sealed(buf) = &s.buf else {
            unreachable!("sealed above");
        };
        let with_tail = buf.len() >= len;
        (buf.clone(), len, s.last_offset, with_tail)
    }
}

/// Capacity to give the next chunk of a partition: twice what the last one needed, so a busy
/// partition writes up to `WRITE_CHUNK_BYTES_MAX` at once while an idle one holds a page.
pub(super) fn next_hint(used: usize) -> usize {
    (2 * used).clamp(PAGE_BYTES as usize, WRITE_CHUNK_BYTES_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk_with(prefix: &[u8], entries: &[(usize, u8)]) -> Chunk {
        let end = 8192 + prefix.len() as u64;
        let c = Chunk::new(7, end, prefix, 8, 0);
        for (i, &(len, fill)) in entries.iter().enumerate() {
            assert!(c.has_room(len));
            c.append(len, i as i64, |b| b.fill(fill));
        }
        c
    }

    fn copied(c: &Chunk, from: usize, to: usize) -> Vec<u8> {
        let mut out = Vec::new();
        c.copy_out(from, to, |b| out.extend_from_slice(b));
        out
    }

    #[test]
    fn sealing_again_returns_the_same_write() {
        let c = chunk_with(b"abc", &[(5, 1)]);
        let (first, len, last, with_tail) = c.seal(false);
        assert_eq!((first.len(), len, last, with_tail), (4096, 8, 0, true));
        assert!(!c.has_room(1), "a sealed chunk takes no more entries");
        let (again, ..) = c.seal(true);
        assert!(Rc::ptr_eq(&first, &again), "a retry writes the same buffer");
        assert_eq!(&first.as_bytes()[..8], b"abc\x01\x01\x01\x01\x01");
        assert!(
            first.as_bytes()[8..].iter().all(|b| *b == 0),
            "padding is zeroed"
        );
    }

    #[test]
    fn a_followed_chunk_keeps_its_partial_page_aside_for_reads() {
        let c = Chunk::new(0, 0, &[], 6000, 0);
        c.append(5000, 0, |b| b.fill(1));
        c.append(1000, 1, |b| b.fill(2));
        let page = c.tail_page();
        assert_eq!(page.len(), 6000 - 4096);
        let (buf, len, _, with_tail) = c.seal(true);
        assert_eq!((buf.len(), len, with_tail), (4096, 6000, false));
        assert_eq!(
            copied(&c, 4000, 5100),
            [vec![1u8; 1000], vec![2u8; 100]].concat()
        );
        assert_eq!(copied(&c, 5000, 6000), vec![2u8; 1000]);
        assert_eq!(copied(&c, 0, 10), vec![1u8; 10]);
    }
}
