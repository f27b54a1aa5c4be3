//! `ws://` and `wss://` URLs (the edge's upstream, the loadgen's target), parsed by the `url` crate
//! (schemes case-insensitive, IPv6 literals, default ports, userinfo and fragments refused) and
//! resolved separately, so that a configuration can be checked without DNS.

use std::net::{SocketAddr, ToSocketAddrs};

use anyhow::{Context, bail};

/// A WebSocket endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsUrl {
    pub secure: bool,
    /// The host without brackets (a name, or an IP literal).
    pub host: String,
    pub port: u16,
    /// `host[:port]` for the Host header and a CONNECT target: the port only when the URL gave a
    /// non-default one, IPv6 literals in brackets.
    pub authority: String,
    /// Path and query, at least `/`.
    pub path: String,
}

impl WsUrl {
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let url = url::Url::parse(text.trim()).with_context(|| format!("{text:?} is not a URL"))?;
        let secure = match url.scheme() {
            "ws" => false,
            "wss" => true,
            other => bail!("{text:?}: expected a ws:// or wss:// URL, not {other}://"),
        };
        if !url.username().is_empty() || url.password().is_some() {
            bail!("{text:?}: credentials in the URL are not supported");
        }
        if url.fragment().is_some() {
            bail!("{text:?}: a WebSocket URL has no fragment");
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_string(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            None => bail!("{text:?}: no host"),
        };
        let port = url
            .port_or_known_default()
            .with_context(|| format!("{text:?}: no port"))?;
        let host_part = match url.host() {
            Some(url::Host::Ipv6(a)) => format!("[{a}]"),
            _ => host.clone(),
        };
        let authority = match url.port() {
            Some(p) => format!("{host_part}:{p}"),
            None => host_part,
        };
        let mut path = url.path().to_string();
        if let Some(q) = url.query() {
            path.push('?');
            path.push_str(q);
        }
        Ok(Self {
            secure,
            host,
            port,
            authority,
            path,
        })
    }

    /// Every address the host has (in the resolver's order).
    pub fn resolve(&self) -> anyhow::Result<Vec<SocketAddr>> {
        let addrs: Vec<SocketAddr> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .with_context(|| format!("resolving {}", self.authority))?
            .collect();
        if addrs.is_empty() {
            bail!("{} has no address", self.authority);
        }
        Ok(addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_a_user_writes() {
        let u = WsUrl::parse("ws://127.0.0.1:8180/").unwrap();
        assert_eq!(
            (
                u.secure,
                u.host.as_str(),
                u.port,
                u.authority.as_str(),
                u.path.as_str()
            ),
            (false, "127.0.0.1", 8180, "127.0.0.1:8180", "/")
        );
        // Schemes are case-insensitive; default ports are known and not repeated in the authority.
        let u = WsUrl::parse("WSS://CSE.Example.com/onem2m?x=1").unwrap();
        assert_eq!(
            (
                u.secure,
                u.host.as_str(),
                u.port,
                u.authority.as_str(),
                u.path.as_str()
            ),
            (
                true,
                "cse.example.com",
                443,
                "cse.example.com",
                "/onem2m?x=1"
            )
        );
        let u = WsUrl::parse("ws://[::1]:9000").unwrap();
        assert_eq!(
            (
                u.host.as_str(),
                u.port,
                u.authority.as_str(),
                u.path.as_str()
            ),
            ("::1", 9000, "[::1]:9000", "/")
        );
        assert_eq!(u.resolve().unwrap(), vec!["[::1]:9000".parse().unwrap()]);
        assert_eq!(WsUrl::parse("ws://h:80/").unwrap().authority, "h");
    }

    #[test]
    fn refuses_what_is_not_a_websocket_url() {
        for (text, why) in [
            ("http://127.0.0.1/", "expected a ws:// or wss://"),
            ("127.0.0.1:80", "is not a URL"),
            ("ws://user:pw@h/", "credentials"),
            ("ws://h/#x", "fragment"),
            ("ws://h:99999/", "not a URL"),
        ] {
            let e = format!("{:#}", WsUrl::parse(text).unwrap_err());
            assert!(e.contains(why), "{text}: {e}");
        }
    }
}
