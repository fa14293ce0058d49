use super::*;

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

fn complete(buf: &[u8]) -> (Header, Version, usize) {
    match parse(buf) {
        Ok(Parse::Complete {
            header,
            version,
            len,
        }) => (header, version, len),
        other => panic!("expected a complete header, got {other:?} for {buf:?}"),
    }
}

fn v2(ver_cmd: u8, family: u8, body: &[u8]) -> Vec<u8> {
    let mut b = V2_SIGNATURE.to_vec();
    b.push(ver_cmd);
    b.push(family);
    b.extend_from_slice(&u16::try_from(body.len()).expect("len").to_be_bytes());
    b.extend_from_slice(body);
    b
}

fn inet_body() -> Vec<u8> {
    // 192.0.2.7:51000 -> 10.0.0.1:5043
    let mut b = vec![192, 0, 2, 7, 10, 0, 0, 1];
    b.extend_from_slice(&51000u16.to_be_bytes());
    b.extend_from_slice(&5043u16.to_be_bytes());
    b
}

// === v1 ===

#[test]
fn v1_tcp4_and_tcp6() {
    let line = b"PROXY TCP4 192.0.2.7 10.0.0.1 51000 5043\r\nGET / HTTP/1.1\r\n";
    let (h, v, len) = complete(line);
    assert_eq!(v, Version::V1);
    assert_eq!(len, line.len() - "GET / HTTP/1.1\r\n".len());
    assert_eq!(
        h,
        Header::Proxied {
            source: sa("192.0.2.7:51000"),
            destination: sa("10.0.0.1:5043"),
        }
    );
    let (h, _, _) = complete(b"PROXY TCP6 2001:db8::7 ::1 0 65535\r\n");
    assert_eq!(
        h,
        Header::Proxied {
            source: sa("[2001:db8::7]:0"),
            destination: sa("[::1]:65535"),
        }
    );
}

#[test]
fn v1_unknown_keeps_the_peer() {
    assert_eq!(complete(b"PROXY UNKNOWN\r\n").0, Header::Local);
    assert_eq!(
        complete(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n").0,
        Header::Local
    );
}

#[test]
fn v1_longest_line_is_accepted_and_one_more_refused() {
    let longest = b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_eq!(longest.len(), 104);
    complete(longest);
    let mut long = b"PROXY UNKNOWN ".to_vec();
    long.resize(V1_MAX_BYTES, b'x');
    assert_eq!(parse(&long), Err(Error::V1TooLong));
    long.truncate(V1_MAX_BYTES - 2);
    long.extend_from_slice(b"\r\n");
    assert_eq!(complete(&long).2, V1_MAX_BYTES);
}

#[test]
fn v1_prefixes_are_partial() {
    let line = b"PROXY TCP4 192.0.2.7 10.0.0.1 51000 5043\r\n";
    for n in 1..line.len() {
        assert_eq!(parse(&line[..n]), Ok(Parse::Partial), "{n} bytes");
    }
}

#[test]
fn v1_malformed_is_refused() {
    for bad in [
        &b"PROXY TCP4 192.0.2.7 10.0.0.1 51000 5043\n"[..],
        b"PROXY TCP4 192.0.2.7 10.0.0.1 51000 5043\rX",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 51000\r\n",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 51000 5043 9\r\n",
        b"PROXY TCP4  192.0.2.7 10.0.0.1 51000 5043\r\n",
        b"PROXY TCP4 2001:db8::1 10.0.0.1 51000 5043\r\n",
        b"PROXY TCP6 192.0.2.7 10.0.0.1 51000 5043\r\n",
        b"PROXY UDP4 192.0.2.7 10.0.0.1 51000 5043\r\n",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 051000 5043\r\n",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 65536 5043\r\n",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 -1 5043\r\n",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 +1 5043\r\n",
        b"PROXY TCP4 192.0.2.07 10.0.0.1 1 5043\r\n",
        b"PROXY tcp4 192.0.2.7 10.0.0.1 1 5043\r\n",
        b"PROXY \xff\r\n",
        b"PROXY \r\n",
    ] {
        assert!(
            parse(bad).is_err(),
            "{:?} gave {:?}",
            String::from_utf8_lossy(bad),
            parse(bad)
        );
    }
}

// === v2 ===

#[test]
fn v2_inet_and_inet6() {
    let mut bytes = v2(0x21, 0x11, &inet_body());
    let len = bytes.len();
    bytes.extend_from_slice(b"\x16\x03\x01"); // a TLS ClientHello follows
    let (h, v, n) = complete(&bytes);
    assert_eq!((v, n), (Version::V2, len));
    assert_eq!(
        h,
        Header::Proxied {
            source: sa("192.0.2.7:51000"),
            destination: sa("10.0.0.1:5043"),
        }
    );

    let mut body = Vec::new();
    body.extend_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().expect("v6").octets());
    body.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
    body.extend_from_slice(&1u16.to_be_bytes());
    body.extend_from_slice(&443u16.to_be_bytes());
    let (h, _, _) = complete(&v2(0x21, 0x21, &body));
    assert_eq!(
        h,
        Header::Proxied {
            source: sa("[2001:db8::7]:1"),
            destination: sa("[::1]:443"),
        }
    );
}

