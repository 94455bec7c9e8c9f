//! Rebuilds `Inner` from the directory: closed segments from their index files (scanning
//! when missing or inconsistent), the active segment by scanning and truncating a torn
//! tail, producer state from the snapshot plus replay of later batches, the leader-epoch
//! cache from its checkpoint made to agree with the recovered log.

use super::*;
use crate::segment::TailWriter;

pub(super) async fn recover(dir: &Path, config: LogConfig) -> Result<Inner, StorageError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| StorageError::new(dir, "creating partition dir", e))?;
    let mut bases = list_segments(dir)?;
    if bases.is_empty() {
        bases.push(0);
    }
    let (mut producers, snapshot_offset) = load_snapshot(dir).await?;
    let mut segments = Vec::with_capacity(bases.len());
    let mut i = 0;
    while i + 1 < bases.len() {
        let seg = open_closed(dir, bases[i], &bases[i + 1..], &config).await?;
        let next = seg.index.next_offset;
        let leftovers = bases[i + 1..].iter().take_while(|b| **b < next).count();
        drop_merged_leftovers(dir, &bases[i + 1..i + 1 + leftovers]).await?;
        bases.drain(i + 1..i + 1 + leftovers);
        if seg.index.next_offset > snapshot_offset {
            replay(dir, &seg, snapshot_offset, &mut producers).await?;
        }
        segments.push(seg);
        i += 1;
    }
    let active_base = *bases.last().expect("at least one segment");
    let expected = segments
        .last()
        .map_or(active_base, |s: &Segment| s.index.next_offset);
    if expected != active_base {
        return Err(StorageError::corrupt(
            dir,
            format!("segment {active_base} does not follow offset {expected}"),
        ));
    }
    let mut epochs_seen = Vec::new();
    let (active, writer, tail_seed, checkpointed_bytes) = open_active(
        dir,
        active_base,
        &config,
        snapshot_offset,
        &mut producers,
        &mut epochs_seen,
    )
    .await?;
    let log_end_offset = active.index.next_offset;
    segments.push(active);
    if snapshot_offset > log_end_offset {
        warn!(dir = %dir.display(), snapshot_offset, log_end_offset, "producer snapshot ahead of the log; rebuilding");
        producers = ProducerStateTable::new();
        for seg in &segments {
            replay(dir, seg, segments[0].index.base_offset, &mut producers).await?;
        }
    }
    let first_base = segments[0].index.base_offset;
    let log_start_offset = retention::load_log_start(dir)
        .await?
        .unwrap_or(first_base)
        .clamp(first_base, log_end_offset);
    // Where the last compaction pass got to; only closed segments count as compacted.
    let (compacted_offset, tombstone_expiry_ms) = compaction::load_checkpoint(dir)
        .await?
        .map_or((first_base, i64::MAX), |(offset, expiry_ms)| {
            (offset.clamp(first_base, active_base), expiry_ms)
        });
    let (epochs, epochs_changes) =
        recover_epochs(dir, log_start_offset, log_end_offset, &epochs_seen).await?;
    info!(dir = %dir.display(), segments = segments.len(), log_start_offset, log_end_offset, "partition log recovered");
    Ok(Inner {
        dir: dir.to_path_buf(),
        config,
        segments,
        writer: Some(writer),
        filling: None,
        tail_seed,
        chunk_hint: 0,
        log_end_offset,
        log_start_offset,
        closed_offset: active_base,
        last_sync_ms: now_ms(),
        checkpointed_bytes,
        compacted_offset,
        tombstone_expiry_ms,
        written_offset: log_end_offset,
        synced_offset: log_end_offset,
        sync_target: 0,
        pending: VecDeque::new(),
        cache: VecDeque::new(),
        cache_bytes: 0,
        readers: super::readers::TailReaders::new(now_ms()),
        last_append_ms: i64::MIN,
        producers,
        failed: None,
        failure_retryable: false,
        closing: false,
        checkpointing: false,
        waiting_for_room: VecDeque::new(),
        next_turn: 0,
        epochs,
        epochs_changes,
        epochs_saved: 0,
        leader_epoch: None,
        truncating: false,
    })
}

