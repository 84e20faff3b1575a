//! The client's address, which the per-address limits count by (sign-up
//! budget, sign-in throttling) and `/metrics` checks for loopback.
//!
//! It is the TCP peer the server accepted, unless that peer is a reverse proxy
//! the operator named in `TRUSTED_PROXIES`: then it is read from the
//! `X-Forwarded-For` the proxy appends to, walking from its right end past
//! every trusted proxy to the first address that is not one (the hop the last
//! trusted proxy saw; what lies further left was written by the client and
//! proves nothing). An entry that is not an address stops the walk at the
//! last address believed. With no trusted proxy the header is never read: any
//! client can send it, so believing it would let one client pose as many and
//! escape the limits. `Forwarded` (RFC 7239) is not read; the common proxies
//! (nginx, HAProxy, Caddy, Traefik, cloud load balancers) all write
//! `X-Forwarded-For`.
//!
//! One layer on the whole router ([`layer`]) resolves it once per request into
//! a [`ClientAddr`]; the in-process channel pages render with forwards the
//! page request's extensions, so calls made while rendering count the same
//! client.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;

/// The client's address, as [`layer`] resolved it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// The request's client address (module docs); `None` only for a request that
/// did not come through the server's accept loop.
pub fn ip(extensions: &axum::http::Extensions) -> Option<IpAddr> {
    extensions.get::<ClientAddr>().map(|c| c.0)
}

/// The reverse proxies whose `X-Forwarded-For` is believed (`TRUSTED_PROXIES`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Arc<[IpNet]>);

impl TrustedProxies {
    /// Proxies at these addresses or in these blocks.
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> Self {
        Self(nets.into_iter().collect())
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client of a request from `peer` with `headers` (module docs).
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .flat_map(|v| v.to_str().unwrap_or("?").split(','))
            .map(str::trim)
            .collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            let Some(ip) = parse_hop(hop) else { return client };
            client = ip.to_canonical();
            if !self.trusts(client) {
                return client;
            }
        }
        client
    }
}

/// An `X-Forwarded-For` entry: an address, with or without a port (`[v6]:port`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    IpAddr::from_str(hop).ok().or_else(|| SocketAddr::from_str(hop).ok().map(|s| s.ip()))
}

impl std::fmt::Display for TrustedProxies {
    /// As `TRUSTED_PROXIES` is written: comma-separated blocks.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&list.join(","))
    }
}

/// Parses `TRUSTED_PROXIES`: comma-separated addresses (`10.0.0.7`, `::1`) or
/// blocks (`10.0.0.0/8`); empty, none.
///
/// # Errors
/// An entry that is neither, named, with what was expected.
pub fn parse_proxies(s: &str) -> Result<TrustedProxies, String> {
    let entries = s.split(',').map(str::trim).filter(|e| !e.is_empty());
    let nets: Result<Vec<IpNet>, String> = entries.map(parse_proxy).collect();
    nets.map(TrustedProxies::new)
}

fn parse_proxy(s: &str) -> Result<IpNet, String> {
    IpNet::from_str(s)
        .or_else(|_| IpAddr::from_str(s).map(IpNet::from))
        .map_err(|_| format!("{s:?} is not an address or a block (e.g. 10.0.0.7, 10.0.0.0/8, fd00::/8)"))
}

/// Records the request's [`ClientAddr`], from the connection's peer and, for a
/// trusted proxy, its `X-Forwarded-For`.
pub async fn layer(State(proxies): State<TrustedProxies>, mut req: Request, next: Next) -> Response {
    if let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>().copied() {
        let client = proxies.client(peer.ip(), req.headers());
        req.extensions_mut().insert(ClientAddr(client));
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn proxies(list: &[&str]) -> TrustedProxies {
        parse_proxies(&list.join(",")).expect("proxies")
    }

    fn forwarded(lines: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append("x-forwarded-for", HeaderValue::from_static(l));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_sends() {
        let none = TrustedProxies::default();
        assert_eq!(none.client(ip("203.0.113.9"), &forwarded(&["1.2.3.4"])), ip("203.0.113.9"));
        let some = proxies(&["10.0.0.0/8"]);
        assert_eq!(some.client(ip("203.0.113.9"), &forwarded(&["1.2.3.4"])), ip("203.0.113.9"));
    }

    #[test]
    fn a_trusted_proxy_names_the_hop_before_it() {
        let p = proxies(&["10.0.0.0/8", "192.0.2.1"]);
        // The client wrote a lie at the left; the proxy appended what it saw.
        let h = forwarded(&["6.6.6.6, 198.51.100.7"]);
        assert_eq!(p.client(ip("10.1.2.3"), &h), ip("198.51.100.7"));
        // Two trusted proxies in a row, the header over two lines, ports and spaces.
        let h = forwarded(&["6.6.6.6, 198.51.100.7:4711", " 192.0.2.1 "]);
        assert_eq!(p.client(ip("10.1.2.3"), &h), ip("198.51.100.7"));
        let h = forwarded(&["[2001:db8::5]:443"]);
        assert_eq!(p.client(ip("10.1.2.3"), &h), ip("2001:db8::5"));
    }

    #[test]
    fn what_cannot_be_read_is_not_believed() {
        let p = proxies(&["10.0.0.0/8"]);
        // No header: the proxy itself.
        assert_eq!(p.client(ip("10.1.2.3"), &HeaderMap::new()), ip("10.1.2.3"));
        // Garbage where the proxy's own entry should be: the proxy.
        assert_eq!(p.client(ip("10.1.2.3"), &forwarded(&["198.51.100.7, unknown"])), ip("10.1.2.3"));
        // Garbage further left: the last address believed.
        assert_eq!(p.client(ip("10.1.2.3"), &forwarded(&["junk, 10.9.9.9"])), ip("10.9.9.9"));
        // Every hop a trusted proxy: the leftmost.
        assert_eq!(p.client(ip("10.1.2.3"), &forwarded(&["10.4.4.4, 10.9.9.9"])), ip("10.4.4.4"));
    }

    #[test]
    fn ipv4_mapped_peers_match_ipv4_blocks() {
        let p = proxies(&["127.0.0.1"]);
        assert_eq!(p.client(ip("::ffff:127.0.0.1"), &forwarded(&["198.51.100.7"])), ip("198.51.100.7"));
    }

    #[test]
    fn proxies_parse_as_addresses_or_blocks() {
        let p = parse_proxies(" 10.0.0.7 , fd00::/8").expect("an address and a block");
        assert_eq!(p.to_string(), "10.0.0.7/32,fd00::/8");
        assert_eq!(parse_proxies("").expect("none"), TrustedProxies::default());
        assert_eq!(parse_proxies(" , ").expect("none"), TrustedProxies::default());
        let e = parse_proxies("10.0.0.1,10.0.0.0/33").expect_err("no such block");
        assert!(e.contains("\"10.0.0.0/33\""), "{e}");
        assert!(parse_proxies("proxy.example").is_err());
    }
}
