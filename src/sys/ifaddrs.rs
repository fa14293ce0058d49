//! The machine's interface addresses, from getifaddrs(3), for the host
//! checks of `regproxy tuning` (which NIC a listen address is on). Neither
//! std nor rustix has the call; libc does, so the list is walked here,
//! copied into owned values, and freed before returning.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Each interface's IPv4 and IPv6 addresses, as (interface name, address);
/// empty if the call fails.
pub fn interface_addrs() -> Vec<(String, IpAddr)> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a pointer to a list it allocates into
    // `head`, which is a valid place for one pointer.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, which
        // stays allocated until freeifaddrs below.
        let node = unsafe { &*cur };
        if let (Some(name), Some(ip)) = (name_of(node), address_of(node)) {
            out.push((name, ip));
        }
        cur = node.ifa_next;
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed once;
    // nothing borrowed from the list outlives this point (all was copied).
    unsafe { libc::freeifaddrs(head) };
    out
}

fn name_of(node: &libc::ifaddrs) -> Option<String> {
    if node.ifa_name.is_null() {
        return None;
    }
    // SAFETY: a non-null `ifa_name` is a NUL-terminated string owned by the
    // list, alive while `node` is.
    let name = unsafe { CStr::from_ptr(node.ifa_name) };
    Some(name.to_string_lossy().into_owned())
}

fn address_of(node: &libc::ifaddrs) -> Option<IpAddr> {
    if node.ifa_addr.is_null() {
        return None;
    }
    // SAFETY: a non-null `ifa_addr` points at a sockaddr owned by the list;
    // its family field is always readable.
    let family = i32::from(unsafe { (*node.ifa_addr).sa_family });
    match family {
        libc::AF_INET => {
            // SAFETY: the family says this sockaddr is a sockaddr_in.
            let v4 = unsafe { &*node.ifa_addr.cast::<libc::sockaddr_in>() };
            Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this sockaddr is a sockaddr_in6.
            let v6 = unsafe { &*node.ifa_addr.cast::<libc::sockaddr_in6>() };
            Some(IpAddr::V6(Ipv6Addr::from(v6.sin6_addr.s6_addr)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_listed() {
        let addrs = interface_addrs();
        assert!(
            addrs
                .iter()
                .any(|(_, ip)| *ip == IpAddr::V4(Ipv4Addr::LOCALHOST)),
            "{addrs:?}"
        );
    }
}
