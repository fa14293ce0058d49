//! Who the client is: the address the brute-force limiter counts and the
//! access log records. Behind a load balancer the TCP peer is the balancer,
//! and counting it would let ten bad logins from anyone lock out everyone;
//! the balancer's `X-Forwarded-For` names the real client.
//!
//! Pure: a function of the peer, the `[forwarding]` settings and the
//! request's `X-Forwarded-For` values. What regproxy *sends* upstream
//! (X-Real-IP, the appended X-Forwarded-For) is decided in
//! `http::write` and keeps naming the direct peer, as nginx's
//! `$proxy_add_x_forwarded_for` does.
//!
//! Trust, as nginx's `set_real_ip_from` + `real_ip_recursive on`:
//! - `trust_forwarded_headers = false`: the peer, whatever headers say.
//! - `trust_forwarded_headers = true`, no `trusted_proxies`: the peer is the
//!   one trusted balancer; the client is the right-most entry, the one the
//!   balancer itself appended. Entries further left were written by the
//!   client and prove nothing.
//! - with `trusted_proxies`: a peer outside the list is the client (a
//!   direct connection cannot vouch for anyone). From a listed peer, walk
//!   the entries right to left, skipping listed addresses; the first
//!   unlisted one is the client. If every entry is listed, the left-most is.

use std::net::{IpAddr, SocketAddr};

use crate::cidr::{self, Cidr};
use crate::config::ForwardingConfig;
use crate::http::head::RequestHead;

/// At most this many `X-Forwarded-For` entries are walked: a real chain of
/// balancers is a handful long, and the walk must not be a loop a client
/// can lengthen at will (the head is bounded anyway, at 32 KiB).
pub const MAX_FORWARDED_HOPS: usize = 16;

/// The client's address and how it was learnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr {
    pub ip: IpAddr,
    pub source: Source,
}

/// How a [`ClientAddr`] was learnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The TCP peer, no balancer involved (or none trusted).
    Peer,
    /// Reported by a trusted balancer.
    Forwarded,
    /// A trusted balancer sent no usable client address (header missing,
    /// unparsable, or a chain longer than [`MAX_FORWARDED_HOPS`]); `ip` is
    /// the nearest trusted hop. Per-address limits keyed on it would count
    /// a whole balancer, so callers may choose to skip them.
    Unknown,
}

/// The client of `head`, which arrived from `peer`.
pub fn of_request(peer: IpAddr, fwd: &ForwardingConfig, head: &RequestHead) -> ClientAddr {
    if !fwd.trust_forwarded_headers {
        return ClientAddr {
            ip: peer,
            source: Source::Peer,
        };
    }
    // RFC 9110 §5.3: several field lines of one list field are one list,
    // in order.
    let values: Vec<&[u8]> = head
        .headers()
        .filter(|(name, _)| name.eq_ignore_ascii_case("x-forwarded-for"))
        .map(|(_, value)| value)
        .collect();
    resolve(peer, true, &fwd.trusted_proxies, &values)
}

/// Whether `peer` is a balancer whose headers are believed: the same rule
/// [`resolve`] applies before reading `X-Forwarded-For`. Other headers a
/// balancer sets for us (`X-Request-ID`) are taken on the same terms.
pub fn peer_is_trusted(peer: IpAddr, fwd: &ForwardingConfig) -> bool {
    fwd.trust_forwarded_headers
        && (fwd.trusted_proxies.is_empty() || cidr::any_contains(&fwd.trusted_proxies, peer))
}

/// [`of_request`] over the raw values of every `X-Forwarded-For` field
/// line, in the order they came.
pub fn resolve(peer: IpAddr, trust: bool, trusted: &[Cidr], xff: &[&[u8]]) -> ClientAddr {
    let peer_only = ClientAddr {
        ip: peer,
        source: Source::Peer,
    };
    if !trust || (!trusted.is_empty() && !cidr::any_contains(trusted, peer)) {
        return peer_only;
    }
    let unknown = |ip| ClientAddr {
        ip,
        source: Source::Unknown,
    };
    // Entries right to left, across field lines.
    let mut entries = xff
        .iter()
        .rev()
        .flat_map(|v| v.rsplit(|&b| b == b','))
        .map(<[u8]>::trim_ascii);
    let (mut nearest, mut walked) = (peer, false);
    for _ in 0..MAX_FORWARDED_HOPS {
        let Some(entry) = entries.next() else {
            // Ran off the left end: either no header at all, or every entry
            // was a trusted balancer, and then the left-most one is the
            // best word there is.
            return if !walked {
                unknown(peer)
            } else {
                ClientAddr {
                    ip: nearest,
                    source: Source::Forwarded,
                }
            };
        };
        let Some(ip) = parse_entry(entry) else {
            return unknown(nearest);
        };
        // Without a list only the peer is trusted: the right-most entry is
        // the client, whatever it says.
        if trusted.is_empty() || !cidr::any_contains(trusted, ip) {
            return ClientAddr {
                ip,
                source: Source::Forwarded,
            };
        }
        (nearest, walked) = (ip, true);
    }
    unknown(nearest)
}

