//! The relay over in-memory ends that are not TCP, as a TLS end is not:
//! how large its reads and writes are, and what it keeps afterwards; and
//! between TCP ends, spliced.
//!
//! Each test runs twice (`monoio::test_all`): `uring_NAME` on the io_uring
//! driver and `legacy_NAME` on epoll, the fallback a worker takes where
//! io_uring is unavailable (`driver = "epoll"`). Readiness, timeouts and
//! the non-blocking splice window differ between them.

use std::time::Duration;

use monoio::buf::Slice;
use monoio::io::AsyncWriteRent;
use monoio::net::TcpStream;

use super::*;

/// A sender in memory: serves `data` to reads and records their room.
#[derive(Default)]
struct Mem {
    data: Vec<u8>,
    pos: usize,
    /// Room each read offered (spare capacity, capped by `max`).
    reads: Vec<usize>,
}

impl Io for Mem {
    fn as_tcp(&mut self) -> Option<&mut TcpStream> {
        None
    }

    async fn read_vec(&mut self, mut buf: Vec<u8>, max: usize) -> (io::Result<usize>, Vec<u8>) {
        let room = (buf.capacity() - buf.len()).min(max);
        self.reads.push(room);
        let n = room.min(self.data.len() - self.pos);
        buf.extend_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        (Ok(n), buf)
    }

    async fn write_all_slice(&mut self, buf: Slice<Vec<u8>>) -> (io::Result<()>, Slice<Vec<u8>>) {
        (Err(io::ErrorKind::Unsupported.into()), buf)
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        Ok(())
    }
}

const T: Timeouts = Timeouts {
    src: Duration::from_secs(5),
    dst: Duration::from_secs(5),
};

fn body(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// `data` as plain chunks of 64 KiB (curl's size, roughly).
fn chunked(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in data.chunks(64 * 1024) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// Every read the relay made of `src` offered room within `room`.
fn assert_reads(src: &Mem, room: std::ops::RangeInclusive<usize>) {
    assert!(
        src.reads.iter().all(|r| room.contains(r)),
        "{room:?}: {:?}",
        src.reads
    );
}

/// A plain TCP receiver, as the registry is: a thread that accepts one
/// connection and reads it to the end.
fn sink() -> (std::net::SocketAddr, std::thread::JoinHandle<Vec<u8>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let reader = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut s, &mut got).expect("read");
        got
    });
    (addr, reader)
}

/// Relays a `framing` body from `src` to a new connection to `addr`, then
/// half-closes it. The receiver's EOF comes from that FIN: on io_uring a
/// dropped socket is closed by the ring, which a thread blocked on a join
/// would never drive.
async fn relay_to<S: Io>(
    src: &mut Buffered<S>,
    addr: std::net::SocketAddr,
    framing: Framing,
) -> Moved {
    let mut dst = TcpStream::connect(addr).await.expect("connect");
    let mut out = Vec::new();
    let moved = relay_body(
        src,
        &mut dst,
        framing,
        Encode::Chunked,
        T,
        &mut Timer::new(),
        &mut out,
    )
    .await
    .expect("relay");
    AsyncWriteRent::shutdown(&mut dst).await.expect("shutdown");
    moved
}

/// Relays `wire` from an in-memory sender (not TCP, as a TLS client is
/// not) to a plain TCP receiver (as the registry is), which a thread reads
/// to the end. Returns the sender, what arrived, and the buffer kept.
async fn relay(wire: Vec<u8>, framing: Framing) -> (Mem, Vec<u8>, Vec<u8>) {
    let (addr, reader) = sink();
    let mut src = Buffered::new(Mem {
        data: wire,
        ..Mem::default()
    });
    relay_to(&mut src, addr, framing).await;
    let (src, kept) = src.into_parts();
    (src, reader.join().expect("reader"), kept)
}

/// An upload from a TLS client: every byte is copied through the relay's
/// buffer, and a bulk batch per read and write keeps system calls per GiB
/// low (issue 8). With 64 KiB batches uploads cost 8% more CPU per GiB.
#[monoio::test_all(timer_enabled = true)]
async fn an_upload_from_an_end_that_is_not_tcp_moves_in_bulk_batches() {
    let data = body(4 << 20);
    let (src, got, kept) = relay(data.clone(), Framing::Length(data.len() as u64)).await;
    assert!(got == data, "the body arrives intact");
    assert_reads(&src, BULK_BUF_BYTES..=usize::MAX);
    assert!(kept.capacity() <= READ_BUF_BYTES, "{}", kept.capacity());

    let wire = chunked(&data);
    let (src, got, kept) = relay(wire.clone(), Framing::Chunked).await;
    assert!(got == wire, "plain chunk lines pass unchanged");
    let large = src
        .reads
        .iter()
        .filter(|&&r| r >= BULK_BUF_BYTES / 2)
        .count();
    assert!(large + 1 >= src.reads.len(), "{:?}", src.reads);
    assert!(kept.capacity() <= READ_BUF_BYTES, "{}", kept.capacity());
}

