//! One client connection: a reader that turns frames into handler tasks, and a writer that
//! sends their replies in request order.

use crate::frame::{read_frame, FrameError, READ_BUFFER_BYTES};
use crate::outbox::Outbox;
use bytes::Bytes;
use futures::future::{poll_immediate, select, Either, LocalBoxFuture};
use futures::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use glommio::channels::local_channel::{self, LocalReceiver};
use glommio::net::TcpStream;
use glommio::sync::{Semaphore, StaticPermit};
use latency::{ConnectionStage, Traced};
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::Instant;
use tracing::debug;

/// What a handler answers to one request frame.
pub enum Reply {
    /// A complete response frame, size prefix included.
    Frame(Bytes),
    /// A complete response frame in pieces, size prefix in the first: sent back to back in
    /// one vectored write, never joined (a Fetch answer's record batches stay slices of the
    /// buffers they were read into).
    Segments(Vec<Bytes>),
    /// The request needs no response (Produce with acks=0).
    NoResponse,
    /// The request was malformed: close the connection, as Kafka does.
    Close,
    /// A complete response frame, size prefix included, after which the connection closes
    /// (a failed SASL authentication: the client reads why, then the connection ends).
    Last(Bytes),
}

/// Serves the request frames of connections.
pub trait RequestHandler {
    /// Starts serving one request; the returned future runs concurrently with later requests
    /// of the same connection, and its reply is sent in request order.
    fn handle(&self, frame: Bytes) -> LocalBoxFuture<'static, Reply>;
}

/// Per-connection bounds.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// `socket.request.max.bytes`: larger frames close the connection.
    pub frame_bytes_max: usize,
    /// Requests read ahead of their replies (Kafka's `queued.max.requests` per connection);
    /// at the bound the reader waits, which back-pressures the client through TCP.
    pub in_flight_max: usize,
}

/// The bytes of request frames that the connections of one shard hold between reading a
/// frame and sending its reply (the shard's part of Kafka's node-wide
/// `queued.max.request.bytes`). A reader takes a frame's bytes before it hands the frame to a
/// handler and waits, in arrival order with the shard's other readers, while they are taken;
/// the bytes come back when the reply is sent or the connection ends. Requests held back by
/// the broker (a full write backlog) then stop reading on every connection of the shard
/// instead of piling up; one frame larger than the bound still goes when nothing else is held.
#[derive(Clone)]
pub struct RequestMemory {
    bytes: Rc<Semaphore>,
    bound: usize,
}

impl RequestMemory {
    pub fn new(bound: usize) -> RequestMemory {
        let bound = bound.max(1);
        RequestMemory {
            bytes: Rc::new(Semaphore::new(bound as u64)),
            bound,
        }
    }

    /// Bytes held now.
    pub fn held(&self) -> usize {
        self.bound - self.bytes.available() as usize
    }

    /// Waits for a frame's bytes (a frame over the bound takes all of it).
    async fn take(&self, frame_bytes: usize) -> StaticPermit {
        let units = frame_bytes.clamp(1, self.bound) as u64;
        self.bytes
            .acquire_static_permit(units)
            .await
            .expect("request memory is never closed")
    }
}

/// Serves one plaintext connection until the peer closes it, sends a bad frame, or a handler
/// asks to close it. Replies go out with vectored `sendmsg` on the socket itself.
pub async fn serve<H: RequestHandler>(
    stream: TcpStream,
    handler: H,
    limits: ConnectionLimits,
    memory: RequestMemory,
) {
    let peer = stream.peer_addr().ok();
    if let Err(e) = stream.set_nodelay(true) {
        debug!(?peer, "set_nodelay failed: {e}");
    }
    // Valid while either half lives; the writer task holds the write half.
    let fd = stream.as_raw_fd();
    let (reader, writer) = stream.split();
    let sink = SocketSink { fd, writer };
    serve_halves(peer, reader, sink, handler, limits, memory).await
}

