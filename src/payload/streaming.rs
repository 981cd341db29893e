//! Puts payloads back into an answer while their bytes arrive from the stores, so that a
//! large answer starts towards the client after the store's first bytes, not its last.
//!
//! The answer's length is known before any object is read: every reference this proxy
//! writes carries its payload's size, and a length prefix needs nothing else. Objects are
//! read in parallel, each in its own task so that a slow client does not stall a store's
//! connection, and their chunks are sent in message order. Each object's last chunk is
//! held back until its size and SHA-256 pass, so a client never completes a message that
//! holds a payload failing the check: it gets the failure instead.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{self, BoxStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

use crate::payload::rewrite::{self, Pending, Piece};
use crate::payload::schema::Node;
use crate::payload::transform::{Checked, TransformError, Transformer};
use crate::payload::wire::WireError;

/// A message whose payloads are being put back.
pub struct Streaming {
    /// The whole message's length once every payload is in.
    pub len: usize,
    /// The message's bytes in order; a failure is the last item.
    pub chunks: BoxStream<'static, Result<Bytes, TransformError>>,
}

impl Transformer {
    /// Like [`Transformer::rehydrate`], but the answer streams. A reference without a size
    /// (an SDK may omit it) makes the whole answer wait for its objects, as `rehydrate` does.
    pub async fn rehydrate_streaming(
        self: &Arc<Self>,
        root: Node,
        msg: &Bytes,
        namespace: &str,
    ) -> Result<Option<Streaming>, TransformError> {
        let found = self.owned_references(root, msg)?;
        if found.is_empty() {
            return Ok(None);
        }
        let sizes: Option<Vec<usize>> = found
            .iter()
            .map(|(_, owned)| owned.reference.size_bytes.and_then(|s| usize::try_from(s).ok()))
            .collect();
        let Some(sizes) = sizes else {
            let whole = self.rehydrate_found(root, msg, namespace, found).await?;
            return Ok(whole.map(|spliced| Streaming {
                len: spliced.len(),
                chunks: Box::pin(stream::iter(spliced.into_chunks().into_iter().map(Ok))),
            }));
        };
        let parallel = Arc::new(Semaphore::new(self.parallelism()));
        let mut pending = Vec::with_capacity(found.len());
        let mut sources = HashMap::with_capacity(found.len());
        for ((range, owned), len) in found.into_iter().zip(sizes) {
            let checked = self.check(&owned, namespace)?;
            let source = match self.cached(&checked) {
                Some(bytes) => Source::Ready(bytes),
                None => Source::Arriving(Arriving::start(self.clone(), checked, len, parallel.clone())),
            };
            sources.insert(range.start, source);
            pending.push(Pending { range, len });
        }
        let (pieces, len) = rewrite::splice_pending(self.schema(), root, msg, &pending)?;
        let delivery = Delivery {
            pieces: pieces.into(),
            sources,
            current: None,
            done: false,
        };
        let chunks = stream::unfold(delivery, |mut delivery| async move {
            let next = delivery.next().await?;
            Some((next, delivery))
        });
        Ok(Some(Streaming {
            len,
            chunks: Box::pin(chunks),
        }))
    }
}

enum Source {
    Ready(Bytes),
    Arriving(Arriving),
}

/// An object being read by its own task.
struct Arriving {
    chunks: mpsc::UnboundedReceiver<Result<Bytes, TransformError>>,
    object: String,
    len: usize,
    received: usize,
    task: JoinHandle<()>,
}

impl Arriving {
    fn start(transformer: Arc<Transformer>, checked: Checked, len: usize, parallel: Arc<Semaphore>) -> Self {
        let (send, chunks) = mpsc::unbounded_channel();
        let object = checked.object.clone();
        let task = tokio::spawn(async move {
            // Never closed, so a permit always comes.
            let _permit = parallel.acquire_owned().await;
            transformer
                .stream_one(&checked, |item| send.send(item).is_ok())
                .await;
        });
        Arriving {
            chunks,
            object,
            len,
            received: 0,
            task,
        }
    }
}

impl Drop for Arriving {
    /// A client that goes away stops the reads it started.
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Delivery {
    pieces: VecDeque<Piece>,
    sources: HashMap<usize, Source>,
    current: Option<Arriving>,
    done: bool,
}

impl Delivery {
    async fn next(&mut self) -> Option<Result<Bytes, TransformError>> {
        if self.done {
            return None;
        }
        let next = self.advance().await;
        self.done = matches!(next, Some(Err(_)));
        next
    }

    async fn advance(&mut self) -> Option<Result<Bytes, TransformError>> {
        loop {
            if let Some(arriving) = self.current.as_mut() {
                match arriving.chunks.recv().await {
                    Some(Ok(chunk)) => {
                        arriving.received += chunk.len();
                        if arriving.received > arriving.len {
                            return Some(Err(short_or_long(arriving)));
                        }
                        return Some(Ok(chunk));
                    }
                    Some(Err(e)) => return Some(Err(e)),
                    // A task that ended without its last chunk or a failure was cut short.
                    None if arriving.received != arriving.len => return Some(Err(short_or_long(arriving))),
                    None => self.current = None,
                }
            }
            match self.pieces.pop_front()? {
                Piece::Bytes(bytes) => return Some(Ok(bytes)),
                Piece::Payload(start) => match self.sources.remove(&start) {
                    Some(Source::Ready(bytes)) => return Some(Ok(bytes)),
                    Some(Source::Arriving(arriving)) => self.current = Some(arriving),
                    None => return Some(Err(TransformError::Wire(WireError::Truncated))),
                },
            }
        }
    }
}

fn short_or_long(arriving: &Arriving) -> TransformError {
    TransformError::SizeMismatch {
        object: arriving.object.clone(),
        expected: arriving.len as u64,
        actual: arriving.received as u64,
    }
}
