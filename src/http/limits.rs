//! Connection limits for the HTTP server: at most `max_connections` open at once (further ones
//! wait in the kernel's accept backlog until one closes, as Go's `netutil.LimitListener` does),
//! and timeouts on what the client owes, so a slow or stalled client cannot hold a connection:
//!
//! - **headers**: a request's headers must be complete within `header_timeout` of their first
//!   byte (an absolute deadline, like Go's `ReadHeaderTimeout` and hyper's
//!   `header_read_timeout`, which axum's server does not switch on): trickling one byte a second
//!   no longer keeps a connection;
//! - **inactivity**: `read_timeout` without a byte while headers or a body are owed, or while
//!   the connection idles between requests (keep-alive);
//! - **none while the server works**: once a request is complete (headers, then `Content-Length`
//!   bytes of body) until the response starts, nothing is owed by the client, so a slow handler
//!   is never cut off. A chunked body's end is not tracked: it stays under the inactivity
//!   timeout until the response starts.
//!
//! The stream sees bytes, not HTTP: it finds the end of the headers (`\r\n\r\n`) and reads
//! `Content-Length` from them; hyper still parses and enforces everything else.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// The per-connection timeouts (module doc).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub read_timeout: Duration,
    pub header_timeout: Duration,
}

/// A `TcpListener` that hands out at most `max` connections at once, each with [`Limits`].
pub struct LimitedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    limits: Limits,
}

impl LimitedListener {
    pub fn new(inner: TcpListener, max_connections: usize, limits: Limits) -> Self {
        LimitedListener { inner, permits: Arc::new(Semaphore::new(max_connections.max(1))), limits }
    }

    /// With `http.max_connections`, `http.read_timeout` and `http.header_timeout`.
    pub fn from_config(inner: TcpListener, http: &crate::config::HttpConfig) -> Self {
        let ms = |d: &crate::config::Dur| Duration::from_millis(d.ms().max(1) as u64);
        let limits = Limits { read_timeout: ms(&http.read_timeout), header_timeout: ms(&http.header_timeout) };
        Self::new(inner, http.max_connections, limits)
    }
}

impl axum::serve::Listener for LimitedListener {
    type Io = TimedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // Acquired before accepting: at the limit, new connections wait in the backlog.
        let permit = self.permits.clone().acquire_owned().await.expect("the semaphore is never closed");
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    return (TimedStream::new(stream, self.limits, permit), addr);
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly (as axum does).
                    tracing::warn!(error = %e, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// What the connection is waiting for (see the module doc).
#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// Between requests: inactivity timeout.
    Idle,
    /// A request's headers have begun (at `since`); `block` holds them so far (capped).
    Headers { since: Instant, block: Vec<u8> },
    /// Body bytes still owed (None: chunked, until the response starts).
    Body { remaining: Option<u64> },
    /// The request is complete: the server is working, the client owes nothing.
    Handling,
}

/// Header bytes kept to find `Content-Length` (hyper refuses larger header blocks anyway).
const MAX_HEADER_BLOCK: usize = 64 << 10;

/// A connection with the deadlines of the module doc; releases its slot when dropped.
pub struct TimedStream {
    inner: TcpStream,
    read_timeout: Duration,
    header_timeout: Duration,
    phase: Phase,
    deadline: Pin<Box<Sleep>>,
    _permit: OwnedSemaphorePermit,
}

impl TimedStream {
    fn new(inner: TcpStream, limits: Limits, permit: OwnedSemaphorePermit) -> Self {
        TimedStream {
            inner,
            read_timeout: limits.read_timeout,
            header_timeout: limits.header_timeout,
            phase: Phase::Idle,
            deadline: Box::pin(tokio::time::sleep(limits.read_timeout)),
            _permit: permit,
        }
    }

    /// Advances the phase over bytes read from the client.
    fn observe(&mut self, mut bytes: &[u8], now: Instant) {
        while !bytes.is_empty() {
            match &mut self.phase {
                Phase::Idle | Phase::Handling => {
                    // A new request (or a pipelined one) begins.
                    self.phase = Phase::Headers { since: now, block: Vec::new() };
                }
                Phase::Headers { block, .. } => {
                    let keep = bytes.len().min(MAX_HEADER_BLOCK.saturating_sub(block.len()).max(4));
                    let seen = block.len();
                    // Look for the blank line across the previous read's tail.
                    block.extend_from_slice(&bytes[..keep]);
                    let from = seen.saturating_sub(3);
                    match block[from..].windows(4).position(|w| w == b"\r\n\r\n") {
                        Some(p) => {
                            let end = from + p + 4;
                            let body = content_length(&block[..end]);
                            let consumed = end - seen;
                            bytes = &bytes[consumed..];
                            self.phase = match body {
                                Some(0) => Phase::Handling,
                                n => Phase::Body { remaining: n },
                            };
                        }
                        None => {
                            if block.len() > MAX_HEADER_BLOCK {
                                // Keep only a tail to find the end in.
                                let cut = block.len() - 3;
                                block.drain(..cut);
                            }
                            bytes = &bytes[keep..];
                        }
                    }
                }
                Phase::Body { remaining: Some(n) } => {
                    let take = (*n).min(bytes.len() as u64);
                    *n -= take;
                    bytes = &bytes[take as usize..];
                    if *n == 0 {
                        self.phase = Phase::Handling;
                    }
                }
                Phase::Body { remaining: None } => return,
            }
        }
    }

