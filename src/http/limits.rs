//! Connection limits for the HTTP server: at most `max_connections` open at once (further ones
//! wait in the kernel's accept backlog until one closes, as Go's `netutil.LimitListener` does),
//! and a read-inactivity timeout on every connection, so a client that opens a connection and
//! sends its headers or body slowly (or not at all) is cut off after `read_timeout` without a
//! byte, instead of holding a connection for ever. The timeout also closes idle keep-alive
//! connections.

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

/// A `TcpListener` that hands out at most `max` connections at once, each with a read timeout.
pub struct LimitedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    read_timeout: Duration,
}

impl LimitedListener {
    pub fn new(inner: TcpListener, max_connections: usize, read_timeout: Duration) -> Self {
        LimitedListener { inner, permits: Arc::new(Semaphore::new(max_connections.max(1))), read_timeout }
    }

    /// With `http.max_connections` and `http.read_timeout`.
    pub fn from_config(inner: TcpListener, http: &crate::config::HttpConfig) -> Self {
        let read_timeout = Duration::from_millis(http.read_timeout.ms().max(1) as u64);
        Self::new(inner, http.max_connections, read_timeout)
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
                    return (TimedStream::new(stream, self.read_timeout, permit), addr);
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

/// A connection that fails a read after `timeout` without a byte, and releases its slot when
/// dropped.
pub struct TimedStream {
    inner: TcpStream,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
    _permit: OwnedSemaphorePermit,
}

impl TimedStream {
    fn new(inner: TcpStream, timeout: Duration, permit: OwnedSemaphorePermit) -> Self {
        TimedStream { inner, timeout, deadline: Box::pin(tokio::time::sleep(timeout)), _permit: permit }
    }
}

impl AsyncRead for TimedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    let next = Instant::now() + self.timeout;
                    self.deadline.as_mut().reset(next);
                }
                Poll::Ready(r)
            }
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no bytes from the client within the read timeout",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for TimedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
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
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
