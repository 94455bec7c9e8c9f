//! The write backlog and its back-pressure. Bytes appended and not yet written stay in memory
//! (in write chunks the tail cache never drops before they are written), so a producer faster
//! than the disk would grow it without end. `append_with_room` holds such an append back until
//! the backlog has room for it within the tail cache's bound, in arrival order: the appends
//! held back go in the order they came, and a newcomer queues behind them. An empty backlog
//! takes an entry of any size, so a batch larger than the bound still goes.

use super::*;

impl Inner {
    /// Bytes appended and not yet written: the unwritten ends of the newest segments (a roll
    /// can leave a closed segment still being written behind an empty active one).
    fn unwritten_bytes(&self) -> u64 {
        let mut unwritten = 0;
        for s in self.segments.iter().rev() {
            unwritten += s.index.size_bytes - s.written_bytes;
            if s.written_bytes > 0 && s.written_bytes == s.index.size_bytes {
                break;
            }
        }
        unwritten
    }

    /// An entry of `entry_bytes` may be appended now. A failed or closing log lets it through
    /// for `append` to refuse.
    fn has_room(&self, entry_bytes: usize) -> bool {
        let unwritten = self.unwritten_bytes();
        unwritten == 0
            || unwritten + entry_bytes as u64 <= self.config.cache_bytes_max as u64
            || self.failed.is_some()
            || self.closing
    }
}

/// A place in the line of appends waiting for room; leaving it (dropped, or cancelled with
/// the request) lets the next one go.
struct Turn {
    shared: Rc<Shared>,
    id: u64,
}

impl Turn {
    fn join(shared: &Rc<Shared>) -> Turn {
        let mut inner = shared.inner.borrow_mut();
        let id = inner.next_turn;
        inner.next_turn += 1;
        inner.waiting_for_room.push_back(id);
        Turn {
            shared: shared.clone(),
            id,
        }
    }

    /// First in line, and the backlog has room for `entry_bytes`.
    fn may_go(&self, entry_bytes: usize) -> bool {
        let inner = self.shared.inner.borrow();
        inner.waiting_for_room.front() == Some(&self.id) && inner.has_room(entry_bytes)
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut inner = self.shared.inner.borrow_mut();
        if let Some(at) = inner.waiting_for_room.iter().position(|&id| id == self.id) {
            inner.waiting_for_room.remove(at);
        }
        drop(inner);
        self.shared.durable_event.notify(usize::MAX);
    }
}

impl PartitionLog {
    /// Appends like `append` once the write backlog has room for the batch (module docs);
    /// without a backlog it appends at once, without yielding.
    pub async fn append_with_room(
        &self,
        batch: &[u8],
        header: &BatchHeader,
    ) -> Result<AppendOutcome, AppendError> {
        let outcome = self.append_from_with_room(Origin::Leader, batch, header, &|| true);
        Ok(outcome.await?.expect("always allowed"))
    }

    /// Like `append_with_room`, but appends only if `allowed()` still holds when the batch's
    /// turn comes (checked right before the synchronous append, after any wait for room):
    /// `Ok(None)` when it no longer does, nothing appended. The replication layer passes
    /// "this replica still leads in the epoch the request was checked in".
    pub async fn append_with_room_if(
        &self,
        batch: &[u8],
        header: &BatchHeader,
        allowed: &dyn Fn() -> bool,
    ) -> Result<Option<AppendOutcome>, AppendError> {
        self.append_from_with_room(Origin::Leader, batch, header, allowed)
            .await
    }

    /// Appends like `append_replicated` once the write backlog has room for the batch, as
    /// `append_with_room` does (a follower's fetches are bounded the same way), if
    /// `allowed()` still holds then (`Ok(None)`: nothing appended; the replication layer
    /// passes "still following the leader the records came from").
    pub async fn append_replicated_with_room(
        &self,
        batch: &[u8],
        header: &BatchHeader,
        allowed: &dyn Fn() -> bool,
    ) -> Result<Option<AppendOutcome>, AppendError> {
        self.append_from_with_room(Origin::Replica, batch, header, allowed)
            .await
    }

    async fn append_from_with_room(
        &self,
        origin: Origin,
        batch: &[u8],
        header: &BatchHeader,
        allowed: &dyn Fn() -> bool,
    ) -> Result<Option<AppendOutcome>, AppendError> {
        let append = |log: &PartitionLog| {
            if !allowed() {
                return Ok(None);
            }
            match origin {
                Origin::Leader => log.append(batch, header).map(Some),
                Origin::Replica => log.append_replicated(batch, header).map(Some),
            }
        };
        let entry_bytes = entry::entry_bytes(batch.len());
        {
            let inner = self.shared.inner.borrow();
            if inner.waiting_for_room.is_empty() && inner.has_room(entry_bytes) {
                drop(inner);
                return append(self);
            }
        }
        let turn = Turn::join(&self.shared);
        // The writer has work (the backlog), so written offsets advance and wake the line.
        self.shared.writer_wake.notify(1);
        loop {
            // Listening before the check: a write finishing in between still wakes it.
            let listener = self.shared.durable_event.listen();
            if turn.may_go(entry_bytes) {
                break;
            }
            listener.await;
        }
        let outcome = append(self);
        drop(turn);
        outcome
    }

    /// Bytes appended and not yet written (the write backlog `append_with_room` bounds).
    pub fn unwritten_bytes(&self) -> u64 {
        self.shared.inner.borrow().unwritten_bytes()
    }

    /// Appends waiting for room in the write backlog.
    pub fn appends_waiting_for_room(&self) -> usize {
        self.shared.inner.borrow().waiting_for_room.len()
    }

    /// Bytes of encoded entries queued for the writer task and not yet handed to the disk: the
    /// part of the write backlog not yet submitted.
    pub fn pending_write_bytes(&self) -> usize {
        let inner = self.shared.inner.borrow();
        inner
            .pending
            .iter()
            .map(|p| match p {
                Pending::Data(chunk) => (chunk.end() - chunk.file_pos) as usize,
                Pending::Roll { .. } => 0,
            })
            .sum()
    }
}
