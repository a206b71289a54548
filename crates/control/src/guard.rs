//! Refusing browser-borne requests, as Jupyter and other local servers do.
//!
//! A daemon on loopback without a token is reachable from every web page the user opens: a
//! page can *send* requests to `http://127.0.0.1:7878` (a form post or a `fetch` with
//! `Content-Type: text/plain` needs no CORS preflight), and through DNS rebinding (a name of
//! the attacker's that first resolves to their server, then to 127.0.0.1) it can also *read*
//! the answers, since the browser thinks they come from the attacker's origin. Three rules
//! close both:
//!
//! - **Host.** The `Host` header must name the daemon: `localhost`, a loopback address, the
//!   listen address (any IP address when it listens on all of them), or a name the operator
//!   allows with `--allowed-host` (`*` allows every name). A rebinding page's requests carry
//!   the attacker's name and are refused. Probes (`GET /health`, `GET /ready`) are exempt:
//!   Kubernetes sends the pod's IP, and they tell nothing.
//! - **Origin.** A request with an `Origin` must come from the daemon's own origin
//!   (`http://<Host>`), and one with `Sec-Fetch-Site` must say `same-origin` or `none` (typed
//!   by the user); the CLI and the MCP client send neither. The web UI's page itself may be
//!   opened from a link on any site.
//! - **Body type.** A state-changing request (POST, PATCH, DELETE) must declare
//!   `Content-Type: application/json`: a browser cannot send that cross-origin without a
//!   preflight, which the daemon never grants. Other methods change nothing: the router answers
//!   them `405` (with `Allow`) or `404`.
//!
//! No CORS header is ever sent, unless the operator names origins with `--allowed-origin`:
//! those may call the API from their pages (with the token, when the daemon has one).

use std::net::{IpAddr, SocketAddr};

use crate::error::{Code, Error, Result};
use crate::http::{Request, Response};

/// What a request must look like to be served. Built once at start.
#[derive(Debug, Clone)]
pub struct Guard {
    listen: SocketAddr,
    /// Lowercase host names, without a port; `*` allows every name.
    allowed_hosts: Vec<String>,
    /// Origins allowed to call the API cross-origin (CORS), as `scheme://host[:port]`.
    allowed_origins: Vec<String>,
}

/// The probes that stay answerable whatever the `Host`.
pub fn is_probe(req: &Request) -> bool {
    req.method == "GET" && matches!(req.path.as_slice(), [p] if p == "health" || p == "ready")
}

/// The web UI's page: a top-level navigation, which any site may link to.
fn is_ui_page(req: &Request) -> bool {
    req.method == "GET" && (req.path.is_empty() || req.path[0] == "ui")
}

fn state_changing(method: &str) -> bool {
    matches!(method, "POST" | "PATCH" | "DELETE")
}

