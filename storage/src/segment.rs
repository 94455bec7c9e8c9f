//! glommio file helpers for segments: the page-tail DMA writer, a windowed reader, the
//! entry scanner used by recovery / reads / timestamp lookups, and small atomically replaced
//! metadata files. This and `log` are the only modules that touch glommio.

use std::cell::RefCell;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::{BufferedFile, Directory, DmaFile, OpenOptions, ReadResult};

use crate::batch::BatchHeader;
use crate::entry::{self, ArchivedEntryHeader, EntryError, ENTRY_HEADER_BYTES};

/// O_DIRECT granularity we write with (the partial tail page is rewritten on each append).
pub const PAGE_BYTES: u64 = 4096;
/// Largest single DMA write; bigger flushes are split.
pub const WRITE_CHUNK_BYTES_MAX: usize = 1024 * 1024;
/// Default read window for scans.
pub const READ_WINDOW_BYTES: usize = 256 * 1024;

pub fn align_down(v: u64) -> u64 {
    v - v % PAGE_BYTES
}

pub fn align_up(v: u64) -> u64 {
    v.next_multiple_of(PAGE_BYTES)
}

/// `{base_offset:020}.{ext}`
pub fn file_name(base_offset: i64, ext: &str) -> String {
    format!("{base_offset:020}.{ext}")
}

/// Opens (creating if needed) a segment for DMA reads and writes.
pub async fn open_rw(path: &Path) -> io::Result<DmaFile> {
    Ok(OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .dma_open(path)
        .await?)
}

/// A segment file: the DMA handle the writer uses, and a buffered reader of the same file.
///
/// Reads go through the page cache, which stays coherent with the direct writes (a direct
/// write invalidates the cached pages it covers). O_DIRECT reads work since the vendored
/// glommio stopped taking devices without poll queues for pollable, but one window at a
/// time, without read-ahead, they were ~7x slower than re-reading recent data from the page
/// cache (`storage_read/catch_up_disk`: 1.55 ms vs 0.22 ms per MiB,
/// perf-reports/2026-12-02-storage-append-e766f8d.md); they wait for DMA read-ahead.
pub struct SegmentFile {
    pub dma: Rc<DmaFile>,
    path: PathBuf,
    buffered: RefCell<Option<Rc<BufferedFile>>>,
}

impl SegmentFile {
    pub fn new(dma: Rc<DmaFile>, path: PathBuf) -> Self {
        SegmentFile {
            dma,
            path,
            buffered: RefCell::new(None),
        }
    }

    /// Reads [pos, pos+len) (fewer bytes at end of file); `pos` must be page aligned.
    pub async fn read(&self, pos: u64, len: usize) -> io::Result<ReadResult> {
        debug_assert_eq!(align_down(pos), pos);
        let existing = self.buffered.borrow().clone();
        let file = match existing {
            Some(f) => f,
            None => {
                let f = Rc::new(BufferedFile::open(&self.path).await?);
                *self.buffered.borrow_mut() = Some(f.clone());
                f
            }
        };
        Ok(file.read_at(pos, len).await?)
    }

    /// Closes both handles (the DMA one only if this holds the last reference).
    pub async fn close(self) -> io::Result<()> {
        if let Some(b) = self.buffered.into_inner() {
            if let Ok(b) = Rc::try_unwrap(b) {
                b.close().await?;
            }
        }
        self.dma.close_rc().await?;
        Ok(())
    }
}

/// Appends bytes at a logical end that need not be page aligned: the partial last page is
/// kept in memory and rewritten with each write, zero padded to the page end.
pub struct TailWriter {
    pub file: Rc<DmaFile>,
    /// Bytes of the last partial page: [align_down(end), end).
    tail: Vec<u8>,
    end: u64,
}

impl TailWriter {
    /// `tail` must hold the file bytes [align_down(end), end).
    pub fn new(file: Rc<DmaFile>, end: u64, tail: Vec<u8>) -> Self {
        assert_eq!(
            tail.len() as u64,
            end - align_down(end),
            "tail page does not match end"
        );
        TailWriter { file, tail, end }
    }

