//! The codec protocol's body: proto3 JSON of `temporal.api.common.v1.Payloads`.
//!
//! Read leniently, because the two clients differ (docs/codec-server.md §2): the Web UI sends
//! protojson (`externalPayloads`, `sizeBytes` as a string), the CLI Go's `encoding/json`
//! (`external_payloads`, `size_bytes` as a number, empty fields left out). Written strictly
//! as protojson with only the three known fields, because the CLI rejects unknown ones.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use prost::Message as _;
use serde::Deserialize;
use temporalio_protos::temporal::api::common::v1::Payload;
use temporalio_protos::temporal::api::common::v1::payload::ExternalPayloadDetails;

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Where, not what: serde's message would quote the payload's bytes.
    #[error("the body is not a JSON Payloads object (line {line}, column {column})")]
    Json { line: usize, column: usize },
    #[error("the body holds {0} payloads, over the limit of {MAX_PAYLOADS}")]
    TooMany(usize),
    #[error("payload {index}: {field} is not base64: {source}")]
    Base64 {
        index: usize,
        field: String,
        source: base64::DecodeError,
    },
    #[error("payload {index}: sizeBytes is not an unsigned integer")]
    Size { index: usize },
}

/// More than any history page holds; each costs a little memory even when empty.
const MAX_PAYLOADS: usize = 10_000;

#[derive(Deserialize)]
struct Payloads<'a> {
    #[serde(default, borrow)]
    payloads: Vec<JsonPayload<'a>>,
}

#[derive(Deserialize)]
struct JsonPayload<'a> {
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    // Borrowed unless the sender escaped a character (`\/`, say).
    #[serde(default, borrow)]
    data: Cow<'a, str>,
    #[serde(default, rename = "externalPayloads", alias = "external_payloads")]
    external_payloads: Vec<JsonDetails>,
}

#[derive(Deserialize)]
struct JsonDetails {
    #[serde(default, rename = "sizeBytes", alias = "size_bytes")]
    size_bytes: Option<serde_json::Value>,
}

/// Each payload of the body, serialized as protobuf: the form the payload path works on.
pub fn parse(body: &[u8]) -> Result<Vec<Bytes>, BodyError> {
    let parsed: Payloads = serde_json::from_slice(body).map_err(|e| BodyError::Json {
        line: e.line(),
        column: e.column(),
    })?;
    if parsed.payloads.len() > MAX_PAYLOADS {
        return Err(BodyError::TooMany(parsed.payloads.len()));
    }
    parsed
        .payloads
        .into_iter()
        .enumerate()
        .map(|(index, p)| to_protobuf(index, p))
        .collect()
}

fn to_protobuf(index: usize, json: JsonPayload) -> Result<Bytes, BodyError> {
    let decode = |field: &str, text: &str| {
        STANDARD.decode(text).map_err(|source| BodyError::Base64 {
            index,
            field: field.to_owned(),
            source,
        })
    };
    let mut metadata = HashMap::with_capacity(json.metadata.len());
    for (key, value) in json.metadata {
        let bytes = decode(&format!("metadata.{key}"), &value)?;
        metadata.insert(key, bytes);
    }
    let external_payloads = json
        .external_payloads
        .iter()
        .map(|d| {
            size_of(index, d.size_bytes.as_ref()).map(|size_bytes| ExternalPayloadDetails { size_bytes })
        })
        .collect::<Result<_, _>>()?;
    let payload = Payload {
        metadata,
        data: decode("data", &json.data)?,
        external_payloads,
    };
    Ok(Bytes::from(payload.encode_to_vec()))
}

/// protojson writes int64 as a string; Go's encoding/json as a number.
fn size_of(index: usize, value: Option<&serde_json::Value>) -> Result<i64, BodyError> {
    let refused = || BodyError::Size { index };
    match value {
        None => Ok(0),
        Some(serde_json::Value::Number(n)) => n.as_i64().filter(|n| *n >= 0).ok_or_else(refused),
        Some(serde_json::Value::String(s)) => s.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(refused),
        Some(_) => Err(refused()),
    }
}

/// A piece of an answer: JSON text, or a payload's data, base64-encoded only as it is sent.
pub enum Piece {
    Text(Bytes),
    Data(Bytes),
}

/// Data is encoded this many bytes at a time: a multiple of 3, so the pieces join into one
/// base64 string with no padding inside.
const DATA_PIECE: usize = 48 * 1024;

