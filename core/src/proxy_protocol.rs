//! PROXY protocol v1 and v2: how an L4 balancer (HAProxy `send-proxy-v2`,
//! nginx `proxy_protocol on`, Envoy, cloud network balancers) tells us the
//! client address it saw before it opened its own connection to us.
//!
//! The parser ([`parse`]) is a pure function over the first bytes of a
//! connection, following HAProxy's `doc/proxy-protocol.txt` strictly: a
//! header that is malformed in any way is an error, never a guess, and
//! [`decide`] applies the listener's rules to what it found. The socket
//! side (peek, decide, read exactly the header's bytes away) is the
//! proxy's `conn/proxy_header.rs`.
//!
//! Only peers inside `[forwarding] trusted_proxies` may send a header; from
//! anyone else a header is a forged client address and the connection is
//! closed.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::Deserialize;

/// What the listener expects in front of each connection
/// (top-level `proxy_protocol` key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// No header is read; a connection's socket peer is its client.
    #[default]
    Off,
    /// Every connection starts with a v1 (text) header.
    V1,
    /// Every connection starts with a v2 (binary) header.
    V2,
    /// A trusted peer may send a v1 or v2 header, or none (rolling a
    /// balancer's `send-proxy` on without a flag day).
    Optional,
}

/// What a complete header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// The balancer speaks for itself (v2 `LOCAL`, v1 `UNKNOWN`, v2 family
    /// `UNSPEC`, e.g. its own health checks): keep the socket's peer.
    Local,
    /// A proxied connection from `source` to `destination`.
    Proxied {
        source: SocketAddr,
        destination: SocketAddr,
    },
}

/// Which protocol version a header used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// The result of looking at the first bytes of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parse {
    /// The bytes so far are a prefix of a header (or of a signature): wait
    /// for more.
    Partial,
    /// The connection does not start with a PROXY signature.
    Absent,
    /// A whole, valid header of `len` bytes.
    Complete {
        header: Header,
        version: Version,
        len: usize,
    },
}

/// Why a header is refused. Each one closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// v1: no CRLF within the 107 bytes the spec allows.
    V1TooLong,
    /// v1: not `PROXY <proto> <src> <dst> <sport> <dport>\r\n`.
    V1Syntax(&'static str),
    /// v2: the version nibble is not 2.
    V2Version(u8),
    /// v2: a command other than LOCAL (0) or PROXY (1).
    V2Command(u8),
    /// v2: a family/transport other than TCP over IPv4/IPv6, or UNSPEC.
    V2Family(u8),
    /// v2: the length cannot hold the address block, or a TLV overruns it.
    V2Length(&'static str),
    /// v2: longer than we accept ([`MAX_V2_BYTES`]).
    V2TooLong(usize),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::V1TooLong => write!(f, "PROXY v1 line longer than {V1_MAX_BYTES} bytes"),
            Error::V1Syntax(what) => write!(f, "PROXY v1 header: {what}"),
            Error::V2Version(v) => write!(f, "PROXY v2 header: version {v}, not 2"),
            Error::V2Command(c) => write!(f, "PROXY v2 header: unknown command {c}"),
            Error::V2Family(b) => write!(f, "PROXY v2 header: unsupported family 0x{b:02x}"),
            Error::V2Length(what) => write!(f, "PROXY v2 header: {what}"),
            Error::V2TooLong(n) => {
                write!(f, "PROXY v2 header of {n} bytes, over {MAX_V2_BYTES}")
            }
        }
    }
}

impl std::error::Error for Error {}

/// Spec §2.1: "a receiver may reject an incomplete line which does not
/// contain the CRLF sequence in the first 107 characters".
pub const V1_MAX_BYTES: usize = 107;
const V1_PREFIX: &[u8] = b"PROXY ";

/// Spec §2.2: the 12-byte v2 signature, then version/command, family,
/// and a 16-bit big-endian length of what follows.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
const V2_FIXED_BYTES: usize = 16;
/// A v2 header (fixed part, addresses and TLVs) longer than this is
/// refused. The spec allows 64 KiB of TLVs; balancers send a few dozen
/// bytes (HAProxy's SSL and unique-id TLVs included), and a bound keeps the
/// peek buffer small.
pub const MAX_V2_BYTES: usize = 1024;

/// Spec §2.2, address block sizes for TCP over IPv4 and IPv6.
const V2_INET_BYTES: usize = 12;
const V2_INET6_BYTES: usize = 36;