/// When the worker's bulk batches are all taken, a large body still moves,
/// with the 64 KiB buffer: concurrent transfers do not multiply memory.
#[monoio::test_all(timer_enabled = true)]
async fn without_a_free_bulk_slot_a_large_body_moves_in_the_read_buffer() {
    let held: Vec<_> = std::iter::from_fn(bufpool::BulkSlot::take).collect();
    assert_eq!(held.len(), bufpool::BULK_SLOTS);
    let data = body(1 << 20);
    let (src, got, _) = relay(data.clone(), Framing::Length(data.len() as u64)).await;
    assert!(got == data, "the body arrives intact");
    assert_reads(&src, 1..=READ_BUF_BYTES);
    drop(held);
    let (src, _, _) = relay(data.clone(), Framing::Length(data.len() as u64)).await;
    assert_reads(&src, BULK_BUF_BYTES..=usize::MAX);
}

/// A bulk batch goes back to the worker's pool after its body, and the
/// next body takes the same one: freed to glibc instead, batches split by
/// small allocations grew the heap (`bufpool`'s module note).
#[monoio::test_all(timer_enabled = true)]
async fn a_bulk_batch_goes_back_to_the_pool_and_the_next_body_reuses_it() {
    let class = bufpool::CLASSES
        .iter()
        .position(|&(cap, _)| cap == BULK_BUF_BYTES)
        .expect("a class for bulk batches");
    let data = body(1 << 20);
    for round in 0..3 {
        let (src, got, _) = relay(data.clone(), Framing::Length(data.len() as u64)).await;
        assert!(got == data, "the body arrives intact");
        assert_reads(&src, BULK_BUF_BYTES..=usize::MAX);
        assert_eq!(bufpool::pooled()[class], 1, "round {round}");
    }
}

/// A body one read buffer holds (most responses) takes no bulk batch:
/// growing to one and giving it back cost each small TLS response two
/// 64 KiB copies (callgrind: 177,000 instructions per request, not 45,000).
#[monoio::test_all(timer_enabled = true)]
async fn a_body_that_fits_one_read_buffer_takes_no_bulk_batch() {
    let data = body(READ_BUF_BYTES);
    let (src, got, kept) = relay(data.clone(), Framing::Length(data.len() as u64)).await;
    assert!(got == data, "the body arrives intact");
    assert_reads(&src, 1..=READ_BUF_BYTES);
    assert!(kept.capacity() <= READ_BUF_BYTES, "{}", kept.capacity());
}

/// Relays `wire`, framed as `framing`, between plain TCP ends: a thread
/// writes it to the relay's source, another reads the destination to the
/// end.
async fn relay_tcp(wire: Vec<u8>, framing: Framing, peek_ahead: bool) -> (Moved, Vec<u8>) {
    let (sink_addr, reader) = sink();
    super::splice::set_peek_ahead(peek_ahead);
    let listener = monoio::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let writer = std::thread::spawn(move || {
        let mut c = std::net::TcpStream::connect(addr).expect("connect");
        std::io::Write::write_all(&mut c, &wire).expect("write");
        c
    });
    let (s, _) = listener.accept().await.expect("accept");
    let mut src = Buffered::new(s);
    let moved = relay_to(&mut src, sink_addr, framing).await;
    // The writer is done already.
    drop(writer.join().expect("writer"));
    super::splice::set_peek_ahead(true);
    (moved, reader.join().expect("reader"))
}

/// Both ways of splicing a chunked body: peeking past the chunks already
/// checked (TCP `SO_PEEK_OFF`, Linux 6.10 and later), and chunk by chunk,
/// which older kernels take and this kernel never would on its own.
#[monoio::test_all(timer_enabled = true)]
async fn chunked_bodies_splice_with_and_without_peeking_ahead() {
    let data = body(4 << 20);
    let wire = chunked(&data);
    for peek_ahead in [true, false] {
        let (moved, got) = relay_tcp(wire.clone(), Framing::Chunked, peek_ahead).await;
        assert!(
            got == wire,
            "peek ahead {peek_ahead}: the chunk lines and data pass unchanged"
        );
        assert_eq!(moved.body, data.len() as u64);
        assert!(
            moved.spliced * 10 >= moved.body * 9,
            "peek ahead {peek_ahead}: {moved:?}"
        );
    }
}

