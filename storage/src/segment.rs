//! glommio file helpers for segments: the page-tail DMA writer, a windowed reader, the
//! entry scanner used by recovery / reads / timestamp lookups, and small atomically replaced
//! metadata files. This and `log` are the only modules that touch glommio.

use std::cell::{Cell, RefCell};
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
/// Bytes of one O_DIRECT read of a scan.
pub const READ_WINDOW_BYTES: usize = 1024 * 1024;
/// Bytes of one read-ahead of a sequential reader (a window it then reads from, for about
/// two 1 MiB Fetch reads).
pub const READ_AHEAD_BYTES: usize = 2 * READ_WINDOW_BYTES;

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

/// A segment file: the DMA handle the writer uses, which reads use too (O_DIRECT), with a
/// small per-file read-ahead (module [`ReadAhead`] docs below).
pub struct SegmentFile {
    pub dma: Rc<DmaFile>,
    path: PathBuf,
    ahead: RefCell<ReadAhead>,
    /// Set when O_DIRECT reads of this file failed as unsupported: reads go through a buffered
    /// descriptor of the same file (coherent with the direct writes) from then on.
    buffered: RefCell<Option<Rc<BufferedFile>>>,
}

impl SegmentFile {
    pub fn new(dma: Rc<DmaFile>, path: PathBuf) -> Self {
        SegmentFile {
            dma,
            path,
            ahead: RefCell::new(ReadAhead::default()),
            buffered: RefCell::new(None),
        }
    }

    /// Reads [pos, pos+len) (fewer bytes at end of file); `pos` must be page aligned.
    pub async fn read(&self, pos: u64, len: usize) -> io::Result<ReadResult> {
        debug_assert_eq!(align_down(pos), pos);
        let buffered = self.buffered.borrow().clone();
        if let Some(file) = buffered {
            return Ok(file.read_at(pos, len).await?);
        }
        match self
            .dma
            .read_at_aligned(pos, align_up(len as u64) as usize)
            .await
        {
            Ok(r) => Ok(ReadResult::slice(&r, 0, len.min(r.len())).expect("within the read")),
            Err(e) => {
                let e = io::Error::from(e);
                if !matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EINVAL)) {
                    return Err(e);
                }
                tracing::warn!(path = %self.path.display(), error = %e, "O_DIRECT reads unsupported; reading through the page cache");
                let file = Rc::new(BufferedFile::open(&self.path).await?);
                *self.buffered.borrow_mut() = Some(file.clone());
                Ok(file.read_at(pos, len).await?)
            }
        }
    }

    /// Drops the read-ahead windows (an idle reader's memory).
    pub fn drop_read_ahead(&self) {
        *self.ahead.borrow_mut() = ReadAhead::default();
    }

    /// Readers of this file with read-ahead windows held (at most `READ_STREAMS`).
    pub fn read_ahead_streams(&self) -> usize {
        let ahead = self.ahead.borrow();
        ahead
            .streams
            .iter()
            .filter(|s| s.current.is_some() || s.next.is_some())
            .count()
    }

    /// Closes both handles (the DMA one only if this holds the last reference).
    pub async fn close(self) -> io::Result<()> {
        drop(self.ahead);
        if let Some(b) = self.buffered.into_inner() {
            if let Ok(b) = Rc::try_unwrap(b) {
                b.close().await?;
            }
        }
        self.dma.close_rc().await?;
        Ok(())
    }

    /// A window of the file holding [pos, pos+len) (`pos` an entry's start) below `limit`
    /// (the file's valid end now), unless the file ends first: the window last handed out,
    /// the read-ahead when it starts there, or read now. When a reader moves on sequentially
    /// (this window starts where the last one's first partial entry does), the window after
    /// this one is read in the background.
    async fn window(&self, pos: u64, len: usize, limit: u64) -> io::Result<Held> {
        let start = align_down(pos);
        let (id, next, sequential) = {
            let mut ahead = self.ahead.borrow_mut();
            if let Some(held) = ahead.holding(pos, len) {
                return Ok(held);
            }
            match ahead.stream_from(start) {
                Some(stream) => {
                    let next = stream.next.take().filter(|n| n.start == start);
                    (Some(stream.id), next, stream.next_start == Some(start))
                }
                None => (None, None, false),
            }
        };
        let mut held = match next {
            // A failed read-ahead is read again below, where errors are handled.
            Some(next) => next
                .read
                .await
                .ok()
                .map(|d| Held::new(start, d, next.valid)),
            None => None,
        };
        if !held.as_ref().is_some_and(|h| h.covers(pos, len)) {
            // No read-ahead here, or it stopped short (a batch larger than a window, or it was
            // issued before the file grew).
            let want = (pos - start) as usize + len.max(READ_WINDOW_BYTES);
            held = Some(Held::new(start, self.read(start, want).await?, limit));
        }
        let held = held.expect("read above");
        let next_start = held.next_window_start(pos);
        let unbuffered = self.buffered.borrow().is_none();
        let mut ahead = self.ahead.borrow_mut();
        // Other readers may have taken this reader's stream meanwhile: then it keeps none.
        let Some(stream) = ahead.streams.iter_mut().find(|s| Some(s.id) == id) else {
            return Ok(held);
        };
        stream.current = Some(held.clone());
        stream.next_start = Some(next_start);
        if sequential && unbuffered && next_start < limit && stream.next.is_none() {
            let dma = self.dma.clone();
            let len = READ_AHEAD_BYTES;
            stream.next = Some(Pending {
                start: next_start,
                valid: limit,
                read: glommio::spawn_local(async move {
                    Ok(dma.read_at_aligned(next_start, len).await?)
                }),
            });
        }
        Ok(held)
    }
}