/// Looks at the first bytes of a connection: a v1 or v2 header, the start
/// of one, or something else.
pub fn parse(buf: &[u8]) -> Result<Parse, Error> {
    if starts_like(buf, V1_PREFIX) {
        return if buf.len() < V1_PREFIX.len() {
            Ok(Parse::Partial)
        } else {
            parse_v1(buf)
        };
    }
    if starts_like(buf, &V2_SIGNATURE) {
        return if buf.len() < V2_SIGNATURE.len() {
            Ok(Parse::Partial)
        } else {
            parse_v2(buf)
        };
    }
    Ok(Parse::Absent)
}

/// Whether `buf` and `sig` agree on their common prefix (an empty `buf`
/// agrees with everything: we cannot tell yet).
fn starts_like(buf: &[u8], sig: &[u8]) -> bool {
    let n = buf.len().min(sig.len());
    buf[..n] == sig[..n]
}

/// Spec §2.1: `PROXY TCP4|TCP6|UNKNOWN SRC DST SPORT DPORT\r\n`, single
/// spaces, at most 107 bytes with the CRLF.
fn parse_v1(buf: &[u8]) -> Result<Parse, Error> {
    let window = &buf[..buf.len().min(V1_MAX_BYTES)];
    // The line is printable ASCII up to its CR; anything else (a bare LF,
    // a NUL, UTF-8) is refused as soon as it is seen.
    let end = window.iter().position(|&b| !(b' '..=b'~').contains(&b));
    if let Some(i) = end {
        if window[i] != b'\r' {
            return Err(Error::V1Syntax("not printable ASCII before CRLF"));
        }
    }
    let Some(cr) = end else {
        return if buf.len() >= V1_MAX_BYTES {
            Err(Error::V1TooLong)
        } else {
            Ok(Parse::Partial)
        };
    };
    match window.get(cr + 1) {
        None if buf.len() < V1_MAX_BYTES => return Ok(Parse::Partial),
        Some(b'\n') => {}
        _ => return Err(Error::V1Syntax("CR not followed by LF")),
    }
    let len = cr + 2;
    let line = std::str::from_utf8(&buf[V1_PREFIX.len()..cr])
        .map_err(|_| Error::V1Syntax("not printable ASCII before CRLF"))?;
    let complete = |header| {
        Ok(Parse::Complete {
            header,
            version: Version::V1,
            len,
        })
    };
    // "UNKNOWN": the sender does not know the addresses; the rest of the
    // line is to be ignored.
    if line == "UNKNOWN" || line.starts_with("UNKNOWN ") {
        return complete(Header::Local);
    }
    let mut fields = line.split(' ');
    let proto = fields.next().unwrap_or_default();
    let (Some(src), Some(dst), Some(sport), Some(dport), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(Error::V1Syntax(
            "expected protocol, two addresses, two ports",
        ));
    };
    let (src, dst): (IpAddr, IpAddr) = match proto {
        "TCP4" => (
            IpAddr::V4(v1_addr::<Ipv4Addr>(src)?),
            IpAddr::V4(v1_addr::<Ipv4Addr>(dst)?),
        ),
        "TCP6" => (
            IpAddr::V6(v1_addr::<Ipv6Addr>(src)?),
            IpAddr::V6(v1_addr::<Ipv6Addr>(dst)?),
        ),
        _ => return Err(Error::V1Syntax("protocol is not TCP4, TCP6 or UNKNOWN")),
    };
    complete(Header::Proxied {
        source: SocketAddr::new(src, v1_port(sport)?),
        destination: SocketAddr::new(dst, v1_port(dport)?),
    })
}

fn v1_addr<A: std::str::FromStr>(s: &str) -> Result<A, Error> {
    s.parse()
        .map_err(|_| Error::V1Syntax("address does not match the protocol"))
}

/// Spec §2.1: ports are decimal 0..65535 without leading zeros.
fn v1_port(s: &str) -> Result<u16, Error> {
    let bad = Error::V1Syntax("port is not a decimal 0..65535 without leading zeros");
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return Err(bad);
    }
    s.parse().map_err(|_| bad)
}

