//! The client's address behind trusted proxies (`[server] trusted_proxies`).
//!
//! Behind a load balancer every connection comes from the balancer; source-network
//! limits, new-network alerts and the audit log need the client's own address.
//! When (and only when) the connection comes from a trusted proxy, the address is
//! read from `X-Forwarded-For`: the nearest address in it that is not itself a
//! trusted proxy (walking from the right, since each proxy appends the address it
//! saw, and anything left of the first untrusted hop is the client's to forge).
//! Without trusted proxies, or from any other peer, the header is ignored.

use axum::http::HeaderMap;
use ipnet::IpNet;
use std::net::IpAddr;

/// The most `X-Forwarded-For` hops read (a longer chain is cut, from the left).
const MAX_HOPS: usize = 32;

/// The address to treat as the client's: `peer` unless it is a trusted proxy
/// and `X-Forwarded-For` names the hop before it.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if trusted.is_empty() || !is_trusted(&peer) {
        return peer;
    }
    // Several header lines are one list, in order.
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev().take(MAX_HOPS) {
        let Some(ip) = parse_hop(hop) else {
            // A malformed hop ends the trustworthy part of the chain.
            break;
        };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, an IPv6 address in brackets, or
/// either with a port.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = hop.parse::<std::net::SocketAddr>() {
        return Some(sa.ip());
    }
    hop.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .and_then(|h| h.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn nets(v: &[&str]) -> Vec<IpNet> {
        v.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn without_trusted_proxies_the_header_is_ignored() {
        let h = headers(&["203.0.113.7"]);
        assert_eq!(client_address(ip("10.0.0.5"), &h, &[]), ip("10.0.0.5"));
    }

    #[test]
    fn from_an_untrusted_peer_the_header_is_ignored() {
        let h = headers(&["203.0.113.7"]);
        let t = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_address(ip("198.51.100.9"), &h, &t),
            ip("198.51.100.9")
        );
    }

    #[test]
    fn the_nearest_untrusted_hop_is_the_client() {
        let t = nets(&["10.0.0.0/8"]);
        // The client forged a first entry; the balancer appended what it saw.
        let h = headers(&["1.2.3.4, 203.0.113.7, 10.0.0.9"]);
        assert_eq!(client_address(ip("10.0.0.5"), &h, &t), ip("203.0.113.7"));
        // Several header lines are one list.
        let h = headers(&["1.2.3.4", "203.0.113.7"]);
        assert_eq!(client_address(ip("10.0.0.5"), &h, &t), ip("203.0.113.7"));
    }

    #[test]
    fn ports_brackets_and_garbage() {
        let t = nets(&["10.0.0.0/8"]);
        let h = headers(&["[2001:db8::1]:443"]);
        assert_eq!(client_address(ip("10.0.0.5"), &h, &t), ip("2001:db8::1"));
        let h = headers(&["203.0.113.7:5555"]);
        assert_eq!(client_address(ip("10.0.0.5"), &h, &t), ip("203.0.113.7"));
        // Garbage ends the chain: the last good hop (here the peer) stands.
        let h = headers(&["203.0.113.7, not-an-ip"]);
        assert_eq!(client_address(ip("10.0.0.5"), &h, &t), ip("10.0.0.5"));
        // Only proxies: the farthest one read.
        let h = headers(&["10.1.1.1, 10.2.2.2"]);
        assert_eq!(client_address(ip("10.0.0.5"), &h, &t), ip("10.1.1.1"));
        assert_eq!(
            client_address(ip("10.0.0.5"), &HeaderMap::new(), &t),
            ip("10.0.0.5")
        );
    }
}
