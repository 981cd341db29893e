//! The bodies the proxy sends: whole ones, and answers that stream while their payloads
//! are put back.

use std::convert::Infallible;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::{self, BoxStream};
use http::HeaderMap;
use http_body::Frame;
use http_body_util::StreamBody;
use tonic::Status;
use tonic::body::Body;

use crate::payload::transform::TransformError;

/// A body of data chunks, then the trailers.
pub fn whole(chunks: Vec<Bytes>, trailers: Option<HeaderMap>) -> Body {
    let data = chunks.into_iter().filter(|c| !c.is_empty()).map(Frame::data);
    let frames: Vec<Result<Frame<Bytes>, Infallible>> =
        data.chain(trailers.map(Frame::trailers)).map(Ok).collect();
    Body::new(StreamBody::new(stream::iter(frames)))
}

/// An answer's single message, `prefix` then its chunks as they arrive, then the server's
/// trailers. A failure part-way ends the body with the status `fail` makes of it in place of
/// those trailers: the client is left with an incomplete message and that status, never a
/// complete message with a wrong payload. `hold` (budget permits) lives as long as the body.
pub fn streamed<H: Send + 'static>(
    prefix: Bytes,
    chunks: BoxStream<'static, Result<Bytes, TransformError>>,
    trailers: Option<HeaderMap>,
    fail: impl FnOnce(&TransformError) -> Status + Send + 'static,
    hold: H,
) -> Body {
    let state = Streamed {
        chunks: Some(stream::once(async move { Ok(prefix) }).chain(chunks).boxed()),
        trailers,
        fail: Some(fail),
        _hold: hold,
    };
    let frames = stream::unfold(state, |mut state| async move {
        let frame = state.next().await?;
        Some((Ok::<_, Infallible>(frame), state))
    });
    Body::new(StreamBody::new(frames))
}

struct Streamed<F, H> {
    chunks: Option<BoxStream<'static, Result<Bytes, TransformError>>>,
    trailers: Option<HeaderMap>,
    fail: Option<F>,
    _hold: H,
}

impl<F: FnOnce(&TransformError) -> Status, H> Streamed<F, H> {
    async fn next(&mut self) -> Option<Frame<Bytes>> {
        if let Some(chunks) = self.chunks.as_mut() {
            match chunks.next().await {
                Some(Ok(chunk)) => return Some(Frame::data(chunk)),
                Some(Err(error)) => {
                    self.chunks = None;
                    let status = self.fail.take().map(|fail| fail(&error));
                    self.trailers = status.map(|status| trailers_of(&status));
                }
                None => self.chunks = None,
            }
        }
        self.trailers.take().map(Frame::trailers)
    }
}

fn trailers_of(status: &Status) -> HeaderMap {
    let mut trailers = HeaderMap::new();
    if status.add_header(&mut trailers).is_err() {
        // Only a status whose details do not fit a header gets here: send its code alone.
        Status::new(status.code(), "").add_header(&mut trailers).ok();
    }
    trailers
}
