//! A small blocking HTTPS client for tests that talk to the test hub directly: rustls
//! verifying against a CA file, one kept-alive connection, several requests on it.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use serde_json::Value;

pub struct HubReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The connection ended before Content-Length bytes arrived.
    pub truncated: bool,
}

impl HubReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// A client configuration trusting only the CA in `ca_path`.
pub fn client_config(ca_path: &Path) -> io::Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_path).map_err(io::Error::other)? {
        roots
            .add(cert.map_err(io::Error::other)?)
            .map_err(io::Error::other)?;
    }
    let config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

pub struct HubClient {
    tls: StreamOwned<ClientConnection, TcpStream>,
    carry: Vec<u8>,
    host: String,
}

impl HubClient {
    /// Connects to 127.0.0.1:`port` as `localhost` and completes the handshake, so a
    /// certificate the CA does not vouch for fails here.
    pub fn connect(port: u16, ca_path: &Path) -> io::Result<HubClient> {
        HubClient::connect_as(port, ca_path, "localhost")
    }

    /// The same, checking the certificate against `server_name` (a DNS name or an IP).
    pub fn connect_as(port: u16, ca_path: &Path, server_name: &str) -> io::Result<HubClient> {
        let config = client_config(ca_path)?;
        let name = ServerName::try_from(server_name.to_string()).map_err(io::Error::other)?;
        let sock = TcpStream::connect(("127.0.0.1", port))?;
        sock.set_read_timeout(Some(Duration::from_secs(10)))?;
        let conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
        let mut tls = StreamOwned::new(conn, sock);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock)?;
        }
        Ok(HubClient {
            tls,
            carry: Vec::new(),
            host: format!("{server_name}:{port}"),
        })
    }

    /// How long a read may block.
    pub fn set_timeout(&mut self, d: Duration) {
        let _ = self.tls.sock.set_read_timeout(Some(d));
    }

    /// The negotiated TLS version, e.g. `TLSv1_3`.
    pub fn tls_version(&self) -> String {
        format!("{:?}", self.tls.conn.protocol_version())
    }

    /// Sends a request and reads its answer. `Host`, a `User-Agent` (unless given) and a
    /// `Content-Length` (unless a `Transfer-Encoding` is given, with `body` already framed)
    /// are added.
    pub fn request(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<HubReply> {
        let has = |n: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
        let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {}\r\n", self.host);
        if !has("User-Agent") {
            head.push_str("User-Agent: Tern-test-client/1\r\n");
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if !has("Transfer-Encoding") && (!body.is_empty() || method != "GET") {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(body);
        self.tls.write_all(&out)?;
        self.tls.flush()?;
        self.read_reply()
    }

    /// Sends `raw` bytes as they are (a whole request, framed by the caller) and reads the
    /// answer.
    pub fn send_raw(&mut self, raw: &[u8]) -> io::Result<HubReply> {
        self.tls.write_all(raw)?;
        self.tls.flush()?;
        self.read_reply()
    }

    /// GET with a bearer token.
    pub fn get(&mut self, target: &str, token: &str) -> io::Result<HubReply> {
        let auth = format!("Bearer {token}");
        self.request("GET", target, &[("Authorization", &auth)], b"")
    }

    /// A JSON body with a bearer token.
    pub fn send_json(
        &mut self,
        method: &str,
        target: &str,
        token: &str,
        body: &Value,
    ) -> io::Result<HubReply> {
        let auth = format!("Bearer {token}");
        let headers = [
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ];
        self.request(method, target, &headers, body.to_string().as_bytes())
    }

    fn fill(&mut self) -> io::Result<bool> {
        let mut buf = [0u8; 16 * 1024];
        match self.tls.read(&mut buf) {
            Ok(0) => Ok(false),
            Ok(n) => {
                self.carry.extend_from_slice(&buf[..n]);
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn read_reply(&mut self) -> io::Result<HubReply> {
        loop {
            let end = loop {
                if let Some(i) = self.carry.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                if !self.fill()? {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
            };
            let mut hs = [httparse::EMPTY_HEADER; 64];
            let mut r = httparse::Response::new(&mut hs);
            r.parse(&self.carry[..end]).map_err(io::Error::other)?;
            let status = r.code.unwrap_or(0);
            let headers: Vec<(String, String)> = r
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_string(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            self.carry.drain(..end);
            if status == 100 {
                continue;
            }
            let len: usize = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("Content-Length"))
                .and_then(|(_, v)| v.trim().parse().ok())
                .unwrap_or(0);
            let chunked = headers.iter().any(|(k, v)| {
                k.eq_ignore_ascii_case("Transfer-Encoding")
                    && v.to_ascii_lowercase().contains("chunked")
            });
            if chunked {
                let body = self.read_chunked()?;
                return Ok(HubReply {
                    status,
                    headers,
                    body,
                    truncated: false,
                });
            }
            let len = if status == 304 { 0 } else { len };
            let mut truncated = false;
            while self.carry.len() < len {
                if !self.fill()? {
                    truncated = true;
                    break;
                }
            }
            let take = len.min(self.carry.len());
            let body = self.carry.drain(..take).collect();
            return Ok(HubReply {
                status,
                headers,
                body,
                truncated,
            });
        }
    }

    /// A line of the stream, without its CRLF.
    fn read_line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(i) = self.carry.windows(2).position(|w| w == b"\r\n") {
                let line = self.carry[..i].to_vec();
                self.carry.drain(..i + 2);
                return Ok(line);
            }
            if !self.fill()? {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    fn read_chunked(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line()?;
            let text = String::from_utf8_lossy(&line);
            let size = usize::from_str_radix(text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(io::Error::other)?;
            if size == 0 {
                while !self.read_line()?.is_empty() {}
                return Ok(body);
            }
            while self.carry.len() < size + 2 {
                if !self.fill()? {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
            }
            body.extend_from_slice(&self.carry[..size]);
            self.carry.drain(..size + 2);
        }
    }

    /// True if the server has closed the connection (reads end of stream).
    pub fn is_closed(&mut self) -> bool {
        self.set_timeout(Duration::from_secs(2));
        matches!(self.fill(), Ok(false) | Err(_))
    }
}