    /// When the client's time runs out in the current phase (None: it owes nothing).
    fn due(&self, last_byte: Instant) -> Option<Instant> {
        match &self.phase {
            Phase::Idle | Phase::Body { .. } => Some(last_byte + self.read_timeout),
            Phase::Headers { since, .. } => Some((last_byte + self.read_timeout).min(*since + self.header_timeout)),
            Phase::Handling => None,
        }
    }

    fn rearm(&mut self, last_byte: Instant) {
        // Far enough to never fire while the server works (re-armed when the response starts).
        let at = self.due(last_byte).unwrap_or(last_byte + Duration::from_secs(100 * 365 * 86_400));
        self.deadline.as_mut().reset(at);
    }
}

/// `Content-Length` of a header block: Some(n); None for `Transfer-Encoding` (chunked: its end
/// is not tracked) ; Some(0) when neither is given (no body).
fn content_length(block: &[u8]) -> Option<u64> {
    let text = String::from_utf8_lossy(block);
    let mut length = Some(0);
    for line in text.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else { continue };
        let name = name.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            return None;
        }
        if name.eq_ignore_ascii_case("content-length") {
            // Unparsable: hyper answers 400 and closes; treat as chunked meanwhile.
            length = value.trim().parse().ok();
        }
    }
    length
}

impl AsyncRead for TimedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    let now = Instant::now();
                    let read = buf.filled()[before..].to_vec();
                    self.observe(&read, now);
                    self.rearm(now);
                }
                Poll::Ready(r)
            }
            Poll::Pending if self.phase == Phase::Handling => Poll::Pending,
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    let what = if matches!(self.phase, Phase::Headers { .. }) {
                        "request headers not complete within the header timeout, or no bytes within the read timeout"
                    } else {
                        "no bytes from the client within the read timeout"
                    };
                    Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl TimedStream {
    /// The response has started: the client owes nothing more for this request (a chunked body
    /// not read to its end included), and the idle timer restarts.
    fn response_started(&mut self) {
        if matches!(self.phase, Phase::Handling | Phase::Body { remaining: None }) {
            self.phase = Phase::Idle;
            self.rearm(Instant::now());
        }
    }
}

impl AsyncWrite for TimedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.response_started();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.response_started();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The phase after `request` arrives split at every pair of points (three reads).
    fn phases(request: &[u8]) -> Vec<Phase> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
            let permits = Arc::new(Semaphore::new(1));
            let limits = Limits { read_timeout: Duration::from_secs(1), header_timeout: Duration::from_secs(1) };
            let mut s = TimedStream::new(client, limits, permits.acquire_owned().await.unwrap());
            let mut out = Vec::new();
            for i in 0..=request.len() {
                for j in i..=request.len() {
                    s.phase = Phase::Idle;
                    let now = Instant::now();
                    for part in [&request[..i], &request[i..j], &request[j..]] {
                        s.observe(part, now);
                    }
                    out.push(match &s.phase {
                        Phase::Headers { since, .. } => Phase::Headers { since: *since, block: Vec::new() },
                        p => p.clone(),
                    });
                }
            }
            out
        })
    }

    #[test]
    fn the_end_of_a_request_is_found_however_it_is_split() {
        let get = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert!(phases(get).iter().all(|p| *p == Phase::Handling));
        let post = b"POST / HTTP/1.1\r\ncontent-LENGTH: 5\r\n\r\nhello";
        assert!(phases(post).iter().all(|p| *p == Phase::Handling));
        let short = b"POST / HTTP/1.1\r\nContent-Length: 7\r\n\r\nhello";
        assert!(phases(short).iter().all(|p| *p == Phase::Body { remaining: Some(2) }));
        let chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n";
        assert!(phases(chunked).iter().all(|p| *p == Phase::Body { remaining: None }));
        let half = b"GET / HTTP/1.1\r\nHost: x\r\n";
        assert!(phases(half).iter().all(|p| matches!(p, Phase::Headers { .. })));
    }

    #[test]
    fn content_length_reads_the_header_block() {
        assert_eq!(content_length(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), Some(0));
        assert_eq!(content_length(b"POST / HTTP/1.1\r\nContent-Length:  12 \r\n\r\n"), Some(12));
        assert_eq!(content_length(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"), None);
        assert_eq!(content_length(b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n"), None);
    }
}
