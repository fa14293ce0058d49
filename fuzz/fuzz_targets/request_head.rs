//! Request heads as a client sends them: the parser must never panic, a
//! complete head must end where it says, and whatever it accepts must be
//! writable as the head forwarded to the registry, which must parse again,
//! with a Host and the framing we meant to send.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use regproxy_core::http::head::{
    parse_request, HeadError, Parse, RequestBody, MAX_HEADERS, MAX_HEAD_BYTES,
};
use regproxy_core::http::write::{request_head, Forwarding};

fuzz_target!(|data: &[u8]| {
    let Ok(Parse::Complete { head, len }) = parse_request(data) else {
        return;
    };
    assert!(len <= data.len());
    // The head ends at `len`: the same bytes without what follows parse
    // to the same length.
    match parse_request(&data[..len]) {
        Ok(Parse::Complete { len: again, .. }) => assert_eq!(again, len),
        other => panic!("prefix of a complete head: {other:?}"),
    }
    let _ = (head.path(), head.query(), head.host(), head.target());
    for trust in [false, true] {
        let fwd = Forwarding {
            client_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            tls: trust,
            trust_forwarded_headers: trust,
            forward_authorization: !trust,
            keep_override_headers: trust,
            // Dropping the body changes the framing; checked below.
            drop_body: !trust,
            default_host: "registry.internal:5000",
            request_id: "fuzz-1",
        };
        let mut out = Vec::new();
        request_head(&head, &fwd, &mut out);
        // What we forward is itself a request head the same parser accepts
        // with the same method, target and framing.
        match parse_request(&out) {
            Ok(Parse::Complete {
                head: fwd_head,
                len,
            }) => {
                assert_eq!(len, out.len());
                assert_eq!(fwd_head.method, head.method);
                assert_eq!(fwd_head.target(), head.target());
                if fwd.drop_body {
                    assert_eq!(fwd_head.body, RequestBody::None);
                } else {
                    assert_eq!(fwd_head.body, head.body);
                }
                // Every forwarded head has a Host, HTTP/1.0 ones included.
                assert!(fwd_head.host().is_some());
            }
            // Our own limits are for clients: the forwarded head adds up to
            // six fields (X-Real-IP, X-Forwarded-For/-Proto, framing,
            // X-Request-ID, Host for HTTP/1.0) to a head that may already
            // sit at MAX_HEADERS. The registry's Go server has no
            // field-count limit and a 1 MiB size limit.
            Err(HeadError::HeadTooLarge)
                if head.headers().count() + 6 > MAX_HEADERS || out.len() > MAX_HEAD_BYTES => {}
            other => panic!("forwarded head does not parse: {other:?}"),
        }
    }
});