    /// Logical end of what is written.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Writes `data` at the logical end.
    pub async fn append(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let room = WRITE_CHUNK_BYTES_MAX - self.tail.len();
            let take = data.len().min(room);
            self.write_chunk(&data[..take]).await?;
            data = &data[take..];
        }
        Ok(())
    }

    /// Rewrites the partial tail page, zeroing everything after the logical end in it.
    pub async fn rewrite_tail(&mut self) -> io::Result<()> {
        if self.tail.is_empty() {
            return Ok(());
        }
        self.write_chunk(&[]).await
    }

    async fn write_chunk(&mut self, data: &[u8]) -> io::Result<()> {
        let page_start = align_down(self.end);
        let total = self.tail.len() + data.len();
        let padded = align_up(total as u64) as usize;
        let mut buf = self.file.alloc_dma_buffer(padded);
        let bytes = buf.as_bytes_mut();
        bytes[..self.tail.len()].copy_from_slice(&self.tail);
        bytes[self.tail.len()..total].copy_from_slice(data);
        bytes[total..].fill(0);
        let new_end = self.end + data.len() as u64;
        let new_tail_start = (align_down(new_end) - page_start) as usize;
        let new_tail = bytes[new_tail_start..total].to_vec();
        let written = self.file.write_at(buf, page_start).await?;
        if written != padded {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short DMA write at {page_start}: {written} of {padded} bytes"),
            ));
        }
        self.end = new_end;
        self.tail = new_tail;
        Ok(())
    }
}

/// Reads the bytes [align_down(end), end) (the partial tail page) of a file.
pub async fn read_tail_page(file: &SegmentFile, end: u64) -> io::Result<Vec<u8>> {
    let start = align_down(end);
    let len = (end - start) as usize;
    if len == 0 {
        return Ok(Vec::new());
    }
    let r = file.read(start, PAGE_BYTES as usize).await?;
    if r.len() < len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("tail page at {start} short"),
        ));
    }
    Ok(r[..len].to_vec())
}

/// A cached aligned DMA read; `get` re-reads only when the wanted range is outside it.
#[derive(Default)]
pub struct Window {
    start: u64,
    data: Option<ReadResult>,
}

impl Window {
    /// Bytes [pos, pos+len) or fewer if the file ends first.
    pub async fn get(&mut self, file: &SegmentFile, pos: u64, len: usize) -> io::Result<&[u8]> {
        let covered = self
            .data
            .as_ref()
            .is_some_and(|d| pos >= self.start && pos + len as u64 <= self.start + d.len() as u64);
        if !covered {
            let start = align_down(pos);
            let want = (pos - start) as usize + len.max(READ_WINDOW_BYTES);
            let data = file.read(start, align_up(want as u64) as usize).await?;
            self.start = start;
            self.data = Some(data);
        }
        let data = self.data.as_ref().expect("window filled above");
        let from = (pos - self.start) as usize;
        let to = (from + len).min(data.len());
        Ok(&data[from.min(to)..to])
    }
}

/// One valid entry found by [`scan_entries`].
pub struct ScannedEntry<'a> {
    pub position: u64,
    pub entry_bytes: usize,
    pub last_offset: i64,
    pub max_timestamp: i64,
    pub header: BatchHeader,
    /// The verified batch bytes.
    pub batch: &'a [u8],
}

/// Where and why a scan stopped.
#[derive(Debug)]
pub struct ScanEnd {
    /// Position after the last valid entry visited (or where the visitor stopped).
    pub end: u64,
    /// Offset after the last valid entry.
    pub next_offset: i64,
    /// `None` when the scan reached `limit` cleanly or the visitor stopped it.
    pub invalid: Option<EntryError>,
}

