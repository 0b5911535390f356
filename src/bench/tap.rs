//! A WebSocket tap for the latency figures: a TCP relay between a gateway and the emulator
//! that notes the instant each audio packet passes, without touching the gateway.
//!
//! Each direction is copied by a thread of its own with blocking reads and writes, so the
//! instants are taken right at the socket calls:
//! - [`Watch::FromGateway`]: the instant the packet's last byte was read from the gateway's
//!   connection, i.e. when the gateway's packet left its socket (plus a loopback hop of a
//!   few microseconds);
//! - [`Watch::ToGateway`]: the instant the packet's last byte was written into the gateway's
//!   connection, i.e. when the packet arrived at the gateway.

use super::rig::lock;
use crate::zello::protocol::Packet;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

/// Which direction's audio packets to note.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Watch {
    /// Packets the gateway sends.
    FromGateway,
    /// Packets the gateway receives.
    ToGateway,
}

/// One audio packet that went through.
#[derive(Debug, Clone)]
pub(crate) struct Passed {
    pub(crate) at: Instant,
    pub(crate) stream_id: u32,
    /// The Opus payload.
    pub(crate) data: Vec<u8>,
}

type Log = Arc<Mutex<Vec<Passed>>>;

/// A running tap.
pub(crate) struct Tap {
    addr: SocketAddr,
    passed: Log,
    stop: Arc<AtomicBool>,
    sockets: Arc<Mutex<Vec<TcpStream>>>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
    acceptor: Option<JoinHandle<()>>,
}

impl Tap {
    /// Listens on 127.0.0.1 with a free port and relays each connection to `upstream`.
    pub(crate) fn start(upstream: SocketAddr, watch: Watch) -> std::io::Result<Tap> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let addr = listener.local_addr()?;
        let passed: Log = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let sockets: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let threads: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let acceptor = {
            let (passed, stop, sockets, threads) = (
                passed.clone(),
                stop.clone(),
                sockets.clone(),
                threads.clone(),
            );
            std::thread::Builder::new()
                .name("bench-tap".into())
                .spawn(move || {
                    for client in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(client) = client else { continue };
                        let Ok(server) = TcpStream::connect(upstream) else {
                            let _ = client.shutdown(Shutdown::Both);
                            continue;
                        };
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) = (
                            client.try_clone(),
                            server.try_clone(),
                            client.try_clone(),
                            server.try_clone(),
                        ) else {
                            continue;
                        };
                        lock(&sockets).extend([c3, s3]);
                        let (up, down) = match watch {
                            Watch::FromGateway => (Some((Stamp::Read, passed.clone())), None),
                            Watch::ToGateway => (None, Some((Stamp::Written, passed.clone()))),
                        };
                        for (from, to, note) in [(client, server, up), (s2, c2, down)] {
                            if let Ok(t) = std::thread::Builder::new()
                                .name("bench-tap-pump".into())
                                .spawn(move || pump(from, to, note))
                            {
                                lock(&threads).push(t);
                            }
                        }
                    }
                })?
        };
        Ok(Tap {
            addr,
            passed,
            stop,
            sockets,
            threads,
            acceptor: Some(acceptor),
        })
    }

    /// The URL a gateway connects to instead of the emulator's.
    pub(crate) fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// The audio packets noted so far, in order.
    pub(crate) fn passed(&self) -> Vec<Passed> {
        lock(&self.passed).clone()
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the acceptor up so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
        for s in lock(&self.sockets).drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        let threads: Vec<JoinHandle<()>> = lock(&self.threads).drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
    }
}

/// When a packet counts as passed.
#[derive(Debug, Clone, Copy)]
enum Stamp {
    /// When the read that completed it returned.
    Read,
    /// When the write that completed it returned.
    Written,
}

