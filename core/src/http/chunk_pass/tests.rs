#![allow(clippy::unwrap_used)]

use super::*;
use crate::http::body::ChunkedDecoder;

/// The body a strict decode of `framed` gives, if it ends.
fn decoded(framed: &[u8]) -> Option<Vec<u8>> {
    let mut dec = ChunkedDecoder::new();
    let (mut body, mut at) = (Vec::new(), 0);
    loop {
        let p = dec.decode(&framed[at..]).ok()?;
        if let Some(r) = &p.data {
            body.extend_from_slice(&framed[at..][r.clone()]);
        }
        at += p.consumed;
        if p.done {
            return (at == framed.len()).then_some(body);
        }
        if p.consumed == 0 {
            return None;
        }
    }
}

/// Every way of cutting `framed` into two or three reads.
fn cuts(len: usize) -> Vec<Vec<usize>> {
    let mut all = vec![vec![]];
    for a in 1..len {
        all.push(vec![a]);
        all.push(vec![a, 1]);
        all.push(vec![1, a]);
    }
    all
}

const PLAIN: &[u8] = b"4\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n\r\n";
const DATA: &[u8] = b"Wikipedia in\r\n\r\nchunks.";

#[test]
fn plain_framing_passes_whole_in_one_run() {
    let mut pass = ChunkPass::new();
    let mut out = vec![];
    let step = pass.step(PLAIN, &mut out).unwrap();
    assert_eq!(
        step,
        Step::Verbatim {
            len: PLAIN.len(),
            data: DATA.len() as u64,
            done: true
        }
    );
    assert!(out.is_empty());
}

#[test]
fn plain_framing_passes_unchanged_however_it_is_cut() {
    for pieces in cuts(PLAIN.len()) {
        let (sent, body, end) = pass_in_pieces(PLAIN, &pieces);
        assert_eq!(end, Ok(true), "{pieces:?}");
        assert_eq!(
            sent,
            PLAIN,
            "{pieces:?}: {}",
            String::from_utf8_lossy(&sent)
        );
        assert_eq!(body, DATA.len() as u64);
    }
}

#[test]
fn framing_that_is_not_plain_is_rewritten_and_the_rest_passes() {
    // Extensions, whitespace, 17 digits, a trailer section.
    let input: &[u8] =
        b"4;ext=1\r\nWiki\r\n5 \r\npedia\r\n0000000000000000E\r\n in\r\n\r\nchunks.\r\n\
        3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n";
    let want: &[u8] =
        b"4\r\nWiki\r\n5\r\npedia\r\ne\r\n in\r\n\r\nchunks.\r\n3\r\nabc\r\n0\r\n\r\n";
    for pieces in cuts(input.len()) {
        let (sent, _, end) = pass_in_pieces(input, &pieces);
        assert_eq!(end, Ok(true), "{pieces:?}");
        assert_eq!(
            decoded(&sent).as_deref(),
            Some(&b"Wikipedia in\r\n\r\nchunks.abc"[..])
        );
        if pieces.is_empty() {
            assert_eq!(sent, want, "{}", String::from_utf8_lossy(&sent));
        }
    }
}

#[test]
fn uppercase_hex_and_leading_zeros_up_to_16_digits_pass_unchanged() {
    let input: &[u8] = b"000000000000000A\r\n0123456789\r\n0\r\n\r\n";
    let (sent, body, end) = pass_in_pieces(input, &[]);
    assert_eq!((sent.as_slice(), body, end), (input, 10, Ok(true)));
}

#[test]
fn output_is_always_plain_framing_with_the_same_body() {
    // Whatever came in, what goes out passes a second time in one run:
    // the registry sees only framing it reads as we do.
    let inputs: [&[u8]; 4] = [
        PLAIN,
        b"1;a\r\nx\r\n2\t\r\nyz\r\n0;b\r\nT: v\r\n\r\n",
        b"00000000000000000001\r\nq\r\n0\r\n\r\n",
        b"a\r\n0123456789\r\n000\r\n\r\n",
    ];
    for input in inputs {
        for pieces in cuts(input.len()) {
            let (sent, body, end) = pass_in_pieces(input, &pieces);
            assert_eq!(end, Ok(true));
            let again = pass_in_pieces(&sent, &[]);
            assert_eq!(again.0, sent, "{}", String::from_utf8_lossy(&sent));
            assert_eq!(again.1, body);
            assert_eq!(decoded(&sent), decoded(input));
        }
    }
}

#[test]
fn malformed_framing_fails_as_the_decoder_does() {
    for input in [
        &b"4\r\nWikiX\r\n"[..],
        b"4\nWiki\r\n",
        b"g\r\n",
        b"11111111111111111\r\n",
        b"4\r\nWiki\r\n0\r\n\r",
    ] {
        let (_, _, end) = pass_in_pieces(input, &[]);
        if input.ends_with(b"\r\n\r") {
            assert_eq!(end, Ok(false), "unfinished, not failed");
            continue;
        }
        assert!(end.is_err(), "{}", String::from_utf8_lossy(input));
    }
}

