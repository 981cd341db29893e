//! What the operator asks of Temporal itself: a namespace's retention, for `retention: auto`.

use std::time::Duration;

use temporalio_protos::temporal::api::workflowservice::v1::{
    DescribeNamespaceRequest, DescribeNamespaceResponse,
};
use tonic::codegen::http::uri::PathAndQuery;
use tonic_prost::ProstCodec;

const DESCRIBE_NAMESPACE: &str = "/temporal.api.workflowservice.v1.WorkflowService/DescribeNamespace";

#[derive(Debug, thiserror::Error)]
pub enum TemporalError {
    #[error("cannot reach Temporal at {address}: {reason}")]
    Unreachable { address: String, reason: String },
    #[error("Temporal at {address} has no namespace {namespace:?}: {reason}")]
    Namespace {
        address: String,
        namespace: String,
        reason: String,
    },
    #[error("namespace {0:?} reports no retention")]
    NoRetention(String),
}

/// The namespace's `workflow_execution_retention_ttl`, read with DescribeNamespace.
pub async fn namespace_retention(
    channel: tonic::transport::Channel,
    address: &str,
    namespace: &str,
) -> Result<Duration, TemporalError> {
    let unreachable = |reason: String| TemporalError::Unreachable {
        address: address.to_owned(),
        reason,
    };
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| unreachable(e.to_string()))?;
    let request = tonic::Request::new(DescribeNamespaceRequest {
        namespace: namespace.to_owned(),
        ..Default::default()
    });
    let codec: ProstCodec<DescribeNamespaceRequest, DescribeNamespaceResponse> = ProstCodec::default();
    let response = grpc
        .unary(request, PathAndQuery::from_static(DESCRIBE_NAMESPACE), codec)
        .await
        .map_err(|status| match status.code() {
            tonic::Code::NotFound | tonic::Code::InvalidArgument => TemporalError::Namespace {
                address: address.to_owned(),
                namespace: namespace.to_owned(),
                reason: status.message().to_owned(),
            },
            _ => unreachable(format!("{:?}: {}", status.code(), status.message())),
        })?;
    let ttl = response
        .into_inner()
        .config
        .and_then(|c| c.workflow_execution_retention_ttl)
        .ok_or_else(|| TemporalError::NoRetention(namespace.to_owned()))?;
    let seconds = u64::try_from(ttl.seconds).unwrap_or(0);
    Ok(Duration::from_secs(seconds) + Duration::from_nanos(u64::try_from(ttl.nanos).unwrap_or(0)))
}