/// The answer body, `{"payloads":[...]}` in protojson, in pieces.
pub fn render(payloads: &[Bytes]) -> Result<Vec<Piece>, prost::DecodeError> {
    let mut pieces = Vec::with_capacity(payloads.len() * 2 + 1);
    let mut head = String::from("{\"payloads\":[");
    for (i, serialized) in payloads.iter().enumerate() {
        let payload = Payload::decode(serialized.clone())?;
        if i > 0 {
            head.push(',');
        }
        head.push_str("{\"metadata\":{");
        let mut keys: Vec<&String> = payload.metadata.keys().collect();
        keys.sort();
        for (j, key) in keys.into_iter().enumerate() {
            if j > 0 {
                head.push(',');
            }
            head.push_str(&json_string(key));
            head.push_str(":\"");
            STANDARD.encode_string(&payload.metadata[key], &mut head);
            head.push('"');
        }
        head.push_str("},\"data\":\"");
        pieces.push(Piece::Text(Bytes::from(std::mem::take(&mut head))));
        pieces.push(Piece::Data(Bytes::from(payload.data)));
        head.push('"');
        if !payload.external_payloads.is_empty() {
            let sizes: Vec<String> = payload
                .external_payloads
                .iter()
                .map(|d| format!("{{\"sizeBytes\":\"{}\"}}", d.size_bytes))
                .collect();
            head.push_str(&format!(",\"externalPayloads\":[{}]", sizes.join(",")));
        }
        head.push('}');
    }
    head.push_str("]}");
    pieces.push(Piece::Text(Bytes::from(head)));
    Ok(pieces)
}

/// The bytes of an answer, encoding each payload's data piece by piece as it is sent.
pub fn chunks(pieces: Vec<Piece>) -> impl Iterator<Item = Bytes> + Send {
    pieces.into_iter().flat_map(|piece| {
        let (text, data) = match piece {
            Piece::Text(text) => (Some(text), Bytes::new()),
            Piece::Data(data) => (None, data),
        };
        let encoded = (0..data.len())
            .step_by(DATA_PIECE)
            .map(move |at| Bytes::from(STANDARD.encode(&data[at..data.len().min(at + DATA_PIECE)])));
        text.into_iter().chain(encoded)
    })
}

fn json_string(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(pieces: Vec<Piece>) -> serde_json::Value {
        serde_json::from_slice(&chunks(pieces).collect::<Vec<_>>().concat()).unwrap()
    }

    #[test]
    fn reads_the_ui_spelling_and_writes_it_back() {
        let ui = br#"{"payloads":[{"metadata":{"encoding":"anNvbi9wbGFpbg=="},"data":"eyJhIjoxfQ==",
            "externalPayloads":[{"sizeBytes":"2097152"}]}]}"#;
        let parsed = parse(ui).unwrap();
        let payload = Payload::decode(parsed[0].clone()).unwrap();
        assert_eq!(payload.metadata["encoding"], b"json/plain");
        assert_eq!(payload.data, br#"{"a":1}"#);
        assert_eq!(payload.external_payloads[0].size_bytes, 2_097_152);
        let back = joined(render(&parsed).unwrap());
        let original: serde_json::Value = serde_json::from_slice(ui).unwrap();
        assert_eq!(back, original);
    }

    #[test]
    fn large_data_is_encoded_in_pieces_that_join_into_one_base64_string() {
        let data: Vec<u8> = (0..DATA_PIECE * 3 + 7).map(|i| (i % 251) as u8).collect();
        let payload = Payload {
            data: data.clone(),
            ..Payload::default()
        };
        let pieces = chunks(render(&[Bytes::from(payload.encode_to_vec())]).unwrap()).count();
        assert!(pieces >= 4, "{pieces} pieces");
        let back = joined(render(&[Bytes::from(payload.encode_to_vec())]).unwrap());
        assert_eq!(
            STANDARD
                .decode(back["payloads"][0]["data"].as_str().unwrap())
                .unwrap(),
            data
        );
    }

    #[test]
    fn reads_the_cli_spelling() {
        let cli = br#"{"payloads":[{"metadata":{"encoding":"YmluYXJ5L251bGw="},
            "external_payloads":[{"size_bytes":42}]},{}]}"#;
        let parsed = parse(cli).unwrap();
        assert_eq!(parsed.len(), 2);
        let first = Payload::decode(parsed[0].clone()).unwrap();
        assert_eq!((first.data.len(), first.external_payloads[0].size_bytes), (0, 42));
        assert_eq!(Payload::decode(parsed[1].clone()).unwrap(), Payload::default());
    }

    #[test]
    fn bad_bodies_are_refused_with_what_is_wrong() {
        let cases: [(&[u8], &str); 4] = [
            (
                br#"{"payloads":"c2VjcmV0"}"#,
                "not a JSON Payloads object (line 1",
            ),
            (
                br#"{"payloads":[{"data":"***"}]}"#,
                "payload 0: data is not base64",
            ),
            (
                br#"{"payloads":[{"metadata":{"k":"%"}}]}"#,
                "metadata.k is not base64",
            ),
            (
                br#"{"payloads":[{"externalPayloads":[{"sizeBytes":"-1"}]}]}"#,
                "sizeBytes",
            ),
        ];
        for (body, expected) in cases {
            let error = parse(body).err().unwrap().to_string();
            assert!(error.contains(expected), "{error}");
            assert!(!error.contains("c2VjcmV0"), "a payload's bytes in {error}");
        }
    }
}