/// The host name of a `Host` header, lowercase, without the port and the brackets of an IPv6
/// address.
fn host_name(header: &str) -> String {
    let h = header.trim();
    let name = if let Some(rest) = h.strip_prefix('[') {
        rest.split_once(']').map_or(rest, |(ip, _)| ip)
    } else {
        match h.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => h,
        }
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn normalize_origin(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

impl Guard {
    /// `listen` is the bound address, `listen_host` the host as the operator wrote it in
    /// `--listen` (a name there is allowed as a `Host` too).
    pub fn new(listen: SocketAddr, listen_host: &str, allowed_hosts: &[String], allowed_origins: &[String]) -> Self {
        let mut hosts: Vec<String> = allowed_hosts.iter().map(|h| host_name(h)).filter(|h| !h.is_empty()).collect();
        let written = host_name(listen_host);
        if !written.is_empty() && written.parse::<IpAddr>().is_err() {
            hosts.push(written);
        }
        let allowed_origins = allowed_origins.iter().map(|o| normalize_origin(o)).filter(|o| !o.is_empty()).collect();
        Self { listen, allowed_hosts: hosts, allowed_origins }
    }

    /// A guard for a daemon on `listen` with no extra hosts or origins.
    pub fn local(listen: SocketAddr) -> Self {
        Self::new(listen, "", &[], &[])
    }

    fn host_allowed(&self, name: &str) -> bool {
        if name == "localhost" || self.allowed_hosts.iter().any(|h| h == "*" || h == name) {
            return true;
        }
        match name.parse::<IpAddr>() {
            // An address literal cannot be rebound: the page that sends it came from this daemon.
            Ok(ip) => ip.is_loopback() || ip == self.listen.ip() || self.listen.ip().is_unspecified(),
            Err(_) => false,
        }
    }

    /// The configured cross-origin caller this request comes from, if any.
    fn cors_origin(&self, req: &Request) -> Option<String> {
        let origin = normalize_origin(req.origin.as_deref()?);
        self.allowed_origins.contains(&origin).then_some(origin)
    }

    /// Whether the request may be served; the error says why not. Checked before the token.
    pub fn check(&self, req: &Request) -> Result<()> {
        if is_probe(req) {
            return Ok(());
        }
        let Some(host) = req.host.as_deref() else {
            return Err(Error::bad_request("the request has no Host header"));
        };
        let name = host_name(host);
        if !self.host_allowed(&name) {
            return Err(Error::new(
                Code::Forbidden,
                format!(
                    "this daemon does not answer to the host {name:?} (a web page may be trying DNS rebinding): use localhost or {}, or start the daemon with --allowed-host {name}",
                    self.listen.ip()
                ),
            ));
        }
        if is_ui_page(req) {
            return Ok(());
        }
        let cors = self.cors_origin(req).is_some();
        if let Some(origin) = req.origin.as_deref()
            && !cors
        {
            let origin = normalize_origin(origin);
            let own = host.trim().to_ascii_lowercase();
            if origin != format!("http://{own}") && origin != format!("https://{own}") {
                return Err(Error::new(
                    Code::Forbidden,
                    format!(
                        "cross-origin request from {origin:?} refused: only the daemon's own web UI may call the API from a browser (start the daemon with --allowed-origin to allow a site)"
                    ),
                ));
            }
        }
        if let Some(site) = req.sec_fetch_site.as_deref()
            && !cors
            && !matches!(site.trim().to_ascii_lowercase().as_str(), "same-origin" | "none")
        {
            return Err(Error::new(
                Code::Forbidden,
                format!(
                    "a {site} request from another web page refused: only the daemon's own web UI may call the API from a browser"
                ),
            ));
        }
        if state_changing(&req.method) {
            let media = req.content_type.as_deref().unwrap_or("").split(';').next().unwrap_or("").trim();
            if !media.eq_ignore_ascii_case("application/json") {
                return Err(Error::new(
                    Code::UnsupportedMediaType,
                    format!(
                        "{} needs Content-Type: application/json (got {}): the daemon refuses other bodies so that web pages cannot post to it",
                        req.method,
                        if media.is_empty() { "none".to_string() } else { format!("{media:?}") }
                    ),
                ));
            }
        }
        Ok(())
    }

    /// CORS headers for an answer to a configured origin; none otherwise.
    pub fn cors_headers(&self, req: &Request) -> Vec<(&'static str, String)> {
        match self.cors_origin(req) {
            Some(origin) => vec![
                ("Access-Control-Allow-Origin", origin),
                ("Access-Control-Allow-Methods", "GET, POST, PATCH, DELETE".to_string()),
                ("Access-Control-Allow-Headers", "Authorization, Content-Type".to_string()),
                ("Access-Control-Max-Age", "600".to_string()),
                ("Vary", "Origin".to_string()),
            ],
            None => Vec::new(),
        }
    }

    /// Answers a CORS preflight (`OPTIONS`) from a configured origin; `None` for any other.
    pub fn preflight(&self, req: &Request) -> Option<Response> {
        if req.method != "OPTIONS" || self.cors_origin(req).is_none() {
            return None;
        }
        let mut r = Response::empty(204);
        r.headers = self.cors_headers(req);
        Some(r)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn req(method: &str, path: &str, headers: &[(&str, &str)]) -> Request {
        let get = |name: &str| headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string());
        Request {
            method: method.into(),
            path: path.split('/').filter(|s| !s.is_empty()).map(str::to_string).collect(),
            query: Vec::new(),
            body: Vec::new(),
            bearer: None,
            host: get("host"),
            origin: get("origin"),
            sec_fetch_site: get("sec-fetch-site"),
            content_type: get("content-type"),
        }
    }

    fn local() -> Guard {
        Guard::local("127.0.0.1:7878".parse().unwrap())
    }

    #[test]
    fn host_names_lose_port_and_brackets() {
        assert_eq!(host_name("Evil.Example:7878"), "evil.example");
        assert_eq!(host_name("[::1]:7878"), "::1");
        assert_eq!(host_name("localhost."), "localhost");
        assert_eq!(host_name("127.0.0.1"), "127.0.0.1");
    }

    #[test]
    fn foreign_hosts_are_refused_but_probes_answer() {
        let g = local();
        for ok in ["127.0.0.1:7878", "localhost:7878", "[::1]:7878", "127.0.0.2"] {
            assert!(g.check(&req("GET", "/api/v1/folders", &[("host", ok)])).is_ok(), "{ok}");
        }
        let err = g.check(&req("GET", "/api/v1/folders", &[("host", "evil.example:7878")])).unwrap_err();
        assert_eq!(err.code, Code::Forbidden);
        assert!(err.message.contains("--allowed-host evil.example"), "{err}");
        assert!(g.check(&req("GET", "/", &[("host", "evil.example")])).is_err(), "the UI page too");
        assert!(g.check(&req("GET", "/api/v1/folders", &[("host", "10.0.0.9:7878")])).is_err());
        assert!(g.check(&req("GET", "/api/v1/folders", &[])).is_err(), "no Host at all");
        assert!(g.check(&req("GET", "/health", &[("host", "10.0.0.9:7878")])).is_ok());
        assert!(g.check(&req("GET", "/ready", &[])).is_ok());

        let allowed = Guard::new("127.0.0.1:7878".parse().unwrap(), "", &["rtsync.internal".into()], &[]);
        assert!(allowed.check(&req("GET", "/api/v1/folders", &[("host", "RTSYNC.internal:7878")])).is_ok());
        let any = Guard::new("0.0.0.0:7878".parse().unwrap(), "0.0.0.0", &[], &[]);
        assert!(any.check(&req("GET", "/metrics", &[("host", "10.0.0.9:7878")])).is_ok(), "every address");
        assert!(any.check(&req("GET", "/metrics", &[("host", "evil.example")])).is_err(), "but not names");
        let named = Guard::new("127.0.0.1:7878".parse().unwrap(), "rtsync.local", &[], &[]);
        assert!(named.check(&req("GET", "/metrics", &[("host", "rtsync.local:7878")])).is_ok());
    }

    #[test]
    fn cross_origin_and_non_json_writes_are_refused() {
        let g = local();
        let host = ("host", "127.0.0.1:7878");
        let json = ("content-type", "application/json; charset=utf-8");
        // The attack of the issue: a simple request from another site's page.
        let err = g
            .check(&req(
                "POST",
                "/api/v1/folders",
                &[host, ("content-type", "text/plain"), ("origin", "http://evil.example")],
            ))
            .unwrap_err();
        assert_eq!(err.code, Code::Forbidden, "{err}");
        // Without an Origin (an old browser), the body type still refuses it.
        let err = g.check(&req("POST", "/api/v1/folders", &[host, ("content-type", "text/plain")])).unwrap_err();
        assert_eq!(err.code, Code::UnsupportedMediaType, "{err}");
        assert!(g.check(&req("DELETE", "/api/v1/folders/x", &[host])).is_err(), "no Content-Type");
        assert!(g.check(&req("POST", "/api/v1/folders", &[host, json, ("sec-fetch-site", "cross-site")])).is_err());
        assert!(g.check(&req("POST", "/api/v1/folders", &[host, json, ("sec-fetch-site", "same-site")])).is_err());
        assert!(g.check(&req("GET", "/api/v1/folders", &[host, ("origin", "null")])).is_err());
        // The web UI, the CLI and MCP.
        let ui = [host, json, ("origin", "http://127.0.0.1:7878"), ("sec-fetch-site", "same-origin")];
        assert!(g.check(&req("POST", "/api/v1/folders", &ui)).is_ok());
        assert!(g.check(&req("POST", "/api/v1/folders", &[host, json])).is_ok());
        assert!(g.check(&req("GET", "/api/v1/folders", &[host])).is_ok(), "GET needs no body type");
        // A link from another site to the UI's page opens it.
        assert!(g.check(&req("GET", "/", &[host, ("sec-fetch-site", "cross-site")])).is_ok());
        assert!(g.preflight(&req("OPTIONS", "/api/v1/folders", &[host, ("origin", "http://evil.example")])).is_none());
        assert!(g.cors_headers(&req("GET", "/api/v1/folders", &[host, ("origin", "http://evil.example")])).is_empty());
    }

    #[test]
    fn configured_origins_get_cors() {
        let g = Guard::new("127.0.0.1:7878".parse().unwrap(), "", &[], &["https://app.example/".into()]);
        let from_app =
            [("host", "127.0.0.1:7878"), ("origin", "https://app.example"), ("sec-fetch-site", "cross-site")];
        let pre = g.preflight(&req("OPTIONS", "/api/v1/folders", &from_app)).unwrap();
        assert_eq!(pre.status, 204);
        assert!(pre.headers.contains(&("Access-Control-Allow-Origin", "https://app.example".to_string())));
        let mut post = from_app.to_vec();
        post.push(("content-type", "application/json"));
        assert!(g.check(&req("POST", "/api/v1/folders", &post)).is_ok());
        assert!(g.check(&req("POST", "/api/v1/folders", &from_app)).is_err(), "still JSON only");
    }
}
