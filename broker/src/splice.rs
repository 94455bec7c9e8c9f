//! Fetch answers encoded without copying their records: kafka-protocol's own encoder writes
//! every field and length prefix, into a buffer that, when handed the very bytes of a
//! partition's `records`, ends the current piece and keeps the records `Bytes` itself as the
//! next one. The frame is then those pieces, sent back to back by a vectored write
//! (`net::Reply::Segments`): the batches are copied once on their way to the socket (by the
//! log read, into `ReadBatches`), not again into the frame.

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, FetchResponse, ResponseHeader};
use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::Encodable;
use std::ops::Range;

/// Encodes a Fetch response frame (size prefix included) as pieces: the encoded fields, and
/// each non-empty `records` as a clone of the answer's own `Bytes` (no copy). Joined, the
/// pieces are byte for byte `protocol::encode_response` of the same answer.
pub fn encode_fetch_response(
    version: i16,
    correlation_id: i32,
    body: &FetchResponse,
) -> Result<Vec<Bytes>, String> {
    let header_version = ApiKey::Fetch.response_header_version(version);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let records: Vec<Bytes> = body
        .responses
        .iter()
        .flat_map(|t| t.partitions.iter())
        .filter_map(|p| p.records.clone())
        .filter(|r| !r.is_empty())
        .collect();
    let records_bytes: usize = records.iter().map(Bytes::len).sum();
    let size = header
        .compute_size(header_version)
        .and_then(|h| Ok(h + body.compute_size(version)?))
        .map_err(|e| format!("Fetch v{version} response size: {e}"))?;
    let frame_size = i32::try_from(size)
        .map_err(|_| format!("Fetch v{version} response of {size} bytes is too large"))?;
    let mut buf = SpliceBuf::new(&records, 4 + size - records_bytes);
    buf.put_i32(frame_size);
    header
        .encode(&mut buf, header_version)
        .map_err(|e| format!("Fetch v{version} response header: {e}"))?;
    body.encode(&mut buf, version)
        .map_err(|e| format!("Fetch v{version} response: {e}"))?;
    buf.finish(4 + size)
        .map_err(|e| format!("Fetch v{version} response: {e}"))
}

/// A `ByteBufMut` that writes into `head` except for the slices in `splices` (in encoding
/// order), which become pieces of their own.
struct SpliceBuf<'a> {
    head: BytesMut,
    pieces: Vec<Bytes>,
    /// Bytes in `pieces`: `head` starts at this offset of the frame.
    pieces_bytes: usize,
    splices: &'a [Bytes],
    spliced: usize,
}

impl<'a> SpliceBuf<'a> {
    fn new(splices: &'a [Bytes], head_bytes: usize) -> Self {
        SpliceBuf {
            head: BytesMut::with_capacity(head_bytes),
            pieces: Vec::with_capacity(2 * splices.len() + 1),
            pieces_bytes: 0,
            splices,
            spliced: 0,
        }
    }

    fn end_piece(&mut self) {
        if !self.head.is_empty() {
            self.pieces_bytes += self.head.len();
            self.pieces.push(self.head.split().freeze());
        }
    }

    /// The pieces, checked: every splice used, `frame_bytes` in all.
    fn finish(mut self, frame_bytes: usize) -> Result<Vec<Bytes>, String> {
        self.end_piece();
        if self.spliced != self.splices.len() {
            return Err(format!(
                "{} of {} records spliced: the encoder no longer writes them whole",
                self.spliced,
                self.splices.len()
            ));
        }
        if self.pieces_bytes != frame_bytes {
            return Err(format!(
                "encoded {} bytes, computed {frame_bytes}",
                self.pieces_bytes
            ));
        }
        Ok(self.pieces)
    }

    /// Where `head` starts in the frame, for the trait's offsets.
    fn head_range(&self, r: Range<usize>) -> Range<usize> {
        assert!(
            r.start >= self.pieces_bytes,
            "offset {} is in a finished piece (before {})",
            r.start,
            self.pieces_bytes
        );
        r.start - self.pieces_bytes..r.end - self.pieces_bytes
    }
}

// SAFETY: every method delegates to `head`, a `BytesMut`, whose contract it keeps.
unsafe impl BufMut for SpliceBuf<'_> {
    fn remaining_mut(&self) -> usize {
        self.head.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller initialised `cnt` bytes of `head.chunk_mut()`.
        unsafe { self.head.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.head.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        if let Some(next) = self.splices.get(self.spliced) {
            // The encoder hands over the records' own bytes: the same address and length.
            if std::ptr::eq(src.as_ptr(), next.as_ptr()) && src.len() == next.len() {
                self.end_piece();
                self.pieces_bytes += next.len();
                self.pieces.push(next.clone());
                self.spliced += 1;
                return;
            }
        }
        self.head.extend_from_slice(src);
    }
}

