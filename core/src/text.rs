//! Small text formatters for the request path, written without `core::fmt`.
//!
//! Every request writes numbers and an address into its response head, its
//! request id and its access-log line. Through `core::fmt` (`write!`,
//! `{:.6}` on an `f64`, `Display` for an address) that cost about 8% of a
//! small request's instructions (`bench/profile`). These write the same
//! text directly; unit tests hold each to what `core::fmt` writes.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// An address as text, on the stack: what `IpAddr`'s `Display` writes.
pub struct IpText {
    /// The longest IPv6 text, `ffff:…:255.255.255.255`, is 45 bytes.
    buf: [u8; 45],
    len: usize,
}

impl IpText {
    pub fn new(ip: IpAddr) -> IpText {
        let mut t = IpText {
            buf: [0; 45],
            len: 0,
        };
        match ip {
            IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        t.push(b".");
                    }
                    t.push(itoa::Buffer::new().format(octet).as_bytes());
                }
            }
            // Rare behind most fleets; `Display` knows the zero-run rules.
            IpAddr::V6(v6) => {
                let mut rest = &mut t.buf[..];
                let _ = write!(rest, "{v6}");
                t.len = 45 - rest.len();
            }
        }
        t
    }

    fn push(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        if let Some(dst) = self.buf.get_mut(self.len..end) {
            dst.copy_from_slice(bytes);
            self.len = end;
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII is ever pushed.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

/// `addr` as `SocketAddr`'s `Display` writes it: `1.2.3.4:5000`,
/// `[::1]:5000`.
pub fn push_socket_addr(out: &mut String, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(v4) => {
            out.push_str(IpText::new(IpAddr::V4(*v4.ip())).as_str());
            out.push(':');
            out.push_str(itoa::Buffer::new().format(v4.port()));
        }
        // A scope id and brackets: rare enough for `Display`.
        SocketAddr::V6(v6) => {
            use std::fmt::Write as _;
            let _ = write!(out, "{v6}");
        }
    }
}

/// `n` in decimal.
pub fn push_int(out: &mut String, n: impl itoa::Integer) {
    out.push_str(itoa::Buffer::new().format(n));
}

/// `n` in decimal, zero-padded to at least `width` digits, as
/// `format!("{n:0width$}")` writes it.
pub fn push_padded(out: &mut String, n: u64, width: usize) {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(n);
    for _ in digits.len()..width {
        out.push('0');
    }
    out.push_str(digits);
}

/// `n` in lowercase hex, zero-padded to at least `width` digits, as
/// `format!("{n:0width$x}")` writes it.
pub fn push_hex(out: &mut String, n: u64, width: usize) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let significant = (64 - n.leading_zeros() as usize).div_ceil(4).max(1);
    for i in (0..significant.max(width)).rev() {
        // Past the 16 digits a u64 has, only padding.
        let nibble = if i < 16 { (n >> (4 * i)) & 0xf } else { 0 };
        out.push(char::from(DIGITS[nibble as usize]));
    }
}

/// A byte as `\xHH` (uppercase), the access log's escape.
pub fn push_byte_escape(out: &mut String, b: u8) {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    out.push_str("\\x");
    out.push(char::from(DIGITS[usize::from(b >> 4)]));
    out.push(char::from(DIGITS[usize::from(b & 0xf)]));
}

/// Which unit [`push_duration`] writes a duration in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Seconds with six decimals: `0.001500`.
    Seconds,
    /// Milliseconds with three decimals: `1.500`.
    Millis,
}

/// `d` rounded to the microsecond, in `unit`, as `{:.6}` of
/// `d.as_secs_f64()` (or `{:.3}` of milliseconds) writes it.
pub fn push_duration(out: &mut String, d: Duration, unit: Unit) {
    let micros = (d.as_nanos() + 500) / 1000;
    let (per_unit, places) = match unit {
        Unit::Seconds => (1_000_000, 6),
        Unit::Millis => (1_000, 3),
    };
    push_int(out, micros / per_unit);
    out.push('.');
    push_padded(out, (micros % per_unit) as u64, places);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_match_display() {
        for ip in [
            "0.0.0.0",
            "10.1.2.3",
            "255.255.255.255",
            "::",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:10.1.2.3",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ] {
            let ip: IpAddr = ip.parse().expect("ip");
            assert_eq!(IpText::new(ip).as_str(), ip.to_string());
            for port in [0, 80, 65535] {
                let addr = SocketAddr::new(ip, port);
                let mut s = String::new();
                push_socket_addr(&mut s, addr);
                assert_eq!(s, addr.to_string());
            }
        }
    }

    #[test]
    fn numbers_match_core_fmt() {
        for n in [
            0,
            1,
            0xf,
            0x10,
            999,
            1000,
            0xdead_beef,
            0x1_0000_0000,
            u64::MAX,
        ] {
            for width in [0, 1, 3, 8, 20, 22] {
                let mut s = String::new();
                push_hex(&mut s, n, width);
                assert_eq!(s, format!("{n:0width$x}"), "{n:#x} width {width}");
                s.clear();
                push_padded(&mut s, n, width);
                assert_eq!(s, format!("{n:0width$}"), "{n} width {width}");
            }
        }
    }

    #[test]
    fn byte_escapes_match_core_fmt() {
        for b in 0..=255u8 {
            let mut s = String::new();
            push_byte_escape(&mut s, b);
            assert_eq!(s, format!("\\x{b:02X}"));
        }
    }

    #[test]
    fn durations_match_core_fmt() {
        for d in [
            Duration::ZERO,
            Duration::from_micros(1500),
            Duration::from_nanos(999),
            Duration::from_nanos(1_234_567_891),
            Duration::from_secs(86_400 * 365),
            Duration::from_millis(42),
        ] {
            let mut s = String::new();
            push_duration(&mut s, d, Unit::Seconds);
            assert_eq!(s, format!("{:.6}", d.as_secs_f64()), "{d:?}");
            s.clear();
            push_duration(&mut s, d, Unit::Millis);
            assert_eq!(s, format!("{:.3}", d.as_secs_f64() * 1000.0), "{d:?}");
        }
    }
}