/// Spec §2.2: signature, `0x2?` version/command, family/transport, length,
/// addresses, then TLVs (type, 16-bit length, value) to the end.
fn parse_v2(buf: &[u8]) -> Result<Parse, Error> {
    if buf.len() < V2_FIXED_BYTES {
        return Ok(Parse::Partial);
    }
    let ver_cmd = buf[12];
    let family = buf[13];
    let body_len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let version = ver_cmd >> 4;
    if version != 2 {
        return Err(Error::V2Version(version));
    }
    let len = V2_FIXED_BYTES + body_len;
    if len > MAX_V2_BYTES {
        return Err(Error::V2TooLong(len));
    }
    // Commands: 0x0 LOCAL, 0x1 PROXY; "the receiver must drop the
    // connection" on anything else.
    let local = match ver_cmd & 0x0f {
        0 => true,
        1 => false,
        c => return Err(Error::V2Command(c)),
    };
    if buf.len() < len {
        return Ok(Parse::Partial);
    }
    let body = &buf[V2_FIXED_BYTES..len];
    let complete = |header| {
        Ok(Parse::Complete {
            header,
            version: Version::V2,
            len,
        })
    };
    // LOCAL: "the receiver must accept this connection as valid and must
    // use the real connection endpoints and discard the protocol block".
    if local {
        return complete(Header::Local);
    }
    // High nibble: family (0 UNSPEC, 1 INET, 2 INET6, 3 UNIX); low nibble:
    // transport (0 UNSPEC, 1 STREAM, 2 DGRAM). We listen on TCP only.
    let (header, addr_len) = match family {
        0x00 => (Header::Local, 0),
        0x11 => {
            let a = body
                .get(..V2_INET_BYTES)
                .ok_or(Error::V2Length("too short for IPv4 addresses"))?;
            let ip = |o: usize| IpAddr::V4(Ipv4Addr::new(a[o], a[o + 1], a[o + 2], a[o + 3]));
            let port = |o: usize| u16::from_be_bytes([a[o], a[o + 1]]);
            (
                Header::Proxied {
                    source: SocketAddr::new(ip(0), port(8)),
                    destination: SocketAddr::new(ip(4), port(10)),
                },
                V2_INET_BYTES,
            )
        }
        0x21 => {
            let a = body
                .get(..V2_INET6_BYTES)
                .ok_or(Error::V2Length("too short for IPv6 addresses"))?;
            let ip = |o: usize| {
                let mut b = [0u8; 16];
                b.copy_from_slice(&a[o..o + 16]);
                IpAddr::V6(Ipv6Addr::from(b))
            };
            let port = |o: usize| u16::from_be_bytes([a[o], a[o + 1]]);
            (
                Header::Proxied {
                    source: SocketAddr::new(ip(0), port(32)),
                    destination: SocketAddr::new(ip(16), port(34)),
                },
                V2_INET6_BYTES,
            )
        }
        other => return Err(Error::V2Family(other)),
    };
    if header != Header::Local {
        check_tlvs(&body[addr_len..])?;
    }
    complete(header)
}

/// Spec §2.2.7: TLVs fill the rest exactly. Their contents (ALPN, SSL
/// details, unique id, CRC32C) are not used, but a TLV that overruns the
/// header means the sender and we disagree on framing.
fn check_tlvs(mut rest: &[u8]) -> Result<(), Error> {
    while !rest.is_empty() {
        let [_kind, hi, lo, value @ ..] = rest else {
            return Err(Error::V2Length("truncated TLV"));
        };
        let n = usize::from(u16::from_be_bytes([*hi, *lo]));
        if value.len() < n {
            return Err(Error::V2Length("TLV longer than the header"));
        }
        rest = &value[n..];
    }
    Ok(())
}

/// Why [`decide`] refuses a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A header (or the obligation to send one) from a peer outside
    /// `trusted_proxies`.
    Untrusted,
    /// The listener requires a header of `expected` and none came.
    Missing,
    /// A header of the other version than the listener requires.
    WrongVersion,
    Malformed(Error),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Untrusted => f.write_str("PROXY header from a peer outside trusted_proxies"),
            Refusal::Missing => f.write_str("no PROXY header"),
            Refusal::WrongVersion => f.write_str("PROXY header of the wrong version"),
            Refusal::Malformed(e) => e.fmt(f),
        }
    }
}

/// The rules, given what [`parse`] found: the client address to use and
/// how many bytes to consume, or why the connection closes. `parsed` is
/// never `Partial` here.
pub fn decide(
    mode: Mode,
    trusted: bool,
    peer: SocketAddr,
    parsed: Result<Parse, Error>,
) -> Result<(SocketAddr, usize), Refusal> {
    let parsed = parsed.map_err(Refusal::Malformed)?;
    match (mode, parsed) {
        (Mode::Off, _) | (Mode::Optional, Parse::Absent) => Ok((peer, 0)),
        (_, Parse::Partial) | (_, Parse::Absent) => Err(Refusal::Missing),
        (_, Parse::Complete { .. }) if !trusted => Err(Refusal::Untrusted),
        (Mode::V1, Parse::Complete { version, .. }) if version != Version::V1 => {
            Err(Refusal::WrongVersion)
        }
        (Mode::V2, Parse::Complete { version, .. }) if version != Version::V2 => {
            Err(Refusal::WrongVersion)
        }
        (_, Parse::Complete { header, len, .. }) => match header {
            Header::Local => Ok((peer, len)),
            Header::Proxied { source, .. } => Ok((source, len)),
        },
    }
}

#[cfg(test)]
mod tests;