/// Serves one connection after its TLS handshake, as [`serve`] does a plaintext one; replies
/// are encrypted by rustls (each segment written to the TLS stream, which takes it without a
/// copy into a joined buffer) and flushed once the outbox is empty.
pub async fn serve_tls<H: RequestHandler>(
    connection: crate::tls::TlsConnection,
    handler: H,
    limits: ConnectionLimits,
    memory: RequestMemory,
) {
    let peer = connection.stream.get_ref().0.peer_addr().ok();
    let (reader, writer) = connection.stream.split();
    serve_halves(peer, reader, StreamSink { writer }, handler, limits, memory).await
}

/// Where a connection's replies are written.
trait ReplySink {
    /// Sends everything the outbox holds.
    async fn send(&mut self, outbox: &mut Outbox) -> std::io::Result<()>;
    async fn close(&mut self);
}

/// A plaintext socket: vectored `sendmsg` on its descriptor, the runtime's write to wait.
struct SocketSink<W> {
    fd: RawFd,
    writer: W,
}

impl<W: futures::io::AsyncWrite + Unpin> ReplySink for SocketSink<W> {
    async fn send(&mut self, outbox: &mut Outbox) -> std::io::Result<()> {
        outbox.send_all(self.fd, &mut self.writer).await
    }

    async fn close(&mut self) {
        let _ = self.writer.close().await;
    }
}

/// A stream that transforms what it is given (TLS): written segment by segment, then flushed.
struct StreamSink<W> {
    writer: W,
}

impl<W: futures::io::AsyncWrite + Unpin> ReplySink for StreamSink<W> {
    async fn send(&mut self, outbox: &mut Outbox) -> std::io::Result<()> {
        outbox.write_all_to(&mut self.writer).await?;
        self.writer.flush().await
    }

    async fn close(&mut self) {
        let _ = self.writer.close().await;
    }
}

async fn serve_halves<
    H: RequestHandler,
    R: futures::io::AsyncRead + Unpin,
    S: ReplySink + 'static,
>(
    peer: Option<std::net::SocketAddr>,
    reader: R,
    sink: S,
    handler: H,
    limits: ConnectionLimits,
    memory: RequestMemory,
) {
    let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, reader);
    let in_flight_max = limits.in_flight_max.max(1);
    // A slot per request read and not yet answered: the reader waits for one before it reads
    // the next frame, so at most `in_flight_max` requests are in flight.
    let slots = Rc::new(Semaphore::new(in_flight_max as u64));
    let (replies_tx, replies_rx) = local_channel::new_bounded(in_flight_max);
    let (closed_tx, mut closed_rx) = futures::channel::oneshot::channel::<()>();
    let writer_task = glommio::spawn_local(write_replies(sink, replies_rx, closed_tx));
    loop {
        let slot = match select(Box::pin(slots.acquire_static_permit(1)), &mut closed_rx).await {
            Either::Left((slot, _)) => slot.expect("request slots are never closed"),
            Either::Right(_) => break,
        };
        let frame = match select(
            Box::pin(read_frame(&mut reader, limits.frame_bytes_max)),
            &mut closed_rx,
        )
        .await
        {
            Either::Left((frame, _)) => frame,
            Either::Right(_) => break,
        };
        match frame {
            Ok(Some(frame)) => {
                let read_at = Instant::now();
                let permit = match select(Box::pin(memory.take(frame.len())), &mut closed_rx).await
                {
                    Either::Left((permit, _)) => permit,
                    Either::Right(_) => break,
                };
                let traced = Traced::of_frame(&frame);
                let admitted = traced.map(|t| t.record_since(ConnectionStage::Admission, read_at));
                let task = glommio::spawn_local(timed(handler.handle(frame), traced, admitted));
                if replies_tx
                    .send((
                        task,
                        Held {
                            _bytes: permit,
                            _slot: slot,
                        },
                    ))
                    .await
                    .is_err()
                {
                    break;
                }
            }
            Ok(None) => break,
            Err(FrameError::Io(e)) => {
                debug!(?peer, "connection read error: {e}");
                break;
            }
            Err(e) => {
                debug!(?peer, "closing connection: {e}");
                break;
            }
        }
    }
    drop(replies_tx);
    writer_task.await;
}

