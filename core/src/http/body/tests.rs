#![allow(clippy::unwrap_used)]

use super::*;

/// Extensions (bare, valued, quoted with ';' inside, after BWS), both hex
/// cases, a chunk holding CRLFs, and a trailer section.
const BODY: &[u8] = b"4;ext=1\r\nWiki\r\n5 ; a=\"q;\\\"x\"\t;b\r\npedia\r\n\
    e\r\n in\r\n\r\nchunks.\r\n00A\r\n0123456789\r\n\
    0;last\r\nExpires: never\r\nX-T:\ta b\xe9\r\n\r\n";
const DATA: &[u8] = b"Wikipedia in\r\n\r\nchunks.0123456789";
const NEXT: &[u8] = b"GET /next HTTP/1.1\r\n";

/// Feeds `pieces` as a relay would: unconsumed bytes are kept and new ones
/// appended. Returns the data, the bytes left over and the total consumed.
fn drive(pieces: &[&[u8]]) -> Result<(Vec<u8>, Vec<u8>, usize), ChunkError> {
    let (mut dec, mut held, mut data, mut total) = (ChunkedDecoder::new(), vec![], vec![], 0);
    for piece in pieces {
        held.extend_from_slice(piece);
        while !dec.is_done() {
            let p = dec.decode(&held)?;
            assert!(p.consumed <= held.len());
            if let Some(r) = p.data.clone() {
                assert!(!r.is_empty() && r.end == p.consumed, "{p:?}");
                data.extend_from_slice(&held[r]);
            }
            held.drain(..p.consumed);
            total += p.consumed;
            assert_eq!(p.done, dec.is_done());
            if p.data.is_none() && !p.done {
                break;
            }
        }
    }
    assert!(dec.is_done(), "body never ended");
    let after = dec.decode(&held)?;
    assert_eq!(
        after,
        Progress {
            consumed: 0,
            data: None,
            done: true
        }
    );
    Ok((data, held, total))
}

fn error_of(input: &[u8]) -> ChunkError {
    let mut dec = ChunkedDecoder::new();
    let mut rest = input;
    loop {
        match dec.decode(rest) {
            Err(e) => {
                assert_eq!(dec.decode(b"0\r\n\r\n"), Err(e), "errors stick");
                return e;
            }
            Ok(p) if p.consumed == 0 => panic!("no error in {input:?}: {p:?}"),
            Ok(p) => rest = &rest[p.consumed..],
        }
    }
}

#[test]
fn every_split() {
    let whole = [BODY, NEXT].concat();
    let expect = (DATA.to_vec(), NEXT.to_vec(), BODY.len());
    let bytes: Vec<&[u8]> = whole.chunks(1).collect();
    assert_eq!(drive(&bytes), Ok(expect.clone()), "byte at a time");
    for cut in 0..=whole.len() {
        let (a, b) = whole.split_at(cut);
        assert_eq!(drive(&[a, b]), Ok(expect.clone()), "split at {cut}");
    }
}

#[test]
fn data_streams_before_the_chunk_ends() {
    const MIB: usize = 1 << 20;
    let mut dec = ChunkedDecoder::new();
    let p = dec.decode(b"100000\r\n").unwrap();
    assert_eq!(
        p,
        Progress {
            consumed: 8,
            data: None,
            done: false
        }
    );
    let payload = [7u8; 100];
    let mut seen = 0;
    while seen < MIB {
        let piece = &payload[..100.min(MIB - seen)];
        let p = dec.decode(piece).unwrap();
        assert_eq!(
            p,
            Progress {
                consumed: piece.len(),
                data: Some(0..piece.len()),
                done: false
            }
        );
        seen += piece.len();
    }
    // Data and framing in one buffer: the data comes back first, alone.
    let mut dec = ChunkedDecoder::new();
    let p = dec.decode(b"3\r\nabc\r\n0\r\n\r\n").unwrap();
    assert_eq!(
        p,
        Progress {
            consumed: 6,
            data: Some(3..6),
            done: false
        }
    );
    assert_eq!(
        dec.decode(b"\r\n0\r\n\r\nX").unwrap(),
        Progress {
            consumed: 7,
            data: None,
            done: true
        }
    );
    assert!(dec.is_done());
    assert_eq!(
        dec.decode(b"").unwrap(),
        Progress {
            consumed: 0,
            data: None,
            done: true
        }
    );
    assert_eq!(
        ChunkedDecoder::new().decode(b"").unwrap(),
        Progress {
            consumed: 0,
            data: None,
            done: false
        }
    );
}

#[test]
fn data_can_be_skipped_past_the_decoder() {
    let mut dec = ChunkedDecoder::new();
    assert_eq!(dec.data_left(), None);
    let p = dec.decode(b"a;x=1\r\n").unwrap();
    assert_eq!((p.consumed, p.data), (7, None));
    assert_eq!(dec.data_left(), Some(10));
    dec.skip_data(4);
    assert_eq!(dec.data_left(), Some(6));
    let p = dec.decode(b"ab").unwrap();
    assert_eq!(p.data, Some(0..2));
    dec.skip_data(4);
    assert_eq!(dec.data_left(), None);
    // The chunk's CRLF is still checked after skipped data.
    assert_eq!(dec.decode(b"xx"), Err(ChunkError::BadLineEnd));
    let mut dec = ChunkedDecoder::new();
    dec.decode(b"2\r\n").unwrap();
    dec.skip_data(2);
    let p = dec.decode(b"\r\n0\r\n\r\n").unwrap();
    assert!(p.done && p.consumed == 7);
}