/// With no pipe to be had (the descriptor budget's share for pipes is
/// spent), bodies between plain TCP ends are copied through the read
/// buffer, intact, and the fallback is counted: never a failed request.
/// With room, they are spliced, and the pooled pipe keeps its two
/// descriptors in the budget until it is closed.
#[monoio::test_all(timer_enabled = true)]
async fn without_a_pipe_plain_bodies_are_copied_and_with_one_spliced() {
    use crate::admission::{Fds, StateGauges};
    use std::sync::atomic::Ordering;
    let gauges = std::sync::Arc::new(vec![StateGauges::default()]);
    let fallbacks = || gauges[0].pipe_fallbacks.load(Ordering::Relaxed);
    while super::splice::close_idle_pipe() {}
    let data = body(4 << 20);
    let len = data.len() as u64;
    let cases = [
        (data.clone(), Framing::Length(len)),
        (chunked(&data), Framing::Chunked),
    ];
    // Two descriptors: no share for pipes at all.
    let starved = Fds::new(2, gauges.clone(), 0);
    super::splice::use_budget(&starved);
    for (n, (wire, framing)) in cases.iter().enumerate() {
        let (moved, got) = relay_tcp(wire.clone(), *framing, true).await;
        assert!(got == *wire, "{framing:?}: the body arrives intact");
        assert_eq!((moved.body, moved.spliced), (len, 0), "{framing:?}");
        assert_eq!(fallbacks(), n as u64 + 1, "one fallback per body");
    }
    assert_eq!(starved.used(), 0);

    let roomy = Fds::new(64, gauges.clone(), 0);
    super::splice::use_budget(&roomy);
    for (wire, framing) in &cases {
        let (moved, got) = relay_tcp(wire.clone(), *framing, true).await;
        assert!(got == *wire, "{framing:?}: the body arrives intact");
        assert!(moved.spliced * 10 >= len * 9, "{framing:?}: {moved:?}");
    }
    assert_eq!(fallbacks(), 2);
    assert_eq!(roomy.used(), 2, "the pooled pipe");
    assert!(super::splice::close_idle_pipe());
    assert_eq!(roomy.used(), 0);
}

/// A plain TCP receiver that counts what it has read so far.
fn counting_sink() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    std::thread::JoinHandle<Vec<u8>>,
) {
    use std::sync::atomic::Ordering;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = seen.clone();
    let reader = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let (mut got, mut buf) = (Vec::new(), vec![0u8; 1 << 16]);
        loop {
            match std::io::Read::read(&mut s, &mut buf).expect("read") {
                0 => return got,
                n => got.extend_from_slice(&buf[..n]),
            }
            counter.store(got.len(), Ordering::Release);
        }
    });
    (addr, seen, reader)
}

