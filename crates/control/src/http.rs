//! A small HTTP/1.1 server and client for the daemon's JSON API on loopback.
//!
//! Why not hyper/axum: the workspace already compiles hyper as an HTTP *client* (for the
//! object stores under deltalake and DataFusion); turning on its server side would change its
//! features and rebuild that whole tree. The API needs little: one request per connection
//! (`Connection: close`), bodies with `Content-Length`, JSON in and out. Request heads are
//! parsed by `httparse` (the parser hyper uses), bodies are bounded, reads time out.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::error::{Code, Error};

const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 16 * 1024 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A parsed request.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Percent-decoded path segments (`/api/v1/tasks/x` → `["api", "v1", "tasks", "x"]`).
    pub path: Vec<String>,
    pub query: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The `Authorization: Bearer …` token, when the request has one.
    pub bearer: Option<String>,
    /// The headers that tell where a request comes from and what its body is, as sent (see
    /// [`crate::guard`]).
    pub host: Option<String>,
    pub origin: Option<String>,
    pub sec_fetch_site: Option<String>,
    pub content_type: Option<String>,
}

impl Request {
    pub fn query(&self, key: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// More headers (CORS answers for a configured origin).
    pub headers: Vec<(&'static str, String)>,
}

/// The JSON body of every error answer: `{"error": {"code": …, "message": …}}`.
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: Error,
}

impl Response {
    pub fn json<T: Serialize>(status: u16, value: &T) -> Self {
        match serde_json::to_vec_pretty(value) {
            Ok(body) => Self { status, content_type: "application/json", body, headers: Vec::new() },
            Err(e) => Self::error(&Error::internal(format!("serializing the answer: {e}"))),
        }
    }

    /// The error's answer. Its message is made one line (causes from parsers, a JSONPath's for
    /// one, can span several), so that a client can show it as it is.
    pub fn error(err: &Error) -> Self {
        let mut error = err.clone();
        if error.message.contains(['\n', '\r']) {
            error.message =
                error.message.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ");
        }
        let body = serde_json::to_vec_pretty(&ErrorBody { error }).unwrap_or_default();
        Self { status: err.code.http_status(), content_type: "application/json", body, headers: Vec::new() }
    }

    pub fn text(status: u16, content_type: &'static str, body: String) -> Self {
        Self { status, content_type, body: body.into_bytes(), headers: Vec::new() }
    }

    pub fn empty(status: u16) -> Self {
        Self { status, content_type: "application/json", body: Vec::new(), headers: Vec::new() }
    }
}

/// What answers requests.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, req: Request) -> impl std::future::Future<Output = Response> + Send;
}

/// Accepts connections until `shutdown` turns true; each connection serves one request.
pub async fn serve<H: Handler>(listener: TcpListener, handler: Arc<H>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let h = handler.clone();
                    tokio::spawn(async move { connection(stream, h).await });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = shutdown.changed() => return,
        }
    }
}

async fn connection<H: Handler>(mut stream: TcpStream, handler: Arc<H>) {
    let response = match read_request(&mut stream).await {
        Ok(req) => handler.handle(req).await,
        Err(None) => return,
        Err(Some(err)) => Response::error(&err),
    };
    let _ = write_response(&mut stream, &response).await;
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

async fn write_response(stream: &mut TcpStream, r: &Response) -> std::io::Result<()> {
    let extra: String = r.headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&r.body).await?;
    stream.flush().await?;
    let _ = stream.shutdown().await;
    Ok(())
}

/// Reads one request; `Err(None)` when the peer went away without sending one.
async fn read_request(stream: &mut TcpStream) -> Result<Request, Option<Error>> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    let (head_len, method, target, content_length, expect_continue, bearer, from) = loop {
        let n = match tokio::time::timeout(READ_TIMEOUT, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return Err(None),
            Ok(Ok(n)) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let mut content_length = 0usize;
                let mut expect = false;
                let mut bearer = None;
                let mut from = Origin::default();
                for h in req.headers.iter() {
                    let text = || std::str::from_utf8(h.value).ok().map(|v| v.trim().to_string());
                    if h.name.eq_ignore_ascii_case("host") {
                        from.host = text();
                    } else if h.name.eq_ignore_ascii_case("origin") {
                        from.origin = text();
                    } else if h.name.eq_ignore_ascii_case("sec-fetch-site") {
                        from.sec_fetch_site = text();
                    } else if h.name.eq_ignore_ascii_case("content-type") {
                        from.content_type = text();
                    }
                    if h.name.eq_ignore_ascii_case("content-length") {
                        content_length = std::str::from_utf8(h.value)
                            .ok()
                            .and_then(|v| v.trim().parse().ok())
                            .ok_or_else(|| Some(Error::bad_request("invalid Content-Length")))?;
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        return Err(Some(Error::new(
                            Code::BadRequest,
                            "chunked request bodies are not supported: send Content-Length",
                        )));
                    } else if h.name.eq_ignore_ascii_case("expect") && h.value.eq_ignore_ascii_case(b"100-continue") {
                        expect = true;
                    } else if h.name.eq_ignore_ascii_case("authorization") {
                        bearer = std::str::from_utf8(h.value)
                            .ok()
                            .and_then(|v| v.trim().strip_prefix("Bearer "))
                            .map(|t| t.trim().to_string());
                    }
                }
                break (
                    len,
                    req.method.unwrap_or("GET").to_string(),
                    req.path.unwrap_or("/").to_string(),
                    content_length,
                    expect,
                    bearer,
                    from,
                );
            }
            Ok(httparse::Status::Partial) => {
                if buf.len() > MAX_HEAD {
                    return Err(Some(Error::bad_request("request head too large")));
                }
            }
            Err(e) => return Err(Some(Error::bad_request(format!("malformed HTTP request: {e}")))),
        }
    };
    if content_length > MAX_BODY {
        return Err(Some(Error::bad_request(format!("request body larger than {MAX_BODY} bytes"))));
    }
    if expect_continue && buf.len() < head_len + content_length {
        let _ = stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await;
    }
    while buf.len() < head_len + content_length {
        let n = match tokio::time::timeout(READ_TIMEOUT, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return Err(None),
            Ok(Ok(n)) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[head_len..head_len + content_length].to_vec();
    let (path, query) = split_target(&target);
    let Origin { host, origin, sec_fetch_site, content_type } = from;
    Ok(Request { method, path, query, body, bearer, host, origin, sec_fetch_site, content_type })
}

/// The headers [`Request`] keeps besides the token, while the head is read.
#[derive(Default)]
struct Origin {
    host: Option<String>,
    origin: Option<String>,
    sec_fetch_site: Option<String>,
    content_type: Option<String>,
}

fn split_target(target: &str) -> (Vec<String>, Vec<(String, String)>) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let segments = path.split('/').filter(|s| !s.is_empty()).map(percent_decode).collect();
    let query = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(&k.replace('+', " ")), percent_decode(&v.replace('+', " ")))
        })
        .collect();
    (segments, query)
}