#[test]
fn sizes_and_limits_accepted() {
    let long_ext = format!("1;{}\r\nx\r\n0\r\n\r\n", "e".repeat(MAX_CHUNK_LINE - 2));
    let zeros = format!("{}1\r\nx\r\n0\r\n\r\n", "0".repeat(MAX_CHUNK_LINE - 1));
    let field = format!("X: {}\r\n", "a".repeat(MAX_TRAILER_BYTES - 7));
    let trailer = format!("0\r\n{field}\r\n");
    for body in [&long_ext, &zeros, &trailer, "1 \r\nx\r\n000\r\n\r\n"] {
        assert!(drive(&[body.as_bytes()]).is_ok(), "{body:.40}");
    }
    let mut dec = ChunkedDecoder::new();
    let p = dec.decode(b"FFFFFFFFFFFFFFFF\r\nab").unwrap();
    assert_eq!(p.data, Some(18..20));
    assert_eq!(dec.size, u64::MAX - 2);
}

#[test]
fn errors() {
    use ChunkError::*;
    let long_ext = format!("1;{}\r\n", "e".repeat(MAX_CHUNK_LINE - 1));
    let zeros = "0".repeat(MAX_CHUNK_LINE + 1);
    let trailer = format!("0\r\nX: {}\r\n\r\n", "a".repeat(MAX_TRAILER_BYTES));
    let many = format!("0\r\n{}\r\n", "X: y\r\n".repeat(MAX_TRAILER_BYTES / 6 + 1));
    #[rustfmt::skip]
    let cases: &[(&[u8], ChunkError)] = &[
        (b"\r\n", BadSize), (b";ext\r\n", BadSize), (b" 1\r\n", BadSize),
        (b"+1\r\n", BadSize), (b"-1\r\n", BadSize), (b"0x1\r\n", BadSize),
        (b"g\r\n", BadSize), (b"1 2\r\n", BadSize), (b"1;a\x00\r\n", BadSize),
        (b"1;a\x7f\r\n", BadSize),
        (long_ext.as_bytes(), LineTooLong), (zeros.as_bytes(), LineTooLong),
        (b"10000000000000000\r\n", SizeOverflow), (b"FFFFFFFFFFFFFFFF0", SizeOverflow),
        (b"1\n", BadLineEnd), (b"1;a\n", BadLineEnd), (b"1\rx", BadLineEnd),
        (b"1\r\nab", BadLineEnd), (b"1\r\na\n", BadLineEnd), (b"1\r\na\r\r", BadLineEnd),
        (b"0\r\n\n", BadLineEnd), (b"0\r\n\rx", BadLineEnd), (b"0\r\nX: y\n", BadLineEnd),
        (b"0\r\nX: y\rx", BadLineEnd),
        (b"0\r\n: y\r\n", BadTrailer), (b"0\r\nX y: z\r\n", BadTrailer),
        (b"0\r\n folded\r\n", BadTrailer), (b"0\r\nX: a\x00\r\n", BadTrailer),
        (b"0\r\nX\r\n", BadTrailer),
        (trailer.as_bytes(), TrailerTooLarge), (many.as_bytes(), TrailerTooLarge),
    ];
    for (input, want) in cases {
        assert_eq!(
            error_of(input),
            *want,
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn writes_round_trip() {
    for (len, line) in [(1, "1\r\n"), (255, "ff\r\n"), (4096, "1000\r\n"), (0, "")] {
        let mut out = vec![];
        write_chunk_header(len, &mut out);
        assert_eq!(out, line.as_bytes());
    }
    let mut out = vec![];
    write_chunk_header(usize::MAX, &mut out);
    assert_eq!(out, format!("{:x}\r\n", usize::MAX).as_bytes());

    let pieces: [&[u8]; 4] = [b"a", b"", &[0xAB; 300], b"\r\n0\r\n\r\n"];
    let mut wire = vec![];
    for piece in pieces.iter().filter(|p| !p.is_empty()) {
        write_chunk_header(piece.len(), &mut wire);
        wire.extend_from_slice(piece);
        wire.extend_from_slice(CHUNK_TERMINATOR);
    }
    wire.extend_from_slice(LAST_CHUNK);
    assert_eq!(
        drive(&[&wire]).unwrap(),
        (pieces.concat(), vec![], wire.len())
    );
}

#[test]
fn display() {
    use ChunkError::*;
    for e in [
        BadSize,
        LineTooLong,
        BadLineEnd,
        TrailerTooLarge,
        BadTrailer,
        SizeOverflow,
    ] {
        assert!(!e.to_string().is_empty());
    }
    assert_eq!(BadLineEnd.to_string(), "expected CRLF in chunked body");
}