/// The leader-epoch cache made to agree with the recovered log: entries at or after the log
/// end go (their batches were cut or never written), the first is moved up to the log start,
/// and the epochs of the batches recovery scanned (`seen`: each newer epoch and the base
/// offset it first appears at) that the file misses are added. Returns the cache and 1 if it
/// differs from the file (the writer task then rewrites it), else 0.
///
/// Without a checkpoint file no epoch was ever assigned (`set_leader_epoch` and the writer
/// task write it before any stamped or replicated batch reaches the disk), so the scanned
/// batches' epochs are what their producers sent, not leader epochs: none is added.
async fn recover_epochs(
    dir: &Path,
    log_start_offset: i64,
    log_end_offset: i64,
    seen: &[(i32, i64)],
) -> Result<(LeaderEpochCache, u64), StorageError> {
    let bytes = segment::read_small_file(&dir.join(leader_epoch::CHECKPOINT_FILE))
        .await
        .map_err(|e| StorageError::new(dir, "reading the leader-epoch checkpoint", e))?;
    let Some(bytes) = bytes else {
        return Ok((LeaderEpochCache::new(), 0));
    };
    let stored = LeaderEpochCache::decode(&bytes);
    if stored.is_none() {
        warn!(dir = %dir.display(), "damaged leader-epoch checkpoint; rebuilding what the scan finds");
    }
    let mut epochs = stored.clone().unwrap_or_default();
    epochs.truncate_from_end(log_end_offset);
    epochs.truncate_from_start(log_start_offset);
    for &(epoch, base_offset) in seen {
        if epochs.latest_epoch().is_none_or(|latest| epoch > latest) {
            warn!(dir = %dir.display(), epoch, base_offset, "leader epoch missing from the checkpoint; added from the log");
            epochs.assign(epoch, base_offset);
        }
    }
    let unchanged = stored.as_ref() == Some(&epochs);
    Ok((epochs, u64::from(!unchanged)))
}

fn list_segments(dir: &Path) -> Result<Vec<i64>, StorageError> {
    let mut bases = Vec::new();
    let entries =
        std::fs::read_dir(dir).map_err(|e| StorageError::new(dir, "listing partition dir", e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::new(dir, "listing partition dir", e))?;
        let name = entry.file_name();
        if name.to_str().is_some_and(|n| n.ends_with(".cleaned")) {
            // A compaction copy that was never swapped in: the original is intact.
            warn!(dir = %dir.display(), file = ?name, "removing an unfinished compaction copy");
            std::fs::remove_file(entry.path())
                .map_err(|e| StorageError::new(dir, "removing a compaction copy", e))?;
            continue;
        }
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".log")) else {
            continue;
        };
        match stem.parse::<i64>() {
            Ok(base) if stem.len() == 20 && base >= 0 => bases.push(base),
            _ => warn!(dir = %dir.display(), file = ?name, "ignoring unexpected .log file"),
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

pub(super) async fn load_snapshot(dir: &Path) -> Result<(ProducerStateTable, i64), StorageError> {
    let bytes = segment::read_small_file(&dir.join(SNAPSHOT_FILE))
        .await
        .map_err(|e| StorageError::new(dir, "reading producer snapshot", e))?;
    let Some(bytes) = bytes else {
        return Ok((ProducerStateTable::new(), i64::MIN));
    };
    match decode_snapshot_frame(&bytes).map(|(o, p)| (o, ProducerStateTable::decode_snapshot(p))) {
        Some((offset, Ok(table))) => Ok((table, offset)),
        _ => {
            warn!(dir = %dir.display(), "damaged producer snapshot; rebuilding from the log");
            Ok((ProducerStateTable::new(), i64::MIN))
        }
    }
}

/// Removes the segments a compaction pass merged into the one before them and did not get
/// to unlink before a crash (`compaction` step 3): the merged copy covers their offsets.
async fn drop_merged_leftovers(dir: &Path, bases: &[i64]) -> Result<(), StorageError> {
    for base in bases {
        warn!(dir = %dir.display(), base, "removing a segment an interrupted compaction merged into the one before it");
        for ext in ["log", "index"] {
            match std::fs::remove_file(dir.join(segment::file_name(*base, ext))) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(StorageError::new(dir, "removing a merged segment", e))
                }
                _ => {}
            }
        }
    }
    if !bases.is_empty() {
        let d = std::fs::File::open(dir)
            .map_err(|e| StorageError::new(dir, "opening the partition dir", e))?;
        d.sync_all()
            .map_err(|e| StorageError::new(dir, "syncing the partition dir", e))?;
    }
    Ok(())
}

