//! Replies made of many segments reach a slow reader whole and in request order: the
//! vectored sends resume inside a segment after a partial send and wait (through glommio)
//! while the socket buffer is full.

mod common;

use bytes::Bytes;
use futures::future::LocalBoxFuture;
use net::{ConnectionLimits, Reply, RequestHandler};
use std::io::{Read, Write};
use std::time::Duration;

/// Answers request `i` (its one-byte body) with a frame of `SEGMENTS` segments of varied
/// sizes, several MiB in all, so the socket buffer fills many times.
struct Segmented;

const SEGMENTS: usize = 300;

fn reply_body(i: u8) -> Vec<Bytes> {
    (0..SEGMENTS)
        .map(|s| {
            let len = 1 + (s * 7919) % 40_000;
            Bytes::from(vec![i.wrapping_add(s as u8); len])
        })
        .collect()
}

impl RequestHandler for Segmented {
    fn handle(&self, frame: Bytes) -> LocalBoxFuture<'static, Reply> {
        let i = frame[0];
        Box::pin(async move {
            let body = reply_body(i);
            let size: usize = body.iter().map(Bytes::len).sum();
            let mut segments = vec![Bytes::copy_from_slice(&(size as i32).to_be_bytes())];
            segments.extend(body);
            if i.is_multiple_of(2) {
                Reply::Segments(segments)
            } else {
                // Plain frames interleave with segmented ones.
                Reply::Frame(segments.concat().into())
            }
        })
    }
}

#[test]
fn segmented_replies_reach_a_slow_reader_whole_and_in_order() {
    let limits = ConnectionLimits {
        frame_bytes_max: 1 << 20,
        in_flight_max: 8,
    };
    let (addr, server) = common::serve_one(limits, || Segmented);
    let mut client = std::net::TcpStream::connect(addr).unwrap();
    let requests = 6u8;
    for i in 0..requests {
        client.write_all(&1i32.to_be_bytes()).unwrap();
        client.write_all(&[i]).unwrap();
    }
    // Let the server fill the socket buffers before reading anything.
    std::thread::sleep(Duration::from_millis(200));
    for i in 0..requests {
        let mut size = [0u8; 4];
        client.read_exact(&mut size).unwrap();
        let mut got = vec![0u8; i32::from_be_bytes(size) as usize];
        client.read_exact(&mut got).unwrap();
        assert!(got == reply_body(i).concat(), "reply {i} differs");
        if i == 0 {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    drop(client);
    server.join().unwrap();
}
