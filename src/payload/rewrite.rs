//! Finds the payloads in a protobuf message and splices replacements in, at the wire
//! level: fields that cannot lead to a payload are copied as raw bytes, and a message
//! with nothing to replace is never re-encoded.
//!
//! Both functions are synchronous and do no I/O; the proxy decides what each payload
//! becomes (see `crate::payload::transform`).

use std::collections::HashMap;
use std::ops::Range;

use bytes::Bytes;

use crate::payload::schema::{Node, Schema};
use crate::payload::wire::{self, Field, Fields, WIRE_LEN, WireError};

/// Protobuf's own default recursion limit; `Failure.cause` is recursive.
const MAX_DEPTH: usize = 100;

/// New bytes for the `Payload` message content at `range` of the original buffer.
#[derive(Debug, Clone)]
pub struct Replacement {
    pub range: Range<usize>,
    pub bytes: Bytes,
}

/// A replacement still on its way: only its length is known, which is all the enclosing
/// length prefixes need.
#[derive(Debug, Clone)]
pub struct Pending {
    pub range: Range<usize>,
    pub len: usize,
}

/// A piece of a message spliced around pending replacements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Bytes(Bytes),
    /// The place of the pending replacement of the payload whose content began at this
    /// offset of the original buffer.
    Payload(usize),
}

/// What the splicer needs of a replacement.
trait Slot {
    fn range(&self) -> &Range<usize>;
    fn len(&self) -> usize;
}

impl Slot for Replacement {
    fn range(&self) -> &Range<usize> {
        &self.range
    }
    fn len(&self) -> usize {
        self.bytes.len()
    }
}

impl Slot for Pending {
    fn range(&self) -> &Range<usize> {
        &self.range
    }
    fn len(&self) -> usize {
        self.len
    }
}

/// Byte ranges of the content of every `Payload` reachable from `root`, in order.
pub fn payload_ranges(schema: &Schema, root: Node, buf: &[u8]) -> Result<Vec<Range<usize>>, WireError> {
    let mut out = Vec::new();
    collect(schema, root, buf, 0..buf.len(), 0, &mut out)?;
    Ok(out)
}

fn collect(
    schema: &Schema,
    node: Node,
    buf: &[u8],
    range: Range<usize>,
    depth: usize,
    out: &mut Vec<Range<usize>>,
) -> Result<(), WireError> {
    if node == Node::Payload {
        out.push(range);
        return Ok(());
    }
    let walker = Walker::enter(schema, node, buf, &range, depth)?;
    for field in Fields::new(buf, range) {
        let field = field?;
        if let Some(child) = walker.child(&field) {
            collect(schema, child, buf, field.content, depth + 1, out)?;
        }
    }
    Ok(())
}

/// `buf` with each replacement spliced in and every enclosing length prefix updated.
/// `replacements` must be sorted by position and each must be a range returned by
/// [`payload_ranges`] for the same `root` and `buf`.
pub fn splice(
    schema: &Schema,
    root: Node,
    buf: &Bytes,
    replacements: &[Replacement],
) -> Result<Spliced, WireError> {
    let (pieces, len) = splice_slots(schema, root, buf, replacements)?;
    let chunks = pieces
        .into_iter()
        .map(|piece| match piece {
            Piece::Bytes(bytes) => Ok(bytes),
            Piece::Payload(start) => {
                let at = replacements.partition_point(|r| r.range.start < start);
                replacements
                    .get(at)
                    .map(|r| r.bytes.clone())
                    .ok_or(WireError::Truncated)
            }
        })
        .collect::<Result<_, _>>()?;
    Ok(Spliced { chunks, len })
}

/// `buf` spliced around replacements that are not here yet: the pieces in order, each
/// pending payload's place marked, and the length of the whole once they are filled in.
/// Same contract as [`splice`].
pub fn splice_pending(
    schema: &Schema,
    root: Node,
    buf: &Bytes,
    pending: &[Pending],
) -> Result<(Vec<Piece>, usize), WireError> {
    splice_slots(schema, root, buf, pending)
}