/// Opens the closed segment at `base`; `later` are the bases after it. Its data ends where
/// the next segment starts, or, after a compaction merge interrupted by a crash, exactly
/// where one of the later segments starts (those in between are the merge's leftovers).
async fn open_closed(
    dir: &Path,
    base: i64,
    later: &[i64],
    config: &LogConfig,
) -> Result<Segment, StorageError> {
    let next_base = later[0];
    let path = dir.join(segment::file_name(base, "log"));
    let ctx =
        |what: &str, e: io::Error| StorageError::new(dir, format!("{what} {}", path.display()), e);
    let dma = DmaFile::open(&path)
        .await
        .map_err(|e| ctx("opening", e.into()))?;
    let file = SegmentFile::new(Rc::new(dma), path.clone());
    let size = file
        .dma
        .file_size()
        .await
        .map_err(|e| ctx("stat of", e.into()))?;
    let index_name = segment::file_name(base, "index");
    let stored = segment::read_small_file(&dir.join(&index_name))
        .await
        .map_err(|e| ctx("reading index of", e))?;
    let trusted = stored.and_then(|b| SegmentIndex::decode(&b)).filter(|i| {
        i.base_offset == base
            && i.next_offset == next_base
            && i.size_bytes <= size
            && i.size_bytes > 0
    });
    let index = match trusted {
        Some(index) => index,
        None => {
            warn!(dir = %dir.display(), base, "segment index missing or inconsistent; rebuilding");
            let index = rebuild_index(dir, &file, base, size, config).await?;
            if !later.contains(&index.next_offset) || index.size_bytes == 0 {
                return Err(StorageError::corrupt(
                    dir,
                    format!("closed segment {base} ends at offset {} but the next starts at {next_base}", index.next_offset),
                ));
            }
            segment::write_file_atomic(dir, &index_name, index.encode())
                .await
                .map_err(|e| ctx("writing index of", e))?;
            index
        }
    };
    let written_bytes = index.size_bytes;
    Ok(Segment {
        index,
        file: Some(Rc::new(file)),
        written_bytes,
        first_append_ms: None,
        last_used_ms: std::cell::Cell::new(now_ms()),
    })
}

async fn rebuild_index(
    dir: &Path,
    file: &SegmentFile,
    base: i64,
    size: u64,
    config: &LogConfig,
) -> Result<SegmentIndex, StorageError> {
    let mut index = SegmentIndex::new(base);
    let interval = config.index_interval_bytes;
    segment::scan_entries(file, 0, size, Some(base), |e| {
        index.on_append(
            e.header.base_offset,
            e.last_offset,
            e.entry_bytes,
            e.max_timestamp,
            interval,
        );
        true
    })
    .await
    .map_err(|e| StorageError::new(dir, format!("scanning segment {base}"), e))?;
    Ok(index)
}

/// Records producer state of the batches in `seg` at or after `from_offset`.
pub(super) async fn replay(
    dir: &Path,
    seg: &Segment,
    from_offset: i64,
    producers: &mut ProducerStateTable,
) -> Result<(), StorageError> {
    let file = seg.file.as_ref().expect("recovered segments have files");
    let start = seg
        .index
        .position_for_offset(from_offset.max(seg.index.base_offset));
    let end = segment::scan_entries(file, start, seg.written_bytes, None, |e| {
        if e.header.base_offset >= from_offset {
            producers.record(&e.header, e.header.base_offset);
        }
        true
    })
    .await
    .map_err(|e| {
        StorageError::new(
            dir,
            format!(
                "replaying producer state of segment {}",
                seg.index.base_offset
            ),
            e,
        )
    })?;
    match end.invalid {
        Some(invalid) => Err(StorageError::corrupt(
            dir,
            format!(
                "segment {} corrupt at {}: {invalid}",
                seg.index.base_offset, end.end
            ),
        )),
        None => Ok(()),
    }
}