/// Read-ahead of one segment file, for catch-up consumers: O_DIRECT reads land in DMA buffers
/// (the "disk buffer"; the read path then copies batches out once, into `ReadBatches`), one
/// `READ_WINDOW_BYTES` window at a time. Each reader of the file (up to `READ_STREAMS`: the
/// consumers of different groups, or one far behind another) has its own stream: the window
/// last handed out stays (the next Fetch of a sequential consumer starts inside it), and once
/// a reader moves on sequentially the next window is read in the background while it works
/// through this one. A read that continues no stream takes a free one or the least recently
/// used. Bytes are trusted only below the file's valid end when they were read (`limit`): the
/// active segment's partial last page is rewritten as it grows. Checksums are verified by the
/// scan as always.
#[derive(Default)]
struct ReadAhead {
    streams: Vec<Stream>,
    /// Counts reads, for the least recently used stream (and stream ids).
    clock: u64,
}

/// Readers of one file with read-ahead of their own; each holds up to a window and a
/// read-ahead (`STREAM_BYTES`).
pub const READ_STREAMS: usize = 4;

/// What one stream may hold: its window and its read-ahead.
pub const STREAM_BYTES: usize = READ_WINDOW_BYTES + READ_AHEAD_BYTES;

thread_local! {
    /// Streams holding windows on this thread (a shard), over all its files.
    static LIVE_STREAMS: Cell<usize> = const { Cell::new(0) };
    /// The most this thread may hold (`set_read_ahead_bytes_max`).
    static STREAMS_MAX: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// Bounds the read-ahead memory of this thread's segment files (a shard's) to about `bytes`:
/// at most `bytes / STREAM_BYTES` streams (at least one) hold windows at once; a reader that
/// finds none free reads without read-ahead until one is.
pub fn set_read_ahead_bytes_max(bytes: usize) {
    STREAMS_MAX.with(|m| m.set((bytes / STREAM_BYTES).max(1)));
}

/// Streams holding read-ahead windows on this thread now.
pub fn live_read_ahead_streams() -> usize {
    LIVE_STREAMS.with(Cell::get)
}

/// One reader's windows.
struct Stream {
    id: u64,
    current: Option<Held>,
    next: Option<Pending>,
    /// Where the window after `current` starts (a page holding an entry `current` has only
    /// part of), once a sequential reader was seen.
    next_start: Option<u64>,
    last_used: u64,
}

impl ReadAhead {
    /// The window of a stream holding [pos, pos+len), if any.
    fn holding(&mut self, pos: u64, len: usize) -> Option<Held> {
        self.clock += 1;
        let clock = self.clock;
        let stream = self
            .streams
            .iter_mut()
            .find(|s| s.current.as_ref().is_some_and(|h| h.covers(pos, len)))?;
        stream.last_used = clock;
        stream.current.clone()
    }

    /// The stream a read of the window at `start` continues (its next window or read-ahead
    /// starts there), else a free one or the least recently used, emptied; `None` when this
    /// file has no stream and the thread's bound leaves none to take.
    fn stream_from(&mut self, start: u64) -> Option<&mut Stream> {
        let clock = self.clock;
        let continues = |s: &Stream| {
            s.next_start == Some(start) || s.next.as_ref().is_some_and(|n| n.start == start)
        };
        let room = live_read_ahead_streams() < STREAMS_MAX.with(Cell::get);
        let at = match self.streams.iter().position(continues) {
            Some(at) => at,
            None if self.streams.len() < READ_STREAMS && room => {
                self.streams.push(Stream::new(clock));
                self.streams.len() - 1
            }
            None if self.streams.is_empty() => return None,
            None => {
                let (at, _) = self
                    .streams
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, s)| s.last_used)
                    .expect("READ_STREAMS > 0");
                self.streams[at] = Stream::new(clock);
                at
            }
        };
        let stream = &mut self.streams[at];
        stream.last_used = clock;
        Some(stream)
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        LIVE_STREAMS.with(|n| n.set(n.get() - 1));
    }
}