fn splice_slots<S: Slot>(
    schema: &Schema,
    root: Node,
    buf: &Bytes,
    slots: &[S],
) -> Result<(Vec<Piece>, usize), WireError> {
    let splicer = Splicer { schema, buf };
    let mut sizes = HashMap::new();
    let total = splicer.size(root, 0..buf.len(), slots, 0, &mut sizes)?;
    let mut out = Writer::new(buf);
    splicer.write(root, 0..buf.len(), slots, &sizes, &mut out)?;
    debug_assert_eq!(out.len, total);
    Ok((out.finish(), total))
}

/// A rewritten message as a sequence of chunks. Runs of the original buffer and the
/// replacement bytes are shared, not copied: a 100 MiB payload put back into a message is
/// never copied on its way to the client. Only new length prefixes are fresh bytes.
#[derive(Debug, Clone, Default)]
pub struct Spliced {
    chunks: Vec<Bytes>,
    len: usize,
}

impl Spliced {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn into_chunks(self) -> Vec<Bytes> {
        self.chunks
    }

    /// The message in one buffer, for what needs it whole (tests, compression).
    pub fn to_vec(&self) -> Vec<u8> {
        self.chunks.concat()
    }
}

/// Builds the pieces of a spliced message, merging adjacent runs of the original buffer
/// into one chunk.
struct Writer<'a> {
    src: &'a Bytes,
    chunks: Vec<Piece>,
    run: Option<Range<usize>>,
    fresh: Vec<u8>,
    len: usize,
}

impl<'a> Writer<'a> {
    fn new(src: &'a Bytes) -> Self {
        Writer {
            src,
            chunks: Vec::new(),
            run: None,
            fresh: Vec::new(),
            len: 0,
        }
    }

    fn copy(&mut self, range: Range<usize>) {
        self.flush_fresh();
        self.len += range.len();
        self.run = match self.run.take() {
            Some(run) if run.end == range.start => Some(run.start..range.end),
            Some(run) => {
                self.chunks.push(Piece::Bytes(self.src.slice(run)));
                Some(range)
            }
            None => Some(range),
        };
    }

    fn slot(&mut self, slot: &impl Slot) {
        self.flush_run();
        self.flush_fresh();
        self.len += slot.len();
        self.chunks.push(Piece::Payload(slot.range().start));
    }

    fn len_header(&mut self, number: u32, len: usize) {
        self.flush_run();
        let before = self.fresh.len();
        wire::put_len_header(&mut self.fresh, number, len);
        self.len += self.fresh.len() - before;
    }

    fn flush_run(&mut self) {
        if let Some(run) = self.run.take() {
            self.chunks.push(Piece::Bytes(self.src.slice(run)));
        }
    }

    fn flush_fresh(&mut self) {
        if !self.fresh.is_empty() {
            self.chunks
                .push(Piece::Bytes(Bytes::from(std::mem::take(&mut self.fresh))));
        }
    }

    fn finish(mut self) -> Vec<Piece> {
        self.flush_run();
        self.flush_fresh();
        self.chunks
    }
}

struct Splicer<'a> {
    schema: &'a Schema,
    buf: &'a Bytes,
}