/// One list entry: an address, possibly with a port (`192.0.2.1:4711`,
/// `[2001:db8::1]:4711`), as some balancers write them. `unknown`, obfuscated
/// identifiers (RFC 7239 §6) and anything else give `None`.
fn parse_entry(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(entry).ok()?;
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    text.parse::<SocketAddr>().ok().map(|s| s.ip())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const BALANCER: &str = "10.0.0.5";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn fwd(ip_: &str) -> ClientAddr {
        ClientAddr {
            ip: ip(ip_),
            source: Source::Forwarded,
        }
    }

    fn peer(ip_: &str) -> ClientAddr {
        ClientAddr {
            ip: ip(ip_),
            source: Source::Peer,
        }
    }

    fn unknown(ip_: &str) -> ClientAddr {
        ClientAddr {
            ip: ip(ip_),
            source: Source::Unknown,
        }
    }

    #[test]
    fn untrusted_headers_are_ignored() {
        let got = resolve(ip("192.0.2.9"), false, &[], &[b"198.51.100.7"]);
        assert_eq!(got, peer("192.0.2.9"));
        let got = resolve(
            ip("192.0.2.9"),
            false,
            &cidrs(&["0.0.0.0/0"]),
            &[b"1.2.3.4"],
        );
        assert_eq!(got, peer("192.0.2.9"));
    }

    #[test]
    fn no_list_trusts_only_the_peer_and_takes_the_last_entry() {
        let b = ip(BALANCER);
        // The client forged "6.6.6.6"; the balancer appended the real one.
        let got = resolve(b, true, &[], &[b"6.6.6.6, 198.51.100.7"]);
        assert_eq!(got, fwd("198.51.100.7"));
        // Even a private-looking last entry: with no list nothing else is
        // known to be a balancer.
        assert_eq!(resolve(b, true, &[], &[b"10.0.0.9"]), fwd("10.0.0.9"));
        assert_eq!(resolve(b, true, &[], &[]), unknown(BALANCER));
        assert_eq!(resolve(b, true, &[], &[b""]), unknown(BALANCER));
        assert_eq!(resolve(b, true, &[], &[b"unknown"]), unknown(BALANCER));
    }

    #[test]
    fn walks_from_the_right_skipping_trusted_hops() {
        let list = cidrs(&["10.0.0.0/8", "fd00::/8"]);
        let b = ip(BALANCER);
        let got = resolve(
            b,
            true,
            &list,
            &[b"6.6.6.6, 203.0.113.4, 10.1.1.1, fd00::2"],
        );
        assert_eq!(got, fwd("203.0.113.4"));
        // Across field lines, in order: the second line is further right.
        let got = resolve(b, true, &list, &[b"6.6.6.6, 203.0.113.4", b"10.1.1.1"]);
        assert_eq!(got, fwd("203.0.113.4"));
        // All trusted: the left-most one.
        let got = resolve(b, true, &list, &[b"10.9.9.9, 10.1.1.1"]);
        assert_eq!(got, fwd("10.9.9.9"));
        // Nothing usable from a trusted peer.
        assert_eq!(resolve(b, true, &list, &[]), unknown(BALANCER));
        let got = resolve(b, true, &list, &[b"6.6.6.6, garbage, 10.1.1.1"]);
        assert_eq!(got, unknown("10.1.1.1"));
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let list = cidrs(&["10.0.0.0/8"]);
        let got = resolve(ip("203.0.113.50"), true, &list, &[b"198.51.100.7"]);
        assert_eq!(got, peer("203.0.113.50"));
    }

    #[test]
    fn ports_brackets_and_mapped_addresses() {
        let list = cidrs(&["10.0.0.0/8"]);
        let b = ip(BALANCER);
        assert_eq!(
            resolve(b, true, &list, &[b"198.51.100.7:4711"]),
            fwd("198.51.100.7")
        );
        assert_eq!(
            resolve(b, true, &list, &[b" [2001:db8::1]:443 "]),
            fwd("2001:db8::1")
        );
        // A dual-stack listener sees the balancer as ::ffff:10.0.0.5.
        let mapped = ip("::ffff:10.0.0.5");
        assert_eq!(
            resolve(mapped, true, &list, &[b"198.51.100.7"]),
            fwd("198.51.100.7")
        );
    }

    #[test]
    fn long_chains_stop_at_the_hop_limit() {
        let list = cidrs(&["10.0.0.0/8"]);
        let mut chain = String::from("198.51.100.7");
        for i in 0..MAX_FORWARDED_HOPS {
            chain.push_str(&format!(", 10.0.0.{i}"));
        }
        let got = resolve(ip(BALANCER), true, &list, &[chain.as_bytes()]);
        assert_eq!(got.source, Source::Unknown);
        // One hop fewer and the client is reached.
        let short = chain.replacen(", 10.0.0.0", "", 1);
        let got = resolve(ip(BALANCER), true, &list, &[short.as_bytes()]);
        assert_eq!(got, fwd("198.51.100.7"));
    }
}