pub use rtsync_core::text::{percent_decode, percent_encode};

/// The client side: one request to the daemon at `base` (`http://host:port`).
pub mod client {
    use super::*;

    /// How long the CLI waits for an answer (a stop waits for the task's final commit).
    pub const TIMEOUT: Duration = Duration::from_secs(180);

    /// Sends `method path?query` with an optional JSON body; returns status and body.
    pub async fn call(
        base: &str,
        token: Option<&str>,
        method: &str,
        path: &[&str],
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Vec<u8>), Error> {
        let url =
            url::Url::parse(base).map_err(|e| Error::bad_request(format!("--server {base:?} is not a URL: {e}")))?;
        if url.scheme() != "http" {
            return Err(Error::bad_request(format!(
                "--server {base:?}: only http:// is supported (the daemon listens on loopback)"
            )));
        }
        let host =
            url.host_str().ok_or_else(|| Error::bad_request(format!("--server {base:?} has no host")))?.to_string();
        let port = url.port_or_known_default().unwrap_or(80);
        let mut target = String::new();
        let prefix = url.path().trim_end_matches('/');
        target.push_str(prefix);
        for seg in path {
            target.push('/');
            target.push_str(&percent_encode(seg));
        }
        if !query.is_empty() {
            target.push('?');
            let q: Vec<String> =
                query.iter().map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v))).collect();
            target.push_str(&q.join("&"));
        }
        let host_header = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        let exchange = async {
            let mut stream = TcpStream::connect((host.as_str(), port)).await.map_err(|e| {
                Error::new(
                    Code::Unavailable,
                    format!("cannot reach the rtsync daemon at {base}: {e} (start it with `rtsync serve`, or pass --server URL)"),
                )
            })?;
            let body = body.unwrap_or_default();
            let head = format!(
                "{method} {target} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: rtsync-cli\r\nAccept: application/json\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{auth}Connection: close\r\n\r\n",
                body.len(),
                auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default()
            );
            let io = |e: std::io::Error| {
                Error::new(Code::Unavailable, format!("talking to the rtsync daemon at {base}: {e}"))
            };
            stream.write_all(head.as_bytes()).await.map_err(io)?;
            stream.write_all(&body).await.map_err(io)?;
            let mut raw = Vec::new();
            stream.read_to_end(&mut raw).await.map_err(io)?;
            parse_response(&raw).map_err(|m| Error::internal(format!("the daemon at {base} answered with {m}")))
        };
        tokio::time::timeout(TIMEOUT, exchange).await.map_err(|_| {
            Error::new(
                Code::Unavailable,
                format!("the rtsync daemon at {base} did not answer within {}s", TIMEOUT.as_secs()),
            )
        })?
    }

    fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>), String> {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(raw) {
            Ok(httparse::Status::Complete(len)) => {
                let status = resp.code.ok_or("no status code")?;
                let cl = resp
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse::<usize>().ok());
                let body = &raw[len..];
                let body = match cl {
                    Some(n) if n <= body.len() => &body[..n],
                    _ => body,
                };
                Ok((status, body.to_vec()))
            }
            Ok(httparse::Status::Partial) => Err("an incomplete HTTP response".into()),
            Err(e) => Err(format!("a malformed HTTP response: {e}")),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn targets_split_and_decode() {
        let (path, query) = split_target("/api/v1/tasks/a%20b?folder=f%2Fg&x");
        assert_eq!(path, vec!["api", "v1", "tasks", "a b"]);
        assert_eq!(query, vec![("folder".to_string(), "f/g".to_string()), ("x".to_string(), String::new())]);
        assert_eq!(percent_decode(&percent_encode("a b/ü$")), "a b/ü$");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