/// Copies one direction; notes the audio packets in it if asked to.
fn pump(mut from: TcpStream, mut to: TcpStream, note: Option<(Stamp, Log)>) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut frames = FrameReader::default();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let read_at = Instant::now();
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        let written_at = Instant::now();
        if let Some((stamp, log)) = &note {
            let at = match stamp {
                Stamp::Read => read_at,
                Stamp::Written => written_at,
            };
            frames.feed(&buf[..n], |stream_id, data| {
                lock(log).push(Passed {
                    at,
                    stream_id,
                    data: data.to_vec(),
                });
            });
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Reads WebSocket frames out of one direction of a connection: skips the HTTP upgrade,
/// then hands over the Channel API audio packets of binary frames (unmasked).
#[derive(Debug, Default)]
pub(crate) struct FrameReader {
    upgraded: bool,
    /// A frame header made no sense: stop reading (the relay goes on regardless).
    lost: bool,
    buf: Vec<u8>,
}

impl FrameReader {
    /// Feeds bytes as they come; calls `on_audio(stream_id, opus_payload)` for each audio
    /// packet completed by them.
    pub(crate) fn feed(&mut self, bytes: &[u8], mut on_audio: impl FnMut(u32, &[u8])) {
        if self.lost {
            return;
        }
        self.buf.extend_from_slice(bytes);
        if !self.upgraded {
            let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                return;
            };
            self.buf.drain(..end + 4);
            self.upgraded = true;
        }
        let mut start = 0;
        while let Some((header, len, mask)) = frame_header(&self.buf[start..]) {
            let Some(total) = header.checked_add(len) else {
                self.lost = true;
                break;
            };
            if self.buf.len() - start < total {
                break;
            }
            let opcode = self.buf[start] & 0x0f;
            if opcode == 0x2 {
                let mut payload = self.buf[start + header..start + total].to_vec();
                if let Some(key) = mask {
                    for (i, b) in payload.iter_mut().enumerate() {
                        *b ^= key[i % 4];
                    }
                }
                if let Ok(Packet::Audio {
                    stream_id, data, ..
                }) = Packet::parse(&payload)
                {
                    on_audio(stream_id, data);
                }
            }
            start += total;
        }
        self.buf.drain(..start);
    }
}

/// A frame header at the start of `b`: (header length, payload length, masking key), or
/// `None` if `b` does not hold the whole header yet.
fn frame_header(b: &[u8]) -> Option<(usize, usize, Option<[u8; 4]>)> {
    let second = *b.get(1)?;
    let (len, mut at) = match second & 0x7f {
        126 => (
            usize::from(u16::from_be_bytes(b.get(2..4)?.try_into().ok()?)),
            4,
        ),
        127 => {
            let n = u64::from_be_bytes(b.get(2..10)?.try_into().ok()?);
            (usize::try_from(n).unwrap_or(usize::MAX), 10)
        }
        n => (usize::from(n), 2),
    };
    let mask = if second & 0x80 != 0 {
        let k = b.get(at..at + 4)?;
        at += 4;
        Some([k[0], k[1], k[2], k[3]])
    } else {
        None
    };
    Some((at, len, mask))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zello::protocol::audio_packet;

    fn frame(payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut f = vec![0x82];
        let m = if mask.is_some() { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => f.push(m | n as u8),
            n if n < 65536 => {
                f.push(m | 126);
                f.extend((n as u16).to_be_bytes());
            }
            n => {
                f.push(m | 127);
                f.extend((n as u64).to_be_bytes());
            }
        }
        match mask {
            Some(k) => {
                f.extend(k);
                f.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
            }
            None => f.extend(payload),
        }
        f
    }

    #[test]
    fn reads_audio_packets_masked_or_not_split_anywhere() {
        let mut wire = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n".to_vec();
        wire.extend(frame(&audio_packet(7, &[1, 2, 3]), Some([9, 8, 7, 6])));
        // A text frame between them is skipped.
        wire.extend([0x81, 2, b'h', b'i']);
        wire.extend(frame(&audio_packet(7, &vec![5; 300]), None));
        wire.extend(frame(
            &audio_packet(8, &vec![6; 70_000]),
            Some([1, 2, 3, 4]),
        ));
        for split in [1, 3, 64, wire.len()] {
            let mut reader = FrameReader::default();
            let mut got = Vec::new();
            for chunk in wire.chunks(split) {
                reader.feed(chunk, |id, data| got.push((id, data.len(), data[0])));
            }
            assert_eq!(
                got,
                [(7, 3, 1), (7, 300, 5), (8, 70_000, 6)],
                "split {split}"
            );
        }
    }

    #[test]
    fn nonsense_lengths_stop_the_reader_without_panicking() {
        let mut reader = FrameReader::default();
        let mut wire = b"\r\n\r\n".to_vec();
        wire.extend([0x82, 0xff]);
        wire.extend(u64::MAX.to_be_bytes());
        wire.extend([0; 8]);
        let mut calls = 0;
        reader.feed(&wire, |_, _| calls += 1);
        reader.feed(&[0x82, 1, 1], |_, _| calls += 1);
        assert_eq!(calls, 0);
    }
}
