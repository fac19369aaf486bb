//! The test hub's transport: the accept loop, one thread per connection, TLS through
//! rustls, and HTTP/1.1 framing (persistent connections, Content-Length or chunked request
//! bodies, responses with Content-Length, or chunked as Go's server sends large JSON when
//! `go_chunking` is on). Applies the down, stall and fail faults before a request reaches
//! the routes, counts everything, and logs every answer.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustls::{ServerConfig, ServerConnection, StreamOwned};

use super::message::{Request, Response, reason};
use super::shared::{Logged, Shared, lock};
use super::{routes, text};

/// How often a blocked connection looks at the down and stop flags.
const POLL: Duration = Duration::from_millis(20);
const MAX_HEAD: usize = 64 * 1024;
/// Go's server sends a Content-Length only for answers that fit this buffer.
const GO_CHUNKING_BUFFER: usize = 2048;

type Tls = StreamOwned<ServerConnection, TcpStream>;

pub fn spawn_accept(
    hub: Arc<Shared>,
    listener: TcpListener,
    config: Arc<ServerConfig>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for sock in listener.incoming() {
            if hub.stopping.load(Ordering::SeqCst) {
                break;
            }
            let Ok(sock) = sock else { continue };
            let id = hub.new_conn();
            if hub.down.load(Ordering::SeqCst) {
                drop(sock);
                hub.conn_closed(id);
                continue;
            }
            if let Ok(clone) = sock.try_clone() {
                lock(&hub.live).insert(id, clone);
            }
            let (h, c) = (hub.clone(), config.clone());
            let t = std::thread::spawn(move || {
                serve(&h, id, sock, c);
                h.conn_closed(id);
            });
            let mut threads = lock(&hub.threads);
            threads.retain(|t| !t.is_finished());
            threads.push(t);
        }
    })
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn serve(hub: &Shared, id: u64, sock: TcpStream, config: Arc<ServerConfig>) {
    let _ = sock.set_nodelay(true);
    let _ = sock.set_read_timeout(Some(POLL));
    let _ = sock.set_write_timeout(Some(Duration::from_secs(10)));
    let Ok(conn) = ServerConnection::new(config) else {
        return;
    };
    let mut tls = StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        match tls.conn.complete_io(&mut tls.sock) {
            Ok((0, 0)) => return,
            Ok(_) => {}
            Err(e) if is_timeout(&e) && !hub.halted() => {}
            Err(_) => return,
        }
    }
    hub.count_handshake(id);
    let mut carry = Vec::new();
    let mut served = 0u64;
    loop {
        match read_request(hub, id, &mut tls, &mut carry) {
            Ok(Some(mut req)) => {
                hub.count_request(id);
                served += 1;
                if hub.opts.max_requests.is_some_and(|max| served >= max) {
                    req.wants_close = true;
                }
                if !answer(hub, id, &mut tls, req) {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                // A request that does not parse: 400, then close, as Go's server does.
                let body = b"400 Bad Request";
                let head = format!(
                    "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = write_all(hub, id, &mut tls, &[head.as_bytes(), body].concat());
                break;
            }
            Ok(None) | Err(_) => break,
        }
    }
    tls.conn.send_close_notify();
    let _ = tls.flush();
    linger(hub, &mut tls.sock);
}

/// Closes our side, then reads until the client closes too (briefly), so that data it
/// sent last does not turn our close into a reset that could destroy our last answer.
fn linger(hub: &Shared, sock: &mut TcpStream) {
    if hub.halted() || sock.shutdown(std::net::Shutdown::Write).is_err() {
        return;
    }
    let end = Instant::now() + Duration::from_millis(500);
    let mut buf = [0u8; 4096];
    while Instant::now() < end && !hub.halted() {
        match sock.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {}
            Err(_) => return,
        }
    }
}

/// Reads more plaintext into `carry`; false at the end of the stream.
fn fill(hub: &Shared, id: u64, tls: &mut Tls, carry: &mut Vec<u8>) -> io::Result<bool> {
    fill_until(hub, id, tls, carry, None)
}

