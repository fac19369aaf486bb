//! One blob download on a connection of its own: GET (with `Range` to resume), the body
//! streamed through the [`Sink`] to the file, progress reports, one completion.
//!
//! Owns the connection and the sink of one fetch. It never reuses its connection for anything
//! else and never holds more of the body than one read slice.

use std::time::Instant;

use mio::{Registry, Token};

use super::blob::{Sink, parse_url};
use super::exchange::{Pumped, pump_reply, push_request};
use super::stream::{Dial, TlsConn};
use super::{Blob, BlobDone, CallId, Completion, NetError, PROGRESS_STEP, Stats, TransportConfig};
use crate::http::{BodyMode, Limits, ResponseReader, encode_request};

pub enum Started {
    Running(Box<BlobJob>),
    /// The partial file already holds the expected size.
    Finished(BlobDone),
}

pub struct BlobJob {
    pub id: CallId,
    conn: TlsConn,
    wire: Vec<u8>,
    sent: usize,
    reader: ResponseReader,
    sink: Option<Sink>,
    expected: Option<u64>,
    last_progress: Instant,
    counted: bool,
    more: bool,
}

impl BlobJob {
    pub fn start(
        registry: &Registry,
        token: Token,
        dial: &Dial<'_>,
        cfg: &TransportConfig,
        now: Instant,
        id: CallId,
        blob: Blob,
    ) -> Result<Started, NetError> {
        let url = parse_url(&blob.url)?;
        let sink = Sink::open(&blob.dest, blob.expected_size)?;
        if sink.bytes > 0 && blob.expected_size == Some(sink.bytes) {
            let bytes = sink.bytes;
            return Ok(Started::Finished(BlobDone {
                bytes,
                sha256_hex: sink.finish()?,
                resumed_from: bytes,
            }));
        }
        let mut headers = vec![("User-Agent".to_string(), cfg.user_agent.clone())];
        if sink.bytes > 0 {
            headers.push(("Range".into(), format!("bytes={}-", sink.bytes)));
        }
        let wire = encode_request("GET", &url.host_header(), &url.target, &headers, None);
        let deadline = now + cfg.connect_timeout;
        let conn = TlsConn::open(registry, token, dial, &url.host, url.port, deadline, now)?;
        Ok(Started::Running(Box::new(BlobJob {
            id,
            conn,
            wire,
            sent: 0,
            reader: ResponseReader::new(Limits::default(), false, BodyMode::Stream),
            sink: Some(sink),
            expected: blob.expected_size,
            last_progress: now,
            counted: false,
            more: false,
        })))
    }

    /// Make progress; true when the fetch completed (its completion is in `out`).
    pub fn drive(
        &mut self,
        registry: &Registry,
        now: Instant,
        cfg: &TransportConfig,
        stats: &mut Stats,
        out: &mut Vec<Completion>,
    ) -> bool {
        self.more = false;
        let result = match self.step(registry, now, cfg, stats, out) {
            Ok(None) => return false,
            Ok(Some(done)) => Ok(done),
            Err(e) => Err(e),
        };
        self.close(registry);
        out.push(Completion::BlobDone {
            id: self.id,
            result,
        });
        true
    }

    fn step(
        &mut self,
        registry: &Registry,
        now: Instant,
        cfg: &TransportConfig,
        stats: &mut Stats,
        out: &mut Vec<Completion>,
    ) -> Result<Option<BlobDone>, NetError> {
        let was_open = self.conn.is_open();
        self.conn.advance(registry, now, stats)?;
        if !self.conn.is_open() {
            return Ok(None);
        }
        if !was_open {
            self.last_progress = now;
        }
        let wrote = push_request(&mut self.conn, &self.wire, &mut self.sent, stats)?;
        if self.sent == self.wire.len() && !self.counted {
            self.counted = true;
            stats.requests += 1;
        }
        let mut got = false;
        let id = self.id;
        let sink = &mut self.sink;
        let pumped = pump_reply(
            &mut self.conn,
            &mut self.reader,
            stats,
            &mut got,
            |fed, input, reader| {
                let Some(sink) = sink.as_mut() else {
                    return Err(NetError::Closed);
                };
                if fed.head
                    && let Some(head) = reader.head()
                {
                    sink.accept_head(head)?;
                }
                if !fed.data.is_empty() {
                    sink.write(&input[fed.data.clone()])?;
                    if sink.bytes >= sink.last_report + PROGRESS_STEP {
                        sink.last_report = sink.bytes;
                        out.push(Completion::BlobProgress {
                            id,
                            bytes: sink.bytes,
                        });
                    }
                }
                Ok(())
            },
        )?;
        if wrote || got {
            self.last_progress = now;
        }
        match pumped {
            Pumped::Done { .. } => {
                let Some(sink) = self.sink.take() else {
                    return Err(NetError::Closed);
                };
                if let Some(size) = self.expected.filter(|&s| s != sink.bytes) {
                    return Err(NetError::Protocol(format!(
                        "blob is {} bytes, expected {size}",
                        sink.bytes
                    )));
                }
                let (bytes, resumed_from) = (sink.bytes, sink.resumed_from);
                Ok(Some(BlobDone {
                    bytes,
                    sha256_hex: sink.finish()?,
                    resumed_from,
                }))
            }
            Pumped::Budget => {
                self.more = true;
                Ok(None)
            }
            Pumped::Blocked if now >= self.last_progress + cfg.request_timeout => {
                Err(NetError::Timeout)
            }
            Pumped::Blocked => Ok(None),
        }
    }

    pub fn deadline(&self, cfg: &TransportConfig, now: Option<Instant>) -> Option<Instant> {
        if self.more {
            return now;
        }
        if self.conn.is_open() {
            Some(self.last_progress + cfg.request_timeout)
        } else {
            self.conn.deadline()
        }
    }

    pub fn close(&mut self, registry: &Registry) {
        self.conn.close(registry);
    }
}
