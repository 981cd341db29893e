//! The wire walker and the rewriter, on every proxied request and response type: messages as
//! an SDK encodes them, then mutated.
//!
//! On a well-formed message the walker must find exactly the payloads a protobuf decoder
//! finds, and splicing new payloads in and the old ones back must give the message back
//! byte for byte. On any message it walks, the payloads spliced in must be the ones found
//! again.

use std::ops::Range;

use bytes::Bytes;
use claimcheck::payload::rewrite::{self, Replacement};
use claimcheck::payload::schema::Node;
use prost::Message;
use prost_reflect::{DynamicMessage, MessageDescriptor, ReflectMessage};
use temporalio_protos::temporal::api::common::v1::Payload;

use super::alloc;
use super::messages::Temporal;
use super::mutate::mutate;
use super::rng::Rng;
use super::runner::Target;

pub struct Rewrite(pub Temporal);

impl Target for Rewrite {
    fn name(&self) -> &'static str {
        "rewrite"
    }

    fn case(&self, rng: &mut Rng) -> Result<usize, String> {
        let temporal = &self.0;
        let (descriptor, root, message) = temporal.message(rng);
        let mut buf = message.encode_to_vec();
        let mutated = rng.chance(0.5);
        if mutated {
            mutate(rng, &mut buf);
        }
        let buf = Bytes::from(buf);
        let replacements: Vec<Bytes> = (0..64).map(|_| Bytes::from(temporal.payload(rng))).collect();
        alloc::start();
        let ranges = match rewrite::payload_ranges(&temporal.schema, root, &buf) {
            Ok(ranges) => ranges,
            Err(_) if mutated => return Ok(buf.len()),
            Err(e) => {
                return Err(format!(
                    "{}: an encoded message was refused: {e}",
                    descriptor.full_name()
                ));
            }
        };
        check_ranges(&ranges, buf.len())?;
        if !mutated {
            same_payloads(temporal, &message, &buf, &ranges)?;
        }
        let new: Vec<Replacement> = ranges
            .iter()
            .zip(replacements.iter().cycle())
            .map(|(range, bytes)| Replacement {
                range: range.clone(),
                bytes: bytes.clone(),
            })
            .collect();
        let spliced = splice_found(temporal, root, &buf, &new)?;
        if !mutated {
            round_trip(temporal, &descriptor, root, &buf, &ranges, &spliced)?;
        }
        Ok(buf.len() + replacements.iter().map(Bytes::len).sum::<usize>())
    }
}

fn check_ranges(ranges: &[Range<usize>], len: usize) -> Result<(), String> {
    let ordered = ranges.windows(2).all(|pair| pair[0].end <= pair[1].start);
    match ordered && ranges.iter().all(|r| r.start <= r.end && r.end <= len) {
        true => Ok(()),
        false => Err(format!("payload ranges overlap or leave the buffer: {ranges:?}")),
    }
}

/// The walker and a protobuf decoder agree on the payloads of a well-formed message.
fn same_payloads(
    temporal: &Temporal,
    message: &DynamicMessage,
    buf: &[u8],
    ranges: &[Range<usize>],
) -> Result<(), String> {
    let mut decoded = Vec::new();
    temporal.payloads(message, &mut decoded);
    let expected: Vec<Payload> = decoded
        .iter()
        .map(|m| m.transcode_to().map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let mut found: Vec<Payload> = ranges
        .iter()
        .map(|r| Payload::decode(&buf[r.clone()]).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    // Map entries have no order: match each expected payload with one found.
    for want in &expected {
        let Some(at) = found.iter().position(|have| have == want) else {
            return Err(format!(
                "{}: the walker missed payload {want:?}; it found {found:?}",
                message.descriptor().full_name()
            ));
        };
        found.swap_remove(at);
    }
    match found.is_empty() {
        true => Ok(()),
        false => Err(format!(
            "the walker found {} payloads a decoder does not",
            found.len()
        )),
    }
}

/// Splices `new` in; walking the result finds exactly the bytes spliced in.
fn splice_found(temporal: &Temporal, root: Node, buf: &Bytes, new: &[Replacement]) -> Result<Bytes, String> {
    let spliced = rewrite::splice(&temporal.schema, root, buf, new)
        .map_err(|e| format!("splice refused its own ranges: {e}"))?;
    let spliced = Bytes::from(spliced.to_vec());
    let again = rewrite::payload_ranges(&temporal.schema, root, &spliced)
        .map_err(|e| format!("a spliced message does not walk: {e}"))?;
    let found: Vec<&[u8]> = again.iter().map(|r| &spliced[r.clone()]).collect();
    let wanted: Vec<&[u8]> = new.iter().map(|r| &r.bytes[..]).collect();
    match found == wanted {
        true => Ok(spliced),
        false => Err(format!(
            "spliced {} payloads, found {} others",
            wanted.len(),
            found.len()
        )),
    }
}

/// The spliced message decodes, and the old payloads spliced back give the original bytes.
fn round_trip(
    temporal: &Temporal,
    descriptor: &MessageDescriptor,
    root: Node,
    original: &Bytes,
    ranges: &[Range<usize>],
    spliced: &Bytes,
) -> Result<(), String> {
    DynamicMessage::decode(descriptor.clone(), &spliced[..])
        .map_err(|e| format!("a spliced message does not decode: {e}"))?;
    let at = rewrite::payload_ranges(&temporal.schema, root, spliced).map_err(|e| e.to_string())?;
    let old: Vec<Replacement> = at
        .into_iter()
        .zip(ranges)
        .map(|(range, was)| Replacement {
            range,
            bytes: original.slice(was.clone()),
        })
        .collect();
    let back = rewrite::splice(&temporal.schema, root, spliced, &old).map_err(|e| e.to_string())?;
    match back.to_vec() == original[..] {
        true => Ok(()),
        false => Err("the original payloads spliced back did not give the original message".to_owned()),
    }
}