/// `fill`, but past `idle_until` it gives up as if the client had closed.
fn fill_until(
    hub: &Shared,
    id: u64,
    tls: &mut Tls,
    carry: &mut Vec<u8>,
    idle_until: Option<Instant>,
) -> io::Result<bool> {
    let mut buf = [0u8; 16 * 1024];
    loop {
        if hub.halted() {
            return Err(io::ErrorKind::ConnectionAborted.into());
        }
        match tls.read(&mut buf) {
            Ok(0) => return Ok(false),
            Ok(n) => {
                hub.count_in(id, n);
                carry.extend_from_slice(&buf[..n]);
                return Ok(true);
            }
            Err(e) if is_timeout(&e) && idle_until.is_some_and(|t| Instant::now() >= t) => {
                return Ok(false);
            }
            Err(e) if is_timeout(&e) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The next request, or `None` when the client closed cleanly between requests.
fn read_request(
    hub: &Shared,
    id: u64,
    tls: &mut Tls,
    carry: &mut Vec<u8>,
) -> io::Result<Option<Request>> {
    // An idle keep-alive connection is closed after `idle_timeout`, as servers do.
    let idle_until = hub.opts.idle_timeout.map(|d| Instant::now() + d);
    let head_end = loop {
        if let Some(i) = find(carry, b"\r\n\r\n") {
            break i + 4;
        }
        if carry.len() > MAX_HEAD {
            return Err(io::ErrorKind::InvalidData.into());
        }
        let idle = if carry.is_empty() { idle_until } else { None };
        if !fill_until(hub, id, tls, carry, idle)? {
            return if carry.is_empty() {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
    };
    let mut headers = [httparse::EMPTY_HEADER; 96];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(&carry[..head_end]) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(io::ErrorKind::InvalidData.into()),
    }
    let mut req = Request {
        method: parsed.method.unwrap_or("").to_string(),
        target: parsed.path.unwrap_or("").to_string(),
        headers: parsed
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect(),
        body: Vec::new(),
        wants_close: false,
        http10: parsed.version == Some(0),
    };
    let connection = req.header("Connection").map(str::to_ascii_lowercase);
    req.wants_close = match (parsed.version, connection) {
        (_, Some(c)) if c.contains("close") => true,
        (Some(0), Some(c)) => !c.contains("keep-alive"),
        (Some(0), None) => true,
        _ => false,
    };
    carry.drain(..head_end);
    if req
        .header("Expect")
        .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
    {
        write_all(hub, id, tls, b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let chunked = req
        .header("Transfer-Encoding")
        .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
    if chunked {
        req.body = read_chunked(hub, id, tls, carry)?;
    } else if let Some(cl) = req.header("Content-Length") {
        let n: usize = cl
            .trim()
            .parse()
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
        while carry.len() < n {
            if !fill(hub, id, tls, carry)? {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        req.body = carry.drain(..n).collect();
    }
    Ok(Some(req))
}

fn read_chunked(hub: &Shared, id: u64, tls: &mut Tls, carry: &mut Vec<u8>) -> io::Result<Vec<u8>> {
    let bad = || io::Error::from(io::ErrorKind::InvalidData);
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(i) = find(carry, b"\r\n") {
                break i;
            }
            if !fill(hub, id, tls, carry)? {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        };
        let line = std::str::from_utf8(&carry[..line_end]).map_err(|_| bad())?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| bad())?;
        carry.drain(..line_end + 2);
        if size == 0 {
            // Trailer lines up to the empty line.
            loop {
                let end = loop {
                    if let Some(i) = find(carry, b"\r\n") {
                        break i;
                    }
                    if !fill(hub, id, tls, carry)? {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                };
                carry.drain(..end + 2);
                if end == 0 {
                    return Ok(body);
                }
            }
        }
        while carry.len() < size + 2 {
            if !fill(hub, id, tls, carry)? {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        if &carry[size..size + 2] != b"\r\n" {
            return Err(bad());
        }
        body.extend_from_slice(&carry[..size]);
        carry.drain(..size + 2);
    }
}

/// Counts, then writes: a test that has read an answer sees it counted already.
fn write_all(hub: &Shared, id: u64, tls: &mut Tls, data: &[u8]) -> io::Result<()> {
    hub.count_out(id, data.len());
    tls.write_all(data)?;
    tls.flush()
}

/// Applies faults, routes, logs the answer and writes it (in that order, so a test that
/// has read an answer finds it in the log); false to close the connection.
fn answer(hub: &Shared, id: u64, tls: &mut Tls, req: Request) -> bool {
    let stall = hub.faults().stall_for(&req.target);
    if let Some(d) = stall
        && !hub.sleep(d)
    {
        return false;
    }
    let failed = hub.faults().take_fail(&req.target);
    if failed == Some(0) {
        hub.record(Logged {
            conn: id,
            method: req.method,
            path: req.target,
            status: 0,
            req_headers: req.headers,
            body_len: req.body.len(),
            resp_len: 0,
            at: Instant::now(),
        });
        let _ = tls.sock.shutdown(std::net::Shutdown::Both);
        return false;
    }
    let resp = match failed {
        Some(status) => Response::error(status, "injected failure"),
        None => routes::route(hub, &req),
    };
    let close = req.wants_close || resp.cut_at.is_some();

    let mut head = format!(
        "HTTP/1.1 {} {}\r\nDate: {}\r\n",
        resp.status,
        reason(resp.status),
        text::http_date_now()
    );
    for (k, v) in &resp.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    // Go's server chunks a handler's answer once it outgrows its 2 KiB buffer; the blob
    // store sets a length, and HTTP/1.0 cannot chunk.
    let chunked = hub.opts.go_chunking
        && !req.http10
        && resp.body.len() > GO_CHUNKING_BUFFER
        && resp.cut_at.is_none()
        && resp
            .headers
            .iter()
            .any(|(k, v)| k == "Content-Type" && v.starts_with("application/json"));
    if chunked {
        head.push_str("Transfer-Encoding: chunked\r\n");
    } else {
        head.push_str(&format!("Content-Length: {}\r\n", resp.body.len()));
    }
    if close {
        head.push_str("Connection: close\r\n");
    } else if req.http10 {
        head.push_str("Connection: keep-alive\r\n");
    }
    head.push_str("\r\n");
    let sent = resp.cut_at.unwrap_or(resp.body.len()).min(resp.body.len());
    let mut out = head.into_bytes();
    if chunked {
        for piece in resp.body.chunks(4096) {
            out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            out.extend_from_slice(piece);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
    } else {
        out.extend_from_slice(&resp.body[..sent]);
    }
    hub.record(Logged {
        conn: id,
        method: req.method,
        path: req.target,
        status: resp.status,
        req_headers: req.headers,
        body_len: req.body.len(),
        resp_len: sent,
        at: Instant::now(),
    });
    let ok = write_all(hub, id, tls, &out).is_ok();
    if resp.cut_at.is_some() {
        // Close without close_notify, as a dropped connection would.
        let _ = tls.sock.shutdown(std::net::Shutdown::Both);
        return false;
    }
    ok && !close
}
