//! Kafka's size-prefixed frames.

use bytes::{Bytes, BytesMut};
use futures::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};
use latency::{ConnectionStage, Traced};
use std::fmt;
use std::time::Instant;

/// Why a frame could not be read; every variant closes the connection, as Kafka does.
#[derive(Debug)]
pub enum FrameError {
    /// The peer closed the connection in the middle of a frame.
    Truncated,
    /// The size prefix is zero or negative.
    InvalidSize(i32),
    /// The size prefix exceeds `socket.request.max.bytes`.
    TooLarge {
        size: i32,
        frame_bytes_max: usize,
    },
    Io(std::io::Error),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Truncated => write!(f, "connection closed in the middle of a frame"),
            FrameError::InvalidSize(size) => write!(f, "invalid frame size {size}"),
            FrameError::TooLarge {
                size,
                frame_bytes_max,
            } => write!(
                f,
                "frame of {size} bytes exceeds socket.request.max.bytes={frame_bytes_max}"
            ),
            FrameError::Io(e) => write!(f, "socket error: {e}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Reads one request frame from a buffered reader. `Ok(None)` is a clean end of stream
/// between frames. The time
/// from its size prefix to its last byte is the `frame_read` stage of a Produce or Fetch.
pub async fn read_frame<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    frame_bytes_max: usize,
) -> Result<Option<Bytes>, FrameError> {
    let mut size_bytes = [0u8; 4];
    let mut filled = 0;
    while filled < 4 {
        let n = reader
            .read(&mut size_bytes[filled..])
            .await
            .map_err(FrameError::Io)?;
        if n == 0 {
            return if filled == 0 {
                Ok(None)
            } else {
                Err(FrameError::Truncated)
            };
        }
        filled += n;
    }
    let size = i32::from_be_bytes(size_bytes);
    if size <= 0 {
        return Err(FrameError::InvalidSize(size));
    }
    if size as usize > frame_bytes_max {
        return Err(FrameError::TooLarge {
            size,
            frame_bytes_max,
        });
    }
    let started = Instant::now();
    let size = size as usize;
    let body = if size <= COPIED_FRAME_BYTES_MAX {
        copy_body(reader, size).await?
    } else {
        read_body(reader, size).await?
    };
    if let Some(traced) = Traced::of_frame(&body) {
        traced.record_since(ConnectionStage::FrameRead, started);
    }
    Ok(Some(body.freeze()))
}

/// The size of a connection's read buffer (`BufReader` over the socket).
pub(crate) const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Frames up to this size are copied out of the reader's buffer: one copy, nothing zeroed.
/// Larger ones are read straight into a zeroed body, which the buffered reader fills with
/// one read once its buffer is drained.
const COPIED_FRAME_BYTES_MAX: usize = READ_BUFFER_BYTES;

async fn copy_body<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    size: usize,
) -> Result<BytesMut, FrameError> {
    let mut body = BytesMut::with_capacity(size);
    while body.len() < size {
        let buffered = reader.fill_buf().await.map_err(FrameError::Io)?;
        if buffered.is_empty() {
            return Err(FrameError::Truncated);
        }
        let n = buffered.len().min(size - body.len());
        body.extend_from_slice(&buffered[..n]);
        reader.consume_unpin(n);
    }
    Ok(body)
}

async fn read_body<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    size: usize,
) -> Result<BytesMut, FrameError> {
    let mut body = BytesMut::zeroed(size);
    reader.read_exact(&mut body).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            FrameError::Truncated
        } else {
            FrameError::Io(e)
        }
    })?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(input: &[u8], max: usize) -> Result<Option<Bytes>, FrameError> {
        futures::executor::block_on(read_frame(&mut &input[..], max))
    }

    #[test]
    fn reads_a_frame_and_clean_eof() {
        let mut input = 3i32.to_be_bytes().to_vec();
        input.extend_from_slice(b"abc");
        assert_eq!(
            read(&input, 10).unwrap().unwrap(),
            Bytes::from_static(b"abc")
        );
        assert!(read(&[], 10).unwrap().is_none());
    }

    #[test]
    fn rejects_bad_sizes() {
        assert!(matches!(
            read(&(-1i32).to_be_bytes(), 10),
            Err(FrameError::InvalidSize(-1))
        ));
        assert!(matches!(
            read(&0i32.to_be_bytes(), 10),
            Err(FrameError::InvalidSize(0))
        ));
        assert!(matches!(
            read(&11i32.to_be_bytes(), 10),
            Err(FrameError::TooLarge { size: 11, .. })
        ));
    }

    #[test]
    fn small_and_large_frames_arrive_whole_through_a_small_buffer() {
        for size in [
            1,
            100,
            COPIED_FRAME_BYTES_MAX,
            COPIED_FRAME_BYTES_MAX + 1,
            300_000,
        ] {
            let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let mut input = (size as i32).to_be_bytes().to_vec();
            input.extend_from_slice(&body);
            input.extend_from_slice(&1i32.to_be_bytes());
            input.push(7);
            let mut reader = futures::io::BufReader::with_capacity(1000, &input[..]);
            let read = |r: &mut futures::io::BufReader<&[u8]>| {
                futures::executor::block_on(read_frame(r, 1 << 20))
            };
            assert_eq!(read(&mut reader).unwrap().unwrap(), body, "size {size}");
            assert_eq!(
                read(&mut reader).unwrap().unwrap(),
                Bytes::from_static(&[7])
            );
            assert!(read(&mut reader).unwrap().is_none());
        }
    }

    #[test]
    fn truncated_frames_are_errors() {
        assert!(matches!(read(&[0, 0], 10), Err(FrameError::Truncated)));
        let mut input = 5i32.to_be_bytes().to_vec();
        input.extend_from_slice(b"ab");
        assert!(matches!(read(&input, 10), Err(FrameError::Truncated)));
        let mut large = 100_000i32.to_be_bytes().to_vec();
        large.extend_from_slice(&[1; 1000]);
        assert!(matches!(read(&large, 1 << 20), Err(FrameError::Truncated)));
    }
}
