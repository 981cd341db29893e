//! The accept loop of claimcheck's HTTP/1.1 servers (the webhook's and the codec server's):
//! TLS when given an acceptor, a bound on connections served at once, and clients that
//! must send their request in time.

use std::convert::Infallible;
use std::error::Error as StdError;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Connections served at once; more wait to be accepted.
    pub max_connections: usize,
    /// How long a client has for its TLS handshake and its request's headers.
    pub client_timeout: Duration,
    /// How long a connection may stay open, so that a client that stops reading an answer
    /// does not hold its server's resources for ever.
    pub max_connection: Duration,
}

/// Serves `listener` forever (abort the task to stop): `handle` answers each request with
/// the client's address.
pub async fn accept<H, F, B>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    bounds: Bounds,
    name: &'static str,
    handle: H,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let connections = Arc::new(Semaphore::new(bounds.max_connections));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, say: wait rather than spin.
                tracing::warn!(server = name, error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().acquire_owned().await else {
            return;
        };
        let (tls, handle) = (tls.clone(), handle.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tcp.set_nodelay(true);
            match tls {
                None => serve_connection(tcp, peer, bounds, name, handle).await,
                Some(acceptor) => {
                    let Ok(Ok(tls)) = tokio::time::timeout(bounds.client_timeout, acceptor.accept(tcp)).await
                    else {
                        return;
                    };
                    serve_connection(tls, peer, bounds, name, handle).await;
                }
            }
        });
    }
}

async fn serve_connection<S, H, F, B>(
    stream: S,
    peer: SocketAddr,
    bounds: Bounds,
    name: &'static str,
    handle: H,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let service = hyper::service::service_fn(move |request| handle(request, peer));
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(bounds.client_timeout)
        .serve_connection(TokioIo::new(stream), service);
    match tokio::time::timeout(bounds.max_connection, connection).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(server = name, error = %e, "connection closed"),
        Err(_) => tracing::debug!(server = name, "connection open too long: closed"),
    }
}