#[test]
fn v2_local_and_unspec_keep_the_peer() {
    assert_eq!(complete(&v2(0x20, 0x00, &[])).0, Header::Local);
    // LOCAL with an address block: discarded whole.
    let b = v2(0x20, 0x11, &inet_body());
    assert_eq!(complete(&b), (Header::Local, Version::V2, b.len()));
    assert_eq!(complete(&v2(0x21, 0x00, &[])).0, Header::Local);
}

#[test]
fn v2_tlvs_are_skipped_but_must_fit() {
    let mut body = inet_body();
    body.extend_from_slice(&[0x01, 0x00, 0x02, b'h', b'2']); // ALPN
    body.extend_from_slice(&[0x04, 0x00, 0x00]); // NOOP, empty
    let b = v2(0x21, 0x11, &body);
    assert_eq!(complete(&b).2, b.len());

    let mut overrun = inet_body();
    overrun.extend_from_slice(&[0x01, 0x00, 0x05, b'h']);
    assert_eq!(
        parse(&v2(0x21, 0x11, &overrun)),
        Err(Error::V2Length("TLV longer than the header"))
    );
    let mut truncated = inet_body();
    truncated.extend_from_slice(&[0x01, 0x00]);
    assert_eq!(
        parse(&v2(0x21, 0x11, &truncated)),
        Err(Error::V2Length("truncated TLV"))
    );
}

#[test]
fn v2_malformed_is_refused() {
    assert_eq!(
        parse(&v2(0x11, 0x11, &inet_body())),
        Err(Error::V2Version(1))
    );
    assert_eq!(
        parse(&v2(0x22, 0x11, &inet_body())),
        Err(Error::V2Command(2))
    );
    for family in [0x12, 0x22, 0x31, 0x32, 0x13, 0x41, 0x10] {
        assert_eq!(
            parse(&v2(0x21, family, &[0; 216])),
            Err(Error::V2Family(family)),
            "{family:#x}"
        );
    }
    assert!(matches!(
        parse(&v2(0x21, 0x11, &[0; 11])),
        Err(Error::V2Length(_))
    ));
    assert!(matches!(
        parse(&v2(0x21, 0x21, &[0; 35])),
        Err(Error::V2Length(_))
    ));
    let mut huge = V2_SIGNATURE.to_vec();
    huge.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
    assert_eq!(parse(&huge), Err(Error::V2TooLong(16 + 0xffff)));
}

#[test]
fn v2_prefixes_are_partial() {
    let b = v2(0x21, 0x11, &inet_body());
    for n in 1..b.len() {
        assert_eq!(parse(&b[..n]), Ok(Parse::Partial), "{n} bytes");
    }
}

// === neither ===

#[test]
fn other_protocols_are_absent() {
    for other in [
        &b"GET /v2/ HTTP/1.1\r\n"[..],
        b"POST /v2/",
        b"PUT /v2/",
        b"PATCH /v2/",
        b"\x16\x03\x01\x02\x00",
        b"\r\n\r\nX",
        b"PROXYX",
    ] {
        assert_eq!(parse(other), Ok(Parse::Absent), "{other:?}");
    }
    // "P" alone could still become "PROXY " or "POST": wait.
    assert_eq!(parse(b"P"), Ok(Parse::Partial));
}

// === decide ===

#[test]
fn decide_follows_mode_and_trust() {
    let peer = sa("10.0.0.9:40000");
    let carried = sa("192.0.2.7:51000");
    let v1 = parse(b"PROXY TCP4 192.0.2.7 10.0.0.1 51000 5043\r\n");
    let v2h = parse(&v2(0x21, 0x11, &inet_body()));
    let local = parse(&v2(0x20, 0x00, &[]));
    let absent = parse(b"GET / HTTP/1.1\r\n");

    assert_eq!(decide(Mode::V2, true, peer, v2h), Ok((carried, 28)));
    assert_eq!(decide(Mode::V1, true, peer, v1), Ok((carried, 42)));
    assert_eq!(decide(Mode::Optional, true, peer, v1), Ok((carried, 42)));
    assert_eq!(decide(Mode::Optional, true, peer, v2h), Ok((carried, 28)));
    assert_eq!(decide(Mode::V2, true, peer, local), Ok((peer, 16)));
    assert_eq!(decide(Mode::Optional, true, peer, absent), Ok((peer, 0)));
    assert_eq!(decide(Mode::Optional, false, peer, absent), Ok((peer, 0)));

    assert_eq!(decide(Mode::V2, true, peer, v1), Err(Refusal::WrongVersion));
    assert_eq!(
        decide(Mode::V1, true, peer, v2h),
        Err(Refusal::WrongVersion)
    );
    assert_eq!(decide(Mode::V2, true, peer, absent), Err(Refusal::Missing));
    assert_eq!(decide(Mode::V2, false, peer, v2h), Err(Refusal::Untrusted));
    assert_eq!(
        decide(Mode::Optional, false, peer, v1),
        Err(Refusal::Untrusted)
    );
    assert!(matches!(
        decide(Mode::Optional, true, peer, parse(b"PROXY TCP9\r\n")),
        Err(Refusal::Malformed(_))
    ));
}
