//! The client side of `mtugate stats` and `mtugate reload`: one HTTP/1.0
//! request (so the answer is never chunked and ends when the connection
//! closes) over the control socket or the HTTP listener.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

/// The control socket's file name inside the run directory.
pub const SOCKET_NAME: &str = "mtugate.sock";

/// How long a request may take, connect to last byte.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Where an appliance answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// The control socket (reads and writes; root only).
    Unix(PathBuf),
    /// The HTTP listener, `host:port` (reads only).
    Tcp(String),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "{}", p.display()),
            Endpoint::Tcp(a) => write!(f, "http://{a}"),
        }
    }
}

impl Endpoint {
    /// The control socket of the run directory `run_dir`.
    pub fn control(run_dir: &std::path::Path) -> Endpoint {
        Endpoint::Unix(run_dir.join(SOCKET_NAME))
    }

    /// Parses `http://host:port[/...]` or `host:port`.
    pub fn from_url(url: &str) -> Result<Endpoint, ClientError> {
        let rest = url.strip_prefix("http://").unwrap_or(url);
        let hostport = rest.split('/').next().unwrap_or("");
        if hostport.is_empty() || !hostport.contains(':') || url.starts_with("https://") {
            return Err(ClientError::Usage(format!(
                "{url:?} is not http://HOST:PORT (the read-only listener, mgmt.listen)"
            )));
        }
        Ok(Endpoint::Tcp(hostport.to_string()))
    }
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens there.
    #[error("no mtugate is running: nothing answers on {0}")]
    NotRunning(String),
    /// The socket exists but this user may not open it.
    #[error("permission denied on {0}: the control socket is root's (run as root)")]
    Denied(String),
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
    /// Any other I/O problem.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// An answer that is not HTTP.
    #[error("{0}: not an HTTP answer")]
    Garbled(String),
}

/// An answer: status code and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// The body, as text.
    pub body: String,
}

impl Response {
    /// 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

fn connect(ep: &Endpoint) -> Result<Box<dyn Stream>, ClientError> {
    let map = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            ClientError::NotRunning(ep.to_string())
        }
        std::io::ErrorKind::PermissionDenied => ClientError::Denied(ep.to_string()),
        _ => ClientError::Io(ep.to_string(), e),
    };
    match ep {
        Endpoint::Unix(p) => {
            let s = UnixStream::connect(p).map_err(map)?;
            s.set_read_timeout(Some(TIMEOUT)).map_err(map)?;
            s.set_write_timeout(Some(TIMEOUT)).map_err(map)?;
            Ok(Box::new(s))
        }
        Endpoint::Tcp(a) => {
            use std::net::ToSocketAddrs;
            let addr = a
                .to_socket_addrs()
                .map_err(map)?
                .next()
                .ok_or_else(|| ClientError::Usage(format!("{a}: no address")))?;
            let s = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(map)?;
            s.set_read_timeout(Some(TIMEOUT)).map_err(map)?;
            s.set_write_timeout(Some(TIMEOUT)).map_err(map)?;
            Ok(Box::new(s))
        }
    }
}

/// Sends `method path` and returns the answer.
pub fn request(ep: &Endpoint, method: &str, path: &str) -> Result<Response, ClientError> {
    let mut s = connect(ep)?;
    let io = |e| ClientError::Io(ep.to_string(), e);
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: mtugate\r\nContent-Length: 0\r\n\r\n"
    )
    .map_err(io)?;
    s.flush().map_err(io)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(io)?;
    parse_response(&raw).ok_or_else(|| ClientError::Garbled(ep.to_string()))
}

fn parse_response(raw: &[u8]) -> Option<Response> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let status_line = head.lines().next()?;
    let mut parts = status_line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    let status = parts.next()?.parse().ok()?;
    Some(Response {
        status,
        body: String::from_utf8_lossy(&raw[split + 4..]).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            Endpoint::from_url("http://127.0.0.1:9090/metrics").unwrap(),
            Endpoint::Tcp("127.0.0.1:9090".into())
        );
        assert_eq!(
            Endpoint::from_url("[::1]:9090").unwrap(),
            Endpoint::Tcp("[::1]:9090".into())
        );
        assert!(Endpoint::from_url("https://x:1").is_err());
        assert!(Endpoint::from_url("http://").is_err());
    }

    #[test]
    fn responses() {
        let r = parse_response(b"HTTP/1.0 405 Method Not Allowed\r\nAllow: GET\r\n\r\nread-only\n")
            .unwrap();
        assert_eq!(r.status, 405);
        assert_eq!(r.body, "read-only\n");
        assert!(!r.is_success());
        assert!(parse_response(b"garbage").is_none());
    }

    #[test]
    fn nothing_running_is_said_clearly() {
        let dir = std::env::temp_dir().join(format!("mtugate-client-{}", std::process::id()));
        let e = request(&Endpoint::control(&dir), "GET", "/stats").unwrap_err();
        assert!(matches!(e, ClientError::NotRunning(_)), "{e:?}");
        assert!(e.to_string().starts_with("no mtugate is running"), "{e}");
    }
}