/// A request's handler, timed (the `handler` stage) when its API is traced: the reply and
/// when it was ready.
async fn timed(
    reply: LocalBoxFuture<'static, Reply>,
    traced: Option<Traced>,
    admitted: Option<Instant>,
) -> TimedReply {
    let reply = reply.await;
    let done = traced
        .zip(admitted)
        .map(|(t, start)| (t, t.record_since(ConnectionStage::Handler, start)));
    (reply, done)
}

/// What a request holds until its reply is queued: its frame's bytes of the shard's
/// `RequestMemory` and its connection's request slot.
struct Held {
    _bytes: StaticPermit,
    _slot: StaticPermit,
}

/// A handler's reply and, for a traced API, when it was ready.
type TimedReply = (Reply, Option<(Traced, Instant)>);

/// The traced replies in the outbox: when the writer took each (the `reply_order` stage
/// ends there), until the write that sends them completes (`reply_written`).
#[derive(Default)]
struct UnsentTimes {
    taken: Vec<(Traced, Instant)>,
}

impl UnsentTimes {
    /// The writer took a reply that was ready at `done` (None: not traced).
    fn taken(&mut self, done: Option<(Traced, Instant)>) {
        if let Some((traced, done)) = done {
            let now = traced.record_since(ConnectionStage::ReplyOrder, done);
            self.taken.push((traced, now));
        }
    }

    /// Everything in the outbox was written.
    fn sent(&mut self) {
        if self.taken.is_empty() {
            return;
        }
        let now = Instant::now();
        for (traced, taken) in self.taken.drain(..) {
            let stage = traced.stage(ConnectionStage::ReplyWritten);
            latency::record(stage, now.saturating_duration_since(taken));
        }
    }
}

/// Sends the replies in request order: segments queue in an [`Outbox`] while further replies
/// are ready (so pipelined replies share a syscall, up to its bounds) and go out in vectored
/// writes, without being copied into a write buffer. What is queued is sent before the writer
/// waits for a handler that has not finished: a ready reply never waits for a later request.
/// A request's bytes go back to the shard's
/// [`RequestMemory`] when its reply is queued, or when the connection ends (the permits still
/// in the channel drop with it).
async fn write_replies<S: ReplySink>(
    mut sink: S,
    replies: LocalReceiver<(glommio::Task<TimedReply>, Held)>,
    closed: futures::channel::oneshot::Sender<()>,
) {
    let mut outbox = Outbox::default();
    let mut unsent = UnsentTimes::default();
    loop {
        let next = match poll_immediate(replies.recv()).await {
            Some(next) => next,
            None => {
                if sink.send(&mut outbox).await.is_err() {
                    break;
                }
                unsent.sent();
                replies.recv().await
            }
        };
        let Some((mut task, permit)) = next else {
            break;
        };
        // Replies already queued go out before waiting for a later request's handler: a
        // ready reply never waits for one that is not (an acks=all produce behind it).
        let (reply, done) = match poll_immediate(&mut task).await {
            Some(ready) => ready,
            None => {
                if !outbox.is_empty() {
                    if sink.send(&mut outbox).await.is_err() {
                        break;
                    }
                    unsent.sent();
                }
                task.await
            }
        };
        drop(permit);
        unsent.taken(done);
        match reply {
            Reply::Frame(frame) => outbox.push(frame),
            Reply::Segments(segments) => segments.into_iter().for_each(|s| outbox.push(s)),
            Reply::NoResponse => {}
            Reply::Close => break,
            Reply::Last(frame) => {
                outbox.push(frame);
                break;
            }
        }
        if outbox.is_full() {
            if sink.send(&mut outbox).await.is_err() {
                break;
            }
            unsent.sent();
        }
    }
    let _ = sink.send(&mut outbox).await;
    sink.close().await;
    // A reader waiting for request memory stops too.
    let _ = closed.send(());
}