/// A sender that writes each chunk only once the receiver has everything
/// before it (curl against a registry that keeps up): every chunk finds
/// the relay waiting for it. Per chunk that costs a peek at its line and
/// one at what follows its data, each after moving the peek offset; a peek
/// that can only find nothing (the one before it came back short: the
/// queue ended there) is not made.
#[monoio::test_all(timer_enabled = true)]
async fn a_chunk_that_finds_the_relay_waiting_costs_two_peeks() {
    use std::sync::atomic::Ordering;
    const CHUNKS: usize = 24;
    let data = body(CHUNKS << 16);
    let wire = chunked(&data);
    for peek_ahead in [true, false] {
        let (sink_addr, seen, reader) = counting_sink();
        super::splice::set_peek_ahead(peek_ahead);
        let listener = monoio::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let pieces: Vec<Vec<u8>> = {
            let line = format!("{:x}\r\n", 1 << 16).len();
            let each = line + (1 << 16) + 2;
            wire.chunks(each).map(<[u8]>::to_vec).collect()
        };
        let writer = std::thread::spawn(move || {
            let mut c = std::net::TcpStream::connect(addr).expect("connect");
            let mut sent = 0;
            for piece in pieces {
                std::io::Write::write_all(&mut c, &piece).expect("write");
                sent += piece.len();
                // The CRLF after a chunk's data may wait for the next line
                // while the body is still copied (its first chunks).
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                while seen.load(Ordering::Acquire) + 2 < sent
                    && std::time::Instant::now() < deadline
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            c
        });
        let (s, _) = listener.accept().await.expect("accept");
        let mut src = Buffered::new(s);
        let before = crate::sys::calls::calls();
        let moved = relay_to(&mut src, sink_addr, Framing::Chunked).await;
        let calls = crate::sys::calls::calls().since(before);
        drop(writer.join().expect("writer"));
        super::splice::set_peek_ahead(true);
        let got = reader.join().expect("reader");
        assert!(
            got == wire,
            "peek ahead {peek_ahead}: the body arrives unchanged"
        );
        assert!(
            moved.spliced * 10 >= moved.body * 8,
            "peek ahead {peek_ahead}: {moved:?}"
        );
        let bound = 2 * CHUNKS as u64 + 4;
        assert!(
            calls.peeks <= bound,
            "peek ahead {peek_ahead}: {} peeks for {CHUNKS} chunks: {calls:?}",
            calls.peeks
        );
        assert!(
            calls.peek_offsets <= bound,
            "peek ahead {peek_ahead}: {calls:?}"
        );
    }
}

/// A known-length body from a sender that trickles it in 32 KiB writes (a
/// registry reading its storage piece by piece): the relay waits for a
/// pipe's worth of it at a time, not for every write, so the splices are
/// counted in pipes, not in writes.
#[monoio::test_all(timer_enabled = true)]
async fn a_trickled_length_body_is_spliced_a_pipe_at_a_time() {
    const LEN: usize = 4 << 20;
    const PIECE: usize = 32 << 10;
    let data = body(LEN);
    let (sink_addr, _seen, reader) = counting_sink();
    let listener = monoio::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let sent = data.clone();
    let writer = std::thread::spawn(move || {
        let mut c = std::net::TcpStream::connect(addr).expect("connect");
        for piece in sent.chunks(PIECE) {
            std::io::Write::write_all(&mut c, piece).expect("write");
            // Bounded: 128 pieces.
            std::thread::sleep(Duration::from_micros(300));
        }
        c
    });
    let (s, _) = listener.accept().await.expect("accept");
    let mut src = Buffered::new(s);
    let before = crate::sys::calls::calls();
    let moved = relay_to(&mut src, sink_addr, Framing::Length(LEN as u64)).await;
    let calls = crate::sys::calls::calls().since(before);
    drop(writer.join().expect("writer"));
    let got = reader.join().expect("reader");
    assert!(got == data, "the body arrives unchanged");
    assert_eq!(moved.spliced, LEN as u64, "{moved:?}");
    // Each wait for the source ends with close to a pipe's worth queued
    // (the kernel wakes early only when the window runs short): a splice
    // in and one out per pipe, one or two more where the destination or
    // the pipe's slots cut one short. Per write it would be 2 * 128.
    let pipes = LEN.div_ceil(super::splice::pipe_size()) as u64;
    let bound = 4 * pipes + 8;
    assert!(
        calls.splices <= bound,
        "{} splices for {pipes} pipes' worth (bound {bound}): {calls:?}",
        calls.splices
    );
}

/// A sender too slow to fill a pipe quickly (a client on a slow link) has
/// its bytes passed on as they come, after a short batched wait, not held
/// back for the source's whole timeout: the receiver sees each piece while
/// the sender still waits for it.
#[monoio::test_all(timer_enabled = true)]
async fn a_slow_length_body_is_not_held_back_for_a_batch() {
    use std::sync::atomic::Ordering;
    const LEN: usize = 4 << 20;
    const FIRST: usize = 64 << 10;
    let data = body(LEN);
    let (sink_addr, seen, reader) = counting_sink();
    let listener = monoio::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let sent = data.clone();
    let writer = std::thread::spawn(move || {
        let mut c = std::net::TcpStream::connect(addr).expect("connect");
        // The first piece finds the relay splicing; the second finds it
        // waiting for a batch.
        let mut through = true;
        for end in [FIRST, 2 * FIRST] {
            std::io::Write::write_all(&mut c, &sent[end - FIRST..end]).expect("write");
            // Far below the relay's source timeout (60 s): only a batch
            // given up early lets the second piece through in time.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while seen.load(Ordering::Acquire) < end && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            through &= seen.load(Ordering::Acquire) >= end;
        }
        std::io::Write::write_all(&mut c, &sent[2 * FIRST..]).expect("write");
        (c, through)
    });
    let (s, _) = listener.accept().await.expect("accept");
    let mut src = Buffered::new(s);
    let mut dst = TcpStream::connect(sink_addr).await.expect("connect");
    let t = Timeouts {
        src: Duration::from_secs(60),
        dst: Duration::from_secs(60),
    };
    let moved = relay_body(
        &mut src,
        &mut dst,
        Framing::Length(LEN as u64),
        Encode::Chunked,
        t,
        &mut Timer::new(),
        &mut Vec::new(),
    )
    .await
    .expect("relay");
    AsyncWriteRent::shutdown(&mut dst).await.expect("shutdown");
    let (_c, through) = writer.join().expect("writer");
    let got = reader.join().expect("reader");
    assert!(got == data, "the body arrives unchanged");
    assert_eq!(moved.spliced, LEN as u64, "{moved:?}");
    assert!(through, "a piece waited for the rest of a batch");
}
