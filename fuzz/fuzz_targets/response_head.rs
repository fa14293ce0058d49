//! Response heads as the registry (or anything posing as it) sends them.
//! The first byte picks the request method, which decides whether a body
//! follows (RFC 9112 §6.3).
#![no_main]

use libfuzzer_sys::fuzz_target;
use regproxy_core::http::head::{parse_request, parse_response, Method, Parse};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    // Reuse the request parser to build a Method: Method's constructor is
    // private, and a real method always comes from a parsed request.
    let line: &[u8] = match pick % 4 {
        0 => b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        1 => b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n",
        2 => b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        _ => b"DELETE / HTTP/1.1\r\nHost: x\r\n\r\n",
    };
    let method: Method = match parse_request(line) {
        Ok(Parse::Complete { head, .. }) => head.method,
        other => panic!("fixed request did not parse: {other:?}"),
    };
    let Ok(Parse::Complete { head, len }) = parse_response(rest, &method) else {
        return;
    };
    assert!(len <= rest.len());
    match parse_response(&rest[..len], &method) {
        Ok(Parse::Complete { len: again, .. }) => assert_eq!(again, len),
        other => panic!("prefix of a complete head: {other:?}"),
    }
    let _ = (head.reason(), head.headers().count());
});
