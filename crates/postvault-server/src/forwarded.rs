//! The client behind a trusted reverse proxy: its address, from
//! `X-Forwarded-For`, and whether it came over HTTPS, from
//! `X-Forwarded-Proto`.
//!
//! Invariants: these headers are believed only from a peer inside one of
//! the configured proxy networks; from anyone else they are ignored, so a
//! client cannot pick the address it is rate-limited by, nor claim HTTPS.
//! `X-Forwarded-For` is read from the right (the hop nearest this service,
//! written by a trusted proxy) leftwards past trusted proxies: the first
//! address outside them is the client. Whatever a client wrote further left
//! is never reached, and a hop that does not parse stops the walk at the
//! last proxy, never at an address the client chose.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
pub use ipnet::IpNet;

/// Who sent a request, as the rate limits and cookies see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Client {
    /// The client's address: the peer's, or the one a trusted proxy
    /// forwarded.
    pub addr: IpAddr,
    /// Served over TLS here, or forwarded from HTTPS by a trusted proxy.
    pub https: bool,
}

/// A proxy network from the command line: a CIDR block (`10.0.0.0/8`) or
/// one address (`192.0.2.7`, `::1`).
/// A block of every address (`/0`) is refused: it would believe every
/// client's own headers.
pub fn parse_proxy(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    let net = s
        .parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map(|n| n.trunc())
        .map_err(|_| {
            format!("{s:?} is neither an address nor a CIDR block (10.0.0.0/8, fd00::/8)")
        })?;
    if net.prefix_len() == 0 {
        return Err(format!(
            "{s:?} would trust every client's own X-Forwarded-For: name the proxies' addresses"
        ));
    }
    Ok(net)
}

/// The client of a request from `peer` with `headers`; `tls`: the
/// connection itself is TLS.
pub(crate) fn client_of(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet], tls: bool) -> Client {
    let peer = peer.to_canonical();
    let is_proxy = |a: &IpAddr| trusted.iter().any(|n| n.contains(a));
    if !is_proxy(&peer) {
        return Client {
            addr: peer,
            https: tls,
        };
    }
    let mut addr = peer;
    for hop in values(headers, "x-forwarded-for").rev() {
        let Some(a) = hop.and_then(hop_address) else {
            break;
        };
        addr = a;
        if !is_proxy(&a) {
            break;
        }
    }
    let https = tls
        || values(headers, "x-forwarded-proto")
            .next_back()
            .flatten()
            .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    Client { addr, https }
}

/// A header's comma-separated values over all its lines, in order; a line
/// that is not text is one `None` (it stops a walk, never skipped over).
fn values<'a>(
    headers: &'a HeaderMap,
    name: &'static str,
) -> impl DoubleEndedIterator<Item = Option<&'a str>> + 'a {
    headers
        .get_all(name)
        .iter()
        .flat_map(|v| match v.to_str() {
            Ok(v) => v.split(',').map(Some).collect::<Vec<_>>(),
            Err(_) => vec![None],
        })
        .map(|v| v.map(str::trim))
        .filter(|v| v.is_none_or(|v| !v.is_empty()))
}

/// One hop of `X-Forwarded-For`: an address, or one with a port
/// (`192.0.2.1:4711`, `[2001:db8::1]:4711`), as some proxies write it.
fn hop_address(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|a| a.to_canonical())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    fn nets(s: &[&str]) -> Vec<IpNet> {
        s.iter().map(|n| parse_proxy(n).unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn headers_from_an_untrusted_peer_are_ignored() {
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "https"),
        ]);
        let c = client_of(ip("198.51.100.4"), &h, &nets(&["10.0.0.0/8"]), false);
        assert_eq!(
            c,
            Client {
                addr: ip("198.51.100.4"),
                https: false
            }
        );
        // No proxies configured: the same.
        assert_eq!(
            client_of(ip("10.0.0.1"), &h, &[], false).addr,
            ip("10.0.0.1")
        );
    }

    #[test]
    fn the_client_is_the_first_hop_from_the_right_outside_the_proxies() {
        let trusted = nets(&["10.0.0.0/8", "fd00::/8"]);
        // The client wrote a forged first hop; the proxies appended theirs.
        let h = headers(&[
            ("x-forwarded-for", "1.2.3.4, 203.0.113.9"),
            ("x-forwarded-for", "10.1.1.1"),
        ]);
        let c = client_of(ip("10.0.0.2"), &h, &trusted, false);
        assert_eq!(c.addr, ip("203.0.113.9"));
        // Ports and IPv4-mapped IPv6 addresses are read as the address.
        let h = headers(&[("x-forwarded-for", "[2001:db8::7]:4711, 10.9.9.9:80")]);
        assert_eq!(
            client_of(ip("::ffff:10.0.0.2"), &h, &trusted, false).addr,
            ip("2001:db8::7")
        );
        // A hop that does not parse stops at the last proxy, not at what a
        // client wrote left of it.
        let h = headers(&[("x-forwarded-for", "203.0.113.9, unknown, 10.1.1.1")]);
        assert_eq!(
            client_of(ip("10.0.0.2"), &h, &trusted, false).addr,
            ip("10.1.1.1")
        );
        // A line that is not text stops the walk too, rather than being
        // skipped so the walk reaches a line further left.
        let mut h = headers(&[("x-forwarded-for", "198.51.100.1")]);
        h.append(
            "x-forwarded-for",
            axum::http::HeaderValue::from_bytes(b"203.0.113.9\xff").unwrap(),
        );
        assert_eq!(
            client_of(ip("10.0.0.2"), &h, &trusted, false).addr,
            ip("10.0.0.2")
        );
        // No header: the proxy itself (its own health checks).
        assert_eq!(
            client_of(ip("10.0.0.2"), &HeaderMap::new(), &trusted, false).addr,
            ip("10.0.0.2")
        );
    }

    #[test]
    fn https_is_believed_from_a_proxy_only_and_its_own_value() {
        let trusted = nets(&["127.0.0.1"]);
        let h = headers(&[("x-forwarded-proto", "https")]);
        assert!(client_of(ip("127.0.0.1"), &h, &trusted, false).https);
        assert!(!client_of(ip("127.0.0.2"), &h, &trusted, false).https);
        // The nearest proxy's value counts.
        let h = headers(&[("x-forwarded-proto", "https, http")]);
        assert!(!client_of(ip("127.0.0.1"), &h, &trusted, false).https);
        // TLS here is HTTPS whatever the headers say.
        let h = headers(&[("x-forwarded-proto", "http")]);
        assert!(client_of(ip("127.0.0.1"), &h, &trusted, true).https);
    }

    #[test]
    fn proxies_parse_as_blocks_or_addresses() {
        assert_eq!(parse_proxy("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse_proxy("::1").unwrap().to_string(), "::1/128");
        assert_eq!(
            parse_proxy(" 192.0.2.7 ").unwrap().to_string(),
            "192.0.2.7/32"
        );
        assert!(parse_proxy("10.0.0.0/33").is_err());
        assert!(parse_proxy("proxy.example").is_err());
        assert!(parse_proxy("0.0.0.0/0").is_err());
        assert!(parse_proxy("::/0").is_err());
    }
}
