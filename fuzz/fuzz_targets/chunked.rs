//! The chunked decoder (RFC 9112 §7.1), fed the same bytes whole and in
//! pieces (split points from the input's first bytes): it must never
//! panic, every range it reports must lie in the input, and the split
//! must not change the body, the end, or the verdict.
//!
//! The same bytes also go through `chunk_pass`, which forwards plain framing
//! unchanged and rewrites the rest: it must reach the decoder's verdict,
//! and what it sends on must decode to the same body and be plain
//! throughout (a second pass forwards it whole and unchanged).
#![no_main]

use libfuzzer_sys::fuzz_target;
use regproxy_core::http::body::{ChunkError, ChunkedDecoder};
use regproxy_core::http::chunk_pass::pass_in_pieces;

/// Body bytes, bytes consumed, and how it ended.
type Outcome = (Vec<u8>, usize, Result<bool, ChunkError>);

/// Feeds `data` in pieces whose lengths cycle through `cuts` (0 = rest).
fn run(data: &[u8], cuts: &[u8]) -> Outcome {
    let mut dec = ChunkedDecoder::new();
    let mut body = Vec::new();
    // Bytes handed over but not yet consumed, as a caller's buffer holds them.
    let (mut start, mut end, mut i) = (0usize, 0usize, 0usize);
    loop {
        if end < data.len() && (start == end || i > 0) {
            let cut = cuts.get(i % cuts.len().max(1)).copied().unwrap_or(0) as usize;
            end = if cut == 0 {
                data.len()
            } else {
                (end + cut).min(data.len())
            };
        }
        i += 1;
        let input = &data[start..end];
        match dec.decode(input) {
            Err(e) => return (body, start, Err(e)),
            Ok(p) => {
                assert!(p.consumed <= input.len());
                if let Some(r) = &p.data {
                    assert!(r.start <= r.end && r.end == p.consumed);
                    body.extend_from_slice(&input[r.clone()]);
                }
                start += p.consumed;
                if p.done {
                    assert!(dec.is_done());
                    return (body, start, Ok(true));
                }
                if p.consumed == 0 && end == data.len() {
                    return (body, start, Ok(false));
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let (cuts, data) = data.split_at(data.len().min(4));
    let whole = run(data, &[]);
    let pieces = run(data, cuts);
    assert_eq!(whole.2, pieces.2, "verdict");
    assert_eq!(whole.0, pieces.0, "body");
    if whole.2 == Ok(true) {
        assert_eq!(whole.1, pieces.1, "end of body");
    }

    let pieces: Vec<usize> = cuts.iter().map(|&c| usize::from(c)).collect();
    let (sent, body_len, verdict) = pass_in_pieces(data, &pieces);
    assert_eq!(verdict, whole.2, "pass verdict");
    if verdict == Ok(true) {
        assert_eq!(body_len, whole.0.len() as u64, "body bytes counted");
        let resent = run(&sent, &[]);
        assert_eq!(resent.2, Ok(true), "what is sent on ends");
        assert_eq!(resent.0, whole.0, "what is sent on carries the body");
        assert_eq!(resent.1, sent.len(), "nothing after the end is sent on");
        let again = pass_in_pieces(&sent, &[]);
        assert_eq!(again.0, sent, "what is sent on is plain throughout");
    }
});