async fn open_active(
    dir: &Path,
    base: i64,
    config: &LogConfig,
    snapshot_offset: i64,
    producers: &mut ProducerStateTable,
    epochs_seen: &mut Vec<(i32, i64)>,
) -> Result<(Segment, Rc<DmaFile>, Vec<u8>, u64), StorageError> {
    let path = dir.join(segment::file_name(base, "log"));
    let ctx =
        |what: &str, e: io::Error| StorageError::new(dir, format!("{what} {}", path.display()), e);
    let dma = Rc::new(
        segment::open_rw(&path)
            .await
            .map_err(|e| ctx("opening", e))?,
    );
    let file = Rc::new(SegmentFile::new(dma.clone(), path.clone()));
    let size = dma
        .file_size()
        .await
        .map_err(|e| ctx("stat of", e.into()))?;
    let checkpoint = load_checkpoint(dir, &file, base, size, snapshot_offset).await?;
    let checkpointed_bytes = checkpoint.as_ref().map_or(0, |c| c.size_bytes);
    let (start, next) = checkpoint
        .as_ref()
        .map_or((0, base), |c| (c.size_bytes, c.next_offset));
    let mut index = checkpoint.unwrap_or_else(|| SegmentIndex::new(base));
    let interval = config.index_interval_bytes;
    let scan = segment::scan_entries(&file, start, size, Some(next), |e| {
        index.on_append(
            e.header.base_offset,
            e.last_offset,
            e.entry_bytes,
            e.max_timestamp,
            interval,
        );
        if e.header.base_offset >= snapshot_offset {
            producers.record(&e.header, e.header.base_offset);
        }
        // Kafka's loader: a batch of a newer (defined) epoch starts that epoch.
        let epoch = e.header.partition_leader_epoch;
        if epoch >= 0 && epochs_seen.last().is_none_or(|&(last, _)| epoch > last) {
            epochs_seen.push((epoch, e.header.base_offset));
        }
        true
    })
    .await
    .map_err(|e| ctx("scanning", e))?;
    let end = scan.end;
    assert_eq!(end, index.size_bytes);
    assert!(end >= checkpointed_bytes);
    if size != segment::align_up(end)
        || !matches!(scan.invalid, None | Some(EntryError::BadMagic(0)))
    {
        warn!(dir = %dir.display(), base, valid_bytes = end, file_bytes = size, invalid = ?scan.invalid, "truncating torn segment tail");
    }
    // Always rewrite the tail page: this zeroes anything after the last valid entry.
    let tail = segment::read_tail_page(&file, end)
        .await
        .map_err(|e| ctx("reading tail of", e))?;
    dma.truncate(segment::align_up(end))
        .await
        .map_err(|e| ctx("truncating", e.into()))?;
    let rewrite = !tail.is_empty();
    let mut writer = TailWriter::new(dma.clone(), end, tail.clone());
    if rewrite {
        writer
            .rewrite_tail()
            .await
            .map_err(|e| ctx("zeroing tail of", e))?;
    }
    dma.fdatasync()
        .await
        .map_err(|e| ctx("fdatasync of", e.into()))?;
    // The scan's windows may hold the bytes after `end` that were just zeroed.
    file.drop_read_ahead();
    // The append clock is not stored: a recovered non-empty segment counts from now.
    let first_append_ms = (end > 0).then(now_ms);
    let seg = Segment {
        index,
        file: Some(file),
        written_bytes: end,
        first_append_ms,
        last_used_ms: std::cell::Cell::new(now_ms()),
    };
    Ok((seg, dma, tail, checkpointed_bytes))
}

/// The active segment's index checkpoint, if it can be trusted: it matches the segment, lies
/// inside the file, and the producer snapshot covers it (both are written after an fdatasync
/// of the data they cover, snapshot first).
async fn load_checkpoint(
    dir: &Path,
    file: &SegmentFile,
    base: i64,
    file_bytes: u64,
    snapshot_offset: i64,
) -> Result<Option<SegmentIndex>, StorageError> {
    let stored = segment::read_small_file(&dir.join(segment::file_name(base, "index")))
        .await
        .map_err(|e| StorageError::new(dir, format!("reading index checkpoint of {base}"), e))?;
    let trusted = stored.and_then(|b| SegmentIndex::decode(&b)).filter(|i| {
        i.base_offset == base
            && i.size_bytes > 0
            && i.size_bytes <= file_bytes
            && snapshot_offset >= i.next_offset
    });
    let Some(index) = trusted else {
        return Ok(None);
    };
    // Verify the entries from the last index point to the checkpoint's end (at most about one
    // index interval): damage near the end means the checkpoint is not used.
    let last = index
        .entries
        .last()
        .copied()
        .expect("a non-empty index has points");
    let check = segment::scan_entries(
        file,
        last.position,
        index.size_bytes,
        Some(last.offset),
        |_| true,
    )
    .await
    .map_err(|e| StorageError::new(dir, format!("verifying index checkpoint of {base}"), e))?;
    if check.invalid.is_some()
        || check.end != index.size_bytes
        || check.next_offset != index.next_offset
    {
        warn!(dir = %dir.display(), base, invalid = ?check.invalid, "active index checkpoint does not match the segment; scanning it all");
        return Ok(None);
    }
    let trusted = Some(index);
    if let Some(i) = &trusted {
        info!(dir = %dir.display(), base, checkpoint_bytes = i.size_bytes, file_bytes, "recovering the active segment from its index checkpoint");
    }
    Ok(trusted)
}