impl ByteBufMut for SpliceBuf<'_> {
    fn offset(&self) -> usize {
        self.pieces_bytes + self.head.len()
    }

    fn seek(&mut self, offset: usize) {
        let r = self.head_range(offset..offset);
        self.head.resize(r.start, 0);
    }

    fn range(&mut self, r: Range<usize>) -> &mut [u8] {
        let r = self.head_range(r);
        &mut self.head[r]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::encode_response;
    use kafka_protocol::messages::fetch_response::{
        AbortedTransaction, EpochEndOffset, FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint,
        PartitionData,
    };
    use kafka_protocol::messages::{BrokerId, ProducerId, ResponseKind, TopicName};
    use kafka_protocol::protocol::StrBytes;

    fn records(len: usize, seed: u8) -> Option<Bytes> {
        Some(Bytes::from(
            (0..len)
                .map(|i| (i as u8).wrapping_mul(31) ^ seed)
                .collect::<Vec<u8>>(),
        ))
    }

    fn partition(index: i32, records: Option<Bytes>, version: i16) -> PartitionData {
        let data = PartitionData::default()
            .with_partition_index(index)
            .with_high_watermark(1000 + index as i64)
            .with_last_stable_offset(999)
            .with_records(records);
        if version >= 5 {
            return data.with_log_start_offset(3);
        }
        data
    }

    fn topic(name: &str, partitions: Vec<PartitionData>, version: i16) -> FetchableTopicResponse {
        let t = FetchableTopicResponse::default().with_partitions(partitions);
        if version >= 13 {
            let mut id = [0u8; 16];
            id[..name.len()].copy_from_slice(name.as_bytes());
            return t.with_topic_id(uuid::Uuid::from_bytes(id));
        }
        t.with_topic(TopicName(StrBytes::from_string(name.to_string())))
    }

    /// (name, response) at `version`: empty, one partition, several topics and partitions
    /// with records of every length-prefix width, null and empty records, errors, aborted
    /// transactions, and the fields each version adds (tagged ones in the flexible versions).
    fn cases(version: i16) -> Vec<(&'static str, FetchResponse)> {
        let v = version;
        let shared = records(50, 4);
        let mut multi = FetchResponse::default()
            .with_throttle_time_ms(7)
            .with_responses(vec![
                topic(
                    "orders",
                    vec![
                        partition(0, records(61, 1), v),
                        partition(1, records(200, 2), v),
                        partition(2, Some(Bytes::new()), v),
                        partition(3, None, v).with_error_code(1),
                    ],
                    v,
                ),
                topic("t", vec![partition(0, records(20_000, 3), v)], v),
                topic("idle", vec![], v),
            ]);
        if v >= 7 {
            multi.session_id = 42;
        }
        let mut extras = multi.clone();
        let p = &mut extras.responses[0].partitions[1];
        p.aborted_transactions = Some(vec![AbortedTransaction::default()
            .with_producer_id(ProducerId(9))
            .with_first_offset(4)]);
        if v >= 11 {
            p.preferred_read_replica = BrokerId(2);
        }
        if v >= 12 {
            p.diverging_epoch = EpochEndOffset::default().with_epoch(3).with_end_offset(77);
            p.current_leader = LeaderIdAndEpoch::default()
                .with_leader_id(BrokerId(1))
                .with_leader_epoch(5);
        }
        if v >= 16 {
            extras.node_endpoints = vec![NodeEndpoint::default()
                .with_node_id(BrokerId(1))
                .with_host(StrBytes::from_static_str("127.0.0.1"))
                .with_port(9092)];
        }
        vec![
            ("empty", FetchResponse::default()),
            (
                "one partition",
                FetchResponse::default().with_responses(vec![topic(
                    "a",
                    vec![partition(0, records(100, 9), v)],
                    v,
                )]),
            ),
            (
                "same bytes twice",
                FetchResponse::default().with_responses(vec![topic(
                    "a",
                    vec![partition(0, shared.clone(), v), partition(1, shared, v)],
                    v,
                )]),
            ),
            ("multi", multi),
            ("extras", extras),
        ]
    }

    #[test]
    fn pieces_join_to_the_normal_encoding() {
        for version in 4i16..=18 {
            for (name, body) in cases(version) {
                let pieces = encode_fetch_response(version, 77, &body).unwrap();
                let joined: Vec<u8> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
                let normal =
                    encode_response(ApiKey::Fetch, version, 77, &ResponseKind::Fetch(body), 0)
                        .unwrap();
                assert_eq!(joined, &normal[..], "{name} v{version}");
            }
        }
    }

    #[test]
    fn records_are_pieces_of_their_own_not_copies() {
        for version in [4i16, 11, 12, 18] {
            for (name, body) in cases(version) {
                let pieces = encode_fetch_response(version, 1, &body).unwrap();
                let wanted: Vec<&Bytes> = body
                    .responses
                    .iter()
                    .flat_map(|t| t.partitions.iter())
                    .filter_map(|p| p.records.as_ref())
                    .filter(|r| !r.is_empty())
                    .collect();
                let spliced: Vec<&Bytes> = pieces
                    .iter()
                    .filter(|piece| wanted.iter().any(|r| r.as_ptr() == piece.as_ptr()))
                    .collect();
                assert_eq!(spliced.len(), wanted.len(), "{name} v{version}");
                // Encoded fields and records alternate: at most one field piece between.
                assert!(pieces.len() <= 2 * wanted.len() + 1, "{name} v{version}");
            }
        }
    }
}