impl Stream {
    fn new(id: u64) -> Self {
        LIVE_STREAMS.with(|n| n.set(n.get() + 1));
        Stream {
            id,
            current: None,
            next: None,
            next_start: None,
            last_used: id,
        }
    }
}

/// Bytes of a file from `start` (page aligned), all below the file's valid end when read.
#[derive(Clone)]
pub struct Held {
    start: u64,
    data: ReadResult,
}

impl Held {
    fn new(start: u64, data: ReadResult, limit: u64) -> Self {
        let valid = (limit.saturating_sub(start) as usize).min(data.len());
        let data = ReadResult::slice(&data, 0, valid).expect("within the read");
        Held { start, data }
    }

    fn covers(&self, pos: u64, len: usize) -> bool {
        pos >= self.start && pos + len as u64 <= self.start + self.data.len() as u64
    }

    /// The page holding the first entry from `pos` (an entry start) that this window does not
    /// hold whole: where a sequential reader's next window starts. Follows the entries'
    /// lengths without verifying them (the scan does); damage only misplaces a read-ahead.
    fn next_window_start(&self, mut pos: u64) -> u64 {
        let end = self.start + self.data.len() as u64;
        while let Some(head) = self
            .data
            .get((pos - self.start) as usize..)
            .and_then(|b| b.get(..ENTRY_HEADER_BYTES))
        {
            let Ok(header) = entry::access_header(head) else {
                break;
            };
            let next = pos + entry::entry_bytes(header.batch_len.to_native() as usize) as u64;
            if next > end {
                break;
            }
            pos = next;
        }
        align_down(pos)
    }
}

/// A window read in flight.
struct Pending {
    start: u64,
    /// The file's valid end when it was issued.
    valid: u64,
    read: glommio::Task<io::Result<ReadResult>>,
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

/// The window a scan reads entries from (the file's read-ahead windows, see [`ReadAhead`]).
#[derive(Default)]
pub struct Window {
    held: Option<Held>,
}

impl Window {
    /// Bytes [pos, pos+len) (`pos` an entry's start) below `limit`, or fewer if the file ends
    /// first.
    pub async fn get(
        &mut self,
        file: &SegmentFile,
        pos: u64,
        len: usize,
        limit: u64,
    ) -> io::Result<&[u8]> {
        if !self.held.as_ref().is_some_and(|h| h.covers(pos, len)) {
            self.held = Some(file.window(pos, len, limit).await?);
        }
        let held = self.held.as_ref().expect("window filled above");
        let from = (pos - held.start) as usize;
        let to = (from + len).min(held.data.len());
        Ok(&held.data[from.min(to)..to])
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

/// Walks entries from `start` (an entry boundary whose entry starts at or after `next_offset`)
/// up to `limit`, verifying every checksum and that offsets increase before calling `visit`; stops at
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
        let head = window.get(file, pos, ENTRY_HEADER_BYTES, limit).await?;
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
        let bytes = window.get(file, pos, entry_bytes, limit).await?;
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
    // Offsets only increase; a follower's log may have gaps where its leader's compaction
    // removed whole batches.
    if expected_base.is_some_and(|e| base < e) {
        return Err(EntryError::Mismatch("offsets go backwards"));
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
