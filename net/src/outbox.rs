//! The replies of a connection waiting to be sent: `Bytes` segments in order, written with
//! vectored sends (`sendmsg` with one iovec per segment), so a reply made of pieces (a Fetch
//! answer's encoded fields and its record batches, still slices of the read buffers) reaches
//! the socket without being joined into one buffer first.
//!
//! glommio 0.9's `TcpStream` has no vectored write (its `AsyncWrite` keeps the default
//! `poll_write_vectored`, which sends only the first buffer), so the fast path calls
//! `sendmsg(MSG_DONTWAIT)` on the socket itself; when the socket is full, one ordinary
//! `write` through glommio waits for it to drain.

use bytes::{Buf, Bytes};
use futures::io::{AsyncWrite, AsyncWriteExt};
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::RawFd;

/// Segments queued before they are sent even if more replies are ready.
pub(crate) const OUTBOX_SEGMENTS_MAX: usize = 1024;
/// Bytes queued before they are sent even if more replies are ready.
pub(crate) const OUTBOX_BYTES_MAX: usize = 1 << 20;
/// Segments handed to one `sendmsg` (Linux's IOV_MAX is 1024).
const IOVECS_PER_SEND_MAX: usize = 64;

/// Segments to send, in order; none is empty.
#[derive(Default)]
pub(crate) struct Outbox {
    segments: VecDeque<Bytes>,
    bytes: usize,
}

impl Outbox {
    pub(crate) fn push(&mut self, segment: Bytes) {
        if segment.is_empty() {
            return;
        }
        self.bytes += segment.len();
        self.segments.push_back(segment);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// At a bound: send before queueing more.
    pub(crate) fn is_full(&self) -> bool {
        self.segments.len() >= OUTBOX_SEGMENTS_MAX || self.bytes >= OUTBOX_BYTES_MAX
    }

    /// Drops the first `sent` bytes (whole segments, then the front of a partial one).
    fn consume(&mut self, mut sent: usize) {
        assert!(sent <= self.bytes, "sent {sent} of {} queued", self.bytes);
        self.bytes -= sent;
        while sent > 0 {
            let front = self.segments.front_mut().expect("bytes are queued");
            if sent < front.len() {
                front.advance(sent);
                return;
            }
            sent -= front.len();
            self.segments.pop_front();
        }
    }

    /// Sends everything queued: vectored sends while the socket takes them, `writer` (the
    /// same socket through the runtime) to wait when it is full.
    pub(crate) async fn send_all<W: AsyncWrite + Unpin>(
        &mut self,
        fd: RawFd,
        writer: &mut W,
    ) -> io::Result<()> {
        while !self.is_empty() {
            let sent = match self.try_send(|iov| send_vectored(fd, iov)) {
                Ok(sent) => sent,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let front = self.segments.front().expect("not empty");
                    writer.write(front).await?
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if sent == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.consume(sent);
        }
        Ok(())
    }

    /// Writes everything queued to `writer`, segment by segment (a TLS stream: it encrypts
    /// each into its records; no joined copy is made here).
    pub(crate) async fn write_all_to<W: AsyncWrite + Unpin>(
        &mut self,
        writer: &mut W,
    ) -> io::Result<()> {
        while let Some(front) = self.segments.front() {
            let sent = writer.write(front).await?;
            if sent == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.consume(sent);
        }
        Ok(())
    }

    /// One send of up to `IOVECS_PER_SEND_MAX` segments through `send`; consumes nothing.
    fn try_send(
        &self,
        send: impl FnOnce(&[IoSlice<'_>]) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let mut iov = [IoSlice::new(&[]); IOVECS_PER_SEND_MAX];
        let mut n = 0;
        for (slot, segment) in iov.iter_mut().zip(&self.segments) {
            *slot = IoSlice::new(segment);
            n += 1;
        }
        send(&iov[..n])
    }
}

/// `sendmsg` without blocking (`WouldBlock` when the socket buffer is full) and without
/// SIGPIPE (a closed peer is an `EPIPE` error).
fn send_vectored(fd: RawFd, iov: &[IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: `IoSlice` is ABI-compatible with `iovec` on Unix, and the slices outlive the
    // call; the kernel only reads them. A zeroed msghdr is a valid "no address, no control".
    let sent = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = iov.len() as _;
        libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sent as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox(segments: &[&'static [u8]]) -> Outbox {
        let mut o = Outbox::default();
        for s in segments {
            o.push(Bytes::from_static(s));
        }
        o
    }

    fn queued(o: &Outbox) -> Vec<u8> {
        o.segments.iter().flat_map(|s| s.iter().copied()).collect()
    }

    #[test]
    fn partial_sends_resume_inside_a_segment() {
        let mut o = outbox(&[b"abc", b"", b"de", b"fghi"]);
        assert_eq!(o.segments.len(), 3, "empty segments are not queued");
        // (bytes the socket takes, what stays queued)
        let steps: &[(usize, &[u8])] = &[(2, b"cdefghi"), (1, b"defghi"), (3, b"ghi"), (3, b"")];
        for &(sent, left) in steps {
            let got = o.try_send(|iov| Ok(iov.iter().map(|s| s.len()).sum::<usize>().min(sent)));
            o.consume(got.unwrap());
            assert_eq!(queued(&o), left);
            assert_eq!(o.bytes, left.len());
        }
        assert!(o.is_empty());
    }

    #[test]
    fn one_send_takes_at_most_the_iovec_bound() {
        let mut o = Outbox::default();
        for _ in 0..IOVECS_PER_SEND_MAX + 5 {
            o.push(Bytes::from_static(b"x"));
        }
        let n = o.try_send(|iov| Ok(iov.len())).unwrap();
        assert_eq!(n, IOVECS_PER_SEND_MAX);
    }

    #[test]
    fn full_at_the_segment_or_byte_bound() {
        let mut o = Outbox::default();
        o.push(Bytes::from(vec![0u8; OUTBOX_BYTES_MAX - 1]));
        assert!(!o.is_full());
        o.push(Bytes::from_static(b"x"));
        assert!(o.is_full());
    }
}
