//! Mounts the proxy on the gRPC service names it forwards, and serves them.

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tokio::net::TcpListener;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use super::Proxy;

pub trait ServiceName: Send + Sync + 'static {
    const NAME: &'static str;
}

pub struct WorkflowService;
pub struct OperatorService;
/// Clients probe the frontend's health through the proxy too.
pub struct HealthService;

impl ServiceName for WorkflowService {
    const NAME: &'static str = "temporal.api.workflowservice.v1.WorkflowService";
}
impl ServiceName for OperatorService {
    const NAME: &'static str = "temporal.api.operatorservice.v1.OperatorService";
}
impl ServiceName for HealthService {
    const NAME: &'static str = "grpc.health.v1.Health";
}

/// The proxy, as the tower service of one gRPC service name.
pub struct Route<N> {
    proxy: Arc<Proxy>,
    name: PhantomData<fn() -> N>,
}

impl<N> Clone for Route<N> {
    fn clone(&self) -> Self {
        Route {
            proxy: self.proxy.clone(),
            name: PhantomData,
        }
    }
}

impl<N: ServiceName> NamedService for Route<N> {
    const NAME: &'static str = N::NAME;
}

impl<N> tower::Service<Request<Body>> for Route<N> {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let proxy = self.proxy.clone();
        Box::pin(async move { Ok(proxy.handle(req).await) })
    }
}

fn route<N: ServiceName>(proxy: &Arc<Proxy>) -> Route<N> {
    Route {
        proxy: proxy.clone(),
        name: PhantomData,
    }
}

/// Serves the proxy on `listener` until `shutdown` completes, then drains calls in flight.
pub async fn serve(
    proxy: Arc<Proxy>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    Server::builder()
        .initial_stream_window_size(Some(8 << 20))
        .initial_connection_window_size(Some(16 << 20))
        // Lets a client send a large payload in 1 MiB frames rather than HTTP/2's 16 KiB.
        .max_frame_size(Some(1 << 20))
        .add_service(route::<WorkflowService>(&proxy))
        .add_service(route::<OperatorService>(&proxy))
        .add_service(route::<HealthService>(&proxy))
        .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), shutdown)
        .await
}