#[test]
fn nothing_after_the_body_is_passed_on() {
    let mut input = PLAIN.to_vec();
    input.extend_from_slice(b"GET /next HTTP/1.1\r\n\r\n");
    for pieces in cuts(input.len()) {
        let (sent, _, end) = pass_in_pieces(&input, &pieces);
        assert_eq!(end, Ok(true));
        assert_eq!(sent, PLAIN, "{pieces:?}");
    }
}

#[test]
fn undecided_short_framing_waits_for_more_and_long_framing_does_not() {
    let mut pass = ChunkPass::new();
    let mut out = vec![];
    assert_eq!(pass.step(b"100", &mut out).unwrap(), Step::NeedMore);
    assert_eq!(
        pass.step(b"100\r\nab", &mut out).unwrap(),
        Step::Verbatim {
            len: 7,
            data: 2,
            done: false
        }
    );
    // An extension longer than any plain framing is consumed and rewritten.
    let mut pass = ChunkPass::new();
    let long = b"1;aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    assert_eq!(
        pass.step(long, &mut out).unwrap(),
        Step::Rewritten {
            consumed: long.len(),
            data: 0,
            done: false
        }
    );
    assert!(out.is_empty(), "the size line is written once it ends");
}

#[test]
fn plain_start_takes_large_chunks_and_the_end() {
    let mut pass = ChunkPass::new();
    assert_eq!(
        pass.plain_start(b"10000\r\nxyz", 0x8000).unwrap(),
        Some(Start::Chunk {
            framing: 7,
            size: 0x10000
        })
    );
    assert_eq!(pass.data_left(), Some(0x10000));
    pass.skip_data(0x10000);
    assert!(pass.at_framing());
    // Too small, not whole, or not plain: nothing is taken.
    for peeked in [&b"\r\n10\r\nabc"[..], b"\r\n10000;x\r\n", b"\r\n10000 \r\n"] {
        assert_eq!(pass.plain_start(peeked, 0x8000).unwrap(), None);
        assert!(pass.at_framing());
    }
    // The CRLF after data, the next line not here yet: the CRLF goes alone.
    assert_eq!(
        pass.plain_start(b"\r\n80", 0x8000).unwrap(),
        Some(Start::Crlf)
    );
    assert_eq!(
        pass.plain_start(b"80", 0x8000).unwrap(),
        Some(Start::NeedMore)
    );
    assert_eq!(
        pass.plain_start(b"", 0x8000).unwrap(),
        Some(Start::NeedMore)
    );
    assert_eq!(
        pass.plain_start(b"8000\r\n", 0x8000).unwrap(),
        Some(Start::Chunk {
            framing: 6,
            size: 0x8000
        })
    );
    pass.skip_data(0x8000);
    assert_eq!(
        pass.plain_start(b"\r\n0\r\n\r\nGET", 0x8000).unwrap(),
        Some(Start::End { framing: 7 })
    );
}

#[test]
fn plain_start_refuses_what_the_decoder_refuses() {
    let mut pass = ChunkPass::new();
    pass.plain_start(b"10000\r\n", 1).unwrap();
    pass.skip_data(0x10000);
    assert!(pass.plain_start(b"XY10000\r\n", 1).is_err());
}

#[test]
fn is_plain_wants_the_crlf_after_data_exactly_when_due() {
    assert!(is_plain(b"ff\r\n", false, false));
    assert!(!is_plain(b"\r\nff\r\n", false, false));
    assert!(is_plain(b"\r\nff\r\n", true, false));
    assert!(!is_plain(b"ff\r\n", true, false));
    assert!(is_plain(b"\r\n0\r\n\r\n", true, true));
    assert!(!is_plain(b"\r\n00\r\n\r\n", true, true));
    assert!(!is_plain(b"\r\n\r\n", true, false));
}

#[test]
fn chunk_lines_are_canonical_hex() {
    for (size, line) in [
        (1, "1\r\n"),
        (0xabc, "abc\r\n"),
        (u64::MAX, "ffffffffffffffff\r\n"),
    ] {
        let mut out = vec![];
        chunk_line(&mut out, size);
        assert_eq!(out, line.as_bytes());
    }
}

#[test]
fn the_tail_of_a_rewritten_line_is_not_taken_for_a_plain_line() {
    // Found by the fuzzer: a line cut after "xt=" ends in "1\r\n", which
    // alone looks plain; passed unchanged it told the registry 1 byte.
    let input: &[u8] = b"a;e*e^^^^^^^^^^^^^^^^^^^^^^xt=1\r\n0123456749\r\n3 \r\nabm\r\n0\r\n\r\n";
    for pieces in [vec![1, 1, 9, 1], vec![27], vec![30], vec![31]] {
        let (sent, _, end) = pass_in_pieces(input, &pieces);
        assert_eq!(end, Ok(true));
        assert_eq!(
            sent,
            b"a\r\n0123456749\r\n3\r\nabm\r\n0\r\n\r\n",
            "{pieces:?}: {}",
            String::from_utf8_lossy(&sent)
        );
    }
}
