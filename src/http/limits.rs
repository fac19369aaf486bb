//! Bounds on what a peer may send. Every buffer the daemon keeps for a peer is sized by these.

/// Framing limits shared by every HTTP listener.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Bytes allowed for the request line plus headers (with the blank line).
    pub max_head_bytes: usize,
    /// Header lines allowed in one head.
    pub max_headers: usize,
    /// Bytes allowed for one chunk-size line, extensions included.
    pub max_chunk_line: usize,
    /// Bytes allowed for the trailer section of a chunked body.
    pub max_trailer_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 8 * 1024,
            max_headers: 32,
            max_chunk_line: 1024,
            max_trailer_bytes: 4 * 1024,
        }
    }
}

/// httparse wants a fixed array; no head may carry more header lines than this.
pub const HEADER_SLOTS: usize = 64;