impl Splicer<'_> {
    /// New size of the content at `range`; records it in `sizes` (keyed by the range start)
    /// for every changed message, so `write` can emit length prefixes in one pass.
    fn size<S: Slot>(
        &self,
        node: Node,
        range: Range<usize>,
        repl: &[S],
        depth: usize,
        sizes: &mut HashMap<usize, usize>,
    ) -> Result<usize, WireError> {
        let inner = within(repl, &range);
        if inner.is_empty() {
            return Ok(range.len());
        }
        if node == Node::Payload {
            return exact(inner, &range).map(Slot::len);
        }
        let walker = Walker::enter(self.schema, node, self.buf, &range, depth)?;
        let mut total = 0;
        for field in Fields::new(self.buf, range.clone()) {
            let field = field?;
            let sub = within(inner, &field.content);
            total += match walker.child(&field) {
                Some(child) if !sub.is_empty() => {
                    let n = self.size(child, field.content.clone(), sub, depth + 1, sizes)?;
                    wire::len_header_size(field.number, n) + n
                }
                _ => field.whole.len(),
            };
        }
        sizes.insert(range.start, total);
        Ok(total)
    }

    fn write<S: Slot>(
        &self,
        node: Node,
        range: Range<usize>,
        repl: &[S],
        sizes: &HashMap<usize, usize>,
        out: &mut Writer<'_>,
    ) -> Result<(), WireError> {
        let inner = within(repl, &range);
        if inner.is_empty() {
            out.copy(range);
            return Ok(());
        }
        if node == Node::Payload {
            out.slot(exact(inner, &range)?);
            return Ok(());
        }
        // `size` already walked this path, so depth was checked there.
        let walker = Walker::enter(self.schema, node, self.buf, &range, 0)?;
        for field in Fields::new(self.buf, range) {
            let field = field?;
            let sub = within(inner, &field.content);
            match walker.child(&field) {
                Some(child) if !sub.is_empty() => {
                    let n = match child {
                        Node::Payload => exact(sub, &field.content)?.len(),
                        _ => *sizes.get(&field.content.start).ok_or(WireError::Truncated)?,
                    };
                    out.len_header(field.number, n);
                    self.write(child, field.content, sub, sizes, out)?;
                }
                _ => out.copy(field.whole),
            }
        }
        Ok(())
    }
}

/// The replacements that fall inside `range` (they are sorted and never straddle a field).
fn within<'r, S: Slot>(repl: &'r [S], range: &Range<usize>) -> &'r [S] {
    let first = repl.partition_point(|r| r.range().start < range.start);
    let rest = &repl[first..];
    // Disjoint and sorted, so ends ascend too; a payload's header always lies inside the
    // field that holds it, so a range ending at `range.end` belongs to this range.
    let count = rest.partition_point(|r| r.range().end <= range.end);
    &rest[..count]
}

fn exact<'r, S: Slot>(repl: &'r [S], range: &Range<usize>) -> Result<&'r S, WireError> {
    match repl {
        [only] if only.range() == range => Ok(only),
        // Callers pass ranges from `payload_ranges`; anything else means the buffer changed.
        _ => Err(WireError::Truncated),
    }
}

/// Resolves the children of one message while it is walked.
struct Walker<'s> {
    schema: &'s Schema,
    node: Node,
    /// For an `Any`: the walkable type named by its `type_url`.
    any_value: Option<Node>,
}

impl<'s> Walker<'s> {
    fn enter(
        schema: &'s Schema,
        node: Node,
        buf: &[u8],
        range: &Range<usize>,
        depth: usize,
    ) -> Result<Self, WireError> {
        if depth > MAX_DEPTH {
            return Err(WireError::TooDeep(MAX_DEPTH));
        }
        let any_value = match node {
            Node::Any => any_type(schema, buf, range)?,
            _ => None,
        };
        Ok(Walker {
            schema,
            node,
            any_value,
        })
    }

    fn child(&self, field: &Field) -> Option<Node> {
        if field.wire_type != WIRE_LEN {
            return None;
        }
        match self.node {
            Node::Message(id) => self.schema.child(id, field.number),
            Node::Any if field.number == ANY_VALUE => self.any_value,
            _ => None,
        }
    }
}

const ANY_TYPE_URL: u32 = 1;
const ANY_VALUE: u32 = 2;

fn any_type(schema: &Schema, buf: &[u8], range: &Range<usize>) -> Result<Option<Node>, WireError> {
    for field in Fields::new(buf, range.clone()) {
        let field = field?;
        if field.number == ANY_TYPE_URL && field.wire_type == WIRE_LEN {
            let url = std::str::from_utf8(&buf[field.content]).unwrap_or_default();
            let name = url.rsplit('/').next().unwrap_or_default();
            return Ok(schema.node(name));
        }
    }
    Ok(None)
}
