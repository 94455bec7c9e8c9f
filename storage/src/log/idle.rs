//! Bounded file descriptors: the files of closed segments that nobody read for a while are
//! closed by the maintenance task, and reopened (read-only) on the next read, timestamp lookup
//! or compaction. The active segment's file stays open (its writer holds it).

use super::*;

impl PartitionLog {
    /// Closes the files of closed segments unused for `idle_ms`, and drops the active
    /// segment's read-ahead windows if it was not read for as long; returns how many files
    /// it closed.
    pub async fn close_idle_segments(&self, now_ms: i64, idle_ms: i64) -> usize {
        let idle: Vec<Rc<SegmentFile>> = {
            let mut inner = self.shared.inner.borrow_mut();
            let active = inner.segments.last().expect("a log always has a segment");
            if active.last_used_ms.get().saturating_add(idle_ms) <= now_ms {
                if let Some(file) = &active.file {
                    file.drop_read_ahead();
                }
            }
            let closed = inner.deletable();
            inner.segments[..closed]
                .iter_mut()
                .filter(|s| {
                    s.last_used_ms.get().saturating_add(idle_ms) <= now_ms
                        && s.file.as_ref().is_some_and(|f| Rc::strong_count(f) == 1)
                })
                .filter_map(|s| s.file.take())
                .collect()
        };
        let count = idle.len();
        for file in idle {
            if let Ok(file) = Rc::try_unwrap(file) {
                if let Err(e) = file.close().await {
                    warn!(error = %e, "closing an idle segment failed");
                }
            }
        }
        count
    }

    /// Whether any segment file holds read-ahead windows.
    pub fn read_ahead_held(&self) -> bool {
        self.read_ahead_streams() > 0
    }

    /// Readers with read-ahead windows held, over the segment files.
    pub fn read_ahead_streams(&self) -> usize {
        let inner = self.shared.inner.borrow();
        inner
            .segments
            .iter()
            .filter_map(|s| s.file.as_ref())
            .map(|f| f.read_ahead_streams())
            .sum()
    }

    /// Open segment files (closed and active).
    pub fn open_segment_files(&self) -> usize {
        let inner = self.shared.inner.borrow();
        inner.segments.iter().filter(|s| s.file.is_some()).count()
    }

    /// The file of the segment starting at `base` (which has written data): `file` if it is
    /// open, else opened again and kept.
    pub(super) async fn segment_file(
        &self,
        base: i64,
        file: Option<Rc<SegmentFile>>,
    ) -> Result<Rc<SegmentFile>, StorageError> {
        let now = now_ms();
        if let Some(file) = file {
            self.touch(base, now);
            return Ok(file);
        }
        let dir = self.shared.inner.borrow().dir.clone();
        let path = dir.join(segment::file_name(base, "log"));
        let dma = DmaFile::open(&path).await.map_err(|e| {
            StorageError::new(&dir, format!("reopening {}", path.display()), e.into())
        })?;
        let opened = Rc::new(SegmentFile::new(Rc::new(dma), path));
        let mut inner = self.shared.inner.borrow_mut();
        let i = inner
            .segments
            .partition_point(|s| s.index.base_offset <= base);
        if let Some(s) = i.checked_sub(1).map(|i| &mut inner.segments[i]) {
            if s.index.base_offset == base {
                s.last_used_ms.set(now);
                // Another task may have reopened it meanwhile: share that one.
                return Ok(s.file.get_or_insert(opened).clone());
            }
        }
        Ok(opened)
    }

    fn touch(&self, base: i64, now_ms: i64) {
        let inner = self.shared.inner.borrow();
        let i = inner
            .segments
            .partition_point(|s| s.index.base_offset <= base);
        if let Some(s) = i.checked_sub(1).map(|i| &inner.segments[i]) {
            s.last_used_ms.set(now_ms);
        }
    }
}