/// Walks entries from `start` (an entry boundary holding offset-run `next_offset`) up to
/// `limit`, verifying every checksum and offset continuity before calling `visit`; stops at
/// the first invalid entry or when `visit` returns false.
pub async fn scan_entries(
    file: &SegmentFile,
    start: u64,
    limit: u64,
    mut next_offset: Option<i64>,
    mut visit: impl FnMut(ScannedEntry<'_>) -> bool,
) -> io::Result<ScanEnd> {
    let mut window = Window::default();
    let mut pos = start;
    let mut last_next = next_offset.unwrap_or(-1);
    loop {
        if pos >= limit {
            return Ok(ScanEnd {
                end: pos,
                next_offset: last_next,
                invalid: None,
            });
        }
        let head = window.get(file, pos, ENTRY_HEADER_BYTES).await?;
        let batch_len = match entry::access_header(head) {
            Ok(h) => h.batch_len.to_native() as usize,
            Err(e) => {
                return Ok(ScanEnd {
                    end: pos,
                    next_offset: last_next,
                    invalid: Some(e),
                })
            }
        };
        let entry_bytes = entry::entry_bytes(batch_len);
        if pos + entry_bytes as u64 > limit {
            return Ok(ScanEnd {
                end: pos,
                next_offset: last_next,
                invalid: Some(EntryError::Truncated),
            });
        }
        let bytes = window.get(file, pos, entry_bytes).await?;
        let scanned = match check_entry(bytes, batch_len, next_offset) {
            Ok(s) => s,
            Err(e) => {
                return Ok(ScanEnd {
                    end: pos,
                    next_offset: last_next,
                    invalid: Some(e),
                })
            }
        };
        let (header, last_offset, max_timestamp) = scanned;
        let keep_going = visit(ScannedEntry {
            position: pos,
            entry_bytes,
            last_offset,
            max_timestamp,
            header,
            batch: &bytes[ENTRY_HEADER_BYTES..ENTRY_HEADER_BYTES + batch_len],
        });
        pos += entry_bytes as u64;
        last_next = last_offset + 1;
        next_offset = Some(last_next);
        if !keep_going {
            return Ok(ScanEnd {
                end: pos,
                next_offset: last_next,
                invalid: None,
            });
        }
    }
}

fn check_entry(
    bytes: &[u8],
    batch_len: usize,
    expected_base: Option<i64>,
) -> Result<(BatchHeader, i64, i64), EntryError> {
    if bytes.len() < ENTRY_HEADER_BYTES + batch_len {
        return Err(EntryError::Truncated);
    }
    let header: &ArchivedEntryHeader = entry::access_header(bytes)?;
    let batch = &bytes[ENTRY_HEADER_BYTES..ENTRY_HEADER_BYTES + batch_len];
    entry::verify(header, batch)?;
    let base = header.base_offset.to_native();
    if expected_base.is_some_and(|e| e != base) {
        return Err(EntryError::Mismatch("offset gap"));
    }
    let parsed = BatchHeader::parse(batch).map_err(|_| EntryError::Mismatch("batch header"))?;
    Ok((
        parsed,
        header.last_offset.to_native(),
        header.max_timestamp.to_native(),
    ))
}

/// Replaces `dir/name` atomically (temp file, fdatasync, rename, directory sync).
pub async fn write_file_atomic(dir: &Path, name: &str, bytes: Vec<u8>) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = BufferedFile::create(&tmp).await?;
    let len = bytes.len();
    let written = file.write_at(bytes, 0).await?;
    if written != len {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("short write to {}", tmp.display()),
        ));
    }
    file.fdatasync().await?;
    file.rename(dir.join(name)).await?;
    file.close().await?;
    let d = Directory::open(dir).await?;
    d.sync().await?;
    d.close().await?;
    Ok(())
}

/// `values` as a small file: each i64 little-endian, then their CRC32C (u32 LE).
pub fn checked_i64s(values: &[i64]) -> Vec<u8> {
    let mut frame: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let crc = crc32c::crc32c(&frame);
    frame.extend_from_slice(&crc.to_le_bytes());
    frame
}

/// The `N` values of a [`checked_i64s`] file; `None` when its size or checksum is wrong.
pub fn parse_checked_i64s<const N: usize>(bytes: &[u8]) -> Option<[i64; N]> {
    if bytes.len() != N * 8 + 4 {
        return None;
    }
    let (values, crc) = bytes.split_at(N * 8);
    if crc32c::crc32c(values).to_le_bytes() != crc {
        return None;
    }
    let mut out = [0i64; N];
    for (slot, chunk) in out.iter_mut().zip(values.chunks_exact(8)) {
        *slot = i64::from_le_bytes(chunk.try_into().expect("8 bytes"));
    }
    Some(out)
}

/// Whole content of a small file, `None` if it does not exist.
pub async fn read_small_file(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let file = match BufferedFile::open(path).await {
        Ok(f) => f,
        Err(e) => {
            let e: io::Error = e.into();
            return if e.kind() == io::ErrorKind::NotFound {
                Ok(None)
            } else {
                Err(e)
            };
        }
    };
    let size = file.file_size().await? as usize;
    let data = file.read_at(0, size).await?;
    let out = data.to_vec();
    file.close().await?;
    if out.len() != size {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("short read of {}", path.display()),
        ));
    }
    Ok(Some(out))
}
