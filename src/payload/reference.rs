//! The reference that replaces an offloaded payload, written exactly as the Temporal SDKs'
//! External Storage writes it (design §3), so an SDK with the matching driver can read
//! what the proxy offloaded and the other way round.
//!
//! A reference is a `temporal.api.common.v1.Payload` whose metadata says
//! `encoding: json/protobuf`, `messageType: temporal.api.sdk.v1.ExternalStorageReference`,
//! whose data is the proto-JSON of that message, and whose `external_payloads` holds the
//! size of the original serialized payload (the server sums it into
//! `external_payload_size_bytes`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::payload::wire::{self, Fields, WIRE_LEN, WIRE_VARINT};

const ENCODING_KEY: &str = "encoding";
const MESSAGE_TYPE_KEY: &str = "messageType";
const JSON_PROTOBUF: &[u8] = b"json/protobuf";
const REFERENCE_TYPE: &[u8] = b"temporal.api.sdk.v1.ExternalStorageReference";
/// Written by SDK releases before the `ExternalStorageReference` message; still read.
const LEGACY_ENCODING: &[u8] = b"json/external-storage-reference";

const PAYLOAD_METADATA: u32 = 1;
const PAYLOAD_DATA: u32 = 2;
const PAYLOAD_EXTERNAL: u32 = 3;
const ENTRY_KEY: u32 = 1;
const ENTRY_VALUE: u32 = 2;
const EXTERNAL_SIZE: u32 = 1;

/// Claim keys shared by every driver.
pub const CLAIM_HASH_ALGORITHM: &str = "hash_algorithm";
pub const CLAIM_HASH_VALUE: &str = "hash_value";
pub const SHA256: &str = "sha256";
/// The TypeScript SDK's spelling of the same claims.
const CLAIM_HASH_ALGORITHM_CAMEL: &str = "hashAlgorithm";
const CLAIM_HASH_VALUE_CAMEL: &str = "hashValue";

/// A decoded reference: which driver stored the payload and how to find it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    #[serde(rename = "driverName", alias = "driver_name")]
    pub driver_name: String,
    #[serde(rename = "claimData", alias = "claim_data", default)]
    pub claim: BTreeMap<String, String>,
    /// Serialized size of the original payload, from `external_payloads`.
    #[serde(skip)]
    pub size_bytes: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("malformed payload: {0}")]
    Wire(#[from] wire::WireError),
    #[error("malformed external storage reference: {0}")]
    Json(#[from] serde_json::Error),
}

/// The SDK's legacy body: `{driver_name, driver_claim: {claim_data}}`.
#[derive(Deserialize)]
struct LegacyReference {
    driver_name: String,
    driver_claim: LegacyClaim,
}

#[derive(Deserialize)]
struct LegacyClaim {
    #[serde(default)]
    claim_data: BTreeMap<String, String>,
}

impl Reference {
    /// Encodes the reference payload for an original payload of `size_bytes` bytes.
    /// Deterministic: metadata entries are written in a fixed order.
    pub fn to_payload(&self, size_bytes: u64) -> Result<Vec<u8>, serde_json::Error> {
        let data = serde_json::to_vec(self)?;
        let mut out = Vec::with_capacity(data.len() + 128);
        put_metadata_entry(&mut out, ENCODING_KEY, JSON_PROTOBUF);
        put_metadata_entry(&mut out, MESSAGE_TYPE_KEY, REFERENCE_TYPE);
        wire::put_len_header(&mut out, PAYLOAD_DATA, data.len());
        out.extend_from_slice(&data);
        let mut details = Vec::with_capacity(11);
        wire::put_varint(&mut details, u64::from(EXTERNAL_SIZE) << 3);
        wire::put_varint(&mut details, size_bytes);
        wire::put_len_header(&mut out, PAYLOAD_EXTERNAL, details.len());
        out.extend_from_slice(&details);
        Ok(out)
    }

    /// The claim's SHA-256, lower-cased, if it carries one, in either SDK spelling.
    pub fn sha256(&self) -> Option<String> {
        let claim = |names: [&str; 2]| names.iter().find_map(|name| self.claim.get(*name));
        let algorithm = claim([CLAIM_HASH_ALGORITHM, CLAIM_HASH_ALGORITHM_CAMEL])?;
        let value = claim([CLAIM_HASH_VALUE, CLAIM_HASH_VALUE_CAMEL])?;
        (algorithm.eq_ignore_ascii_case(SHA256)).then(|| value.to_ascii_lowercase())
    }

    /// Reads the reference held by a serialized `Payload`, or `None` if it is an ordinary payload.
    pub fn from_payload(payload: &[u8]) -> Result<Option<Reference>, ReferenceError> {
        let mut encoding: Option<&[u8]> = None;
        let mut message_type: Option<&[u8]> = None;
        let mut data: &[u8] = &[];
        let mut size_bytes = None;
        for field in Fields::new(payload, 0..payload.len()) {
            let field = field?;
            match (field.number, field.wire_type) {
                (PAYLOAD_METADATA, WIRE_LEN) => {
                    let (key, value) = metadata_entry(&payload[field.content])?;
                    match key {
                        ENCODING_KEY => encoding = Some(value),
                        MESSAGE_TYPE_KEY => message_type = Some(value),
                        _ => {}
                    }
                }
                (PAYLOAD_DATA, WIRE_LEN) => data = &payload[field.content],
                (PAYLOAD_EXTERNAL, WIRE_LEN) if size_bytes.is_none() => {
                    size_bytes = external_size(&payload[field.content])?;
                }
                _ => {}
            }
        }
        let reference = match (encoding, message_type) {
            (Some(JSON_PROTOBUF), Some(REFERENCE_TYPE)) => serde_json::from_slice::<Reference>(data)?,
            (Some(LEGACY_ENCODING), _) => {
                let legacy: LegacyReference = serde_json::from_slice(data)?;
                Reference {
                    driver_name: legacy.driver_name,
                    claim: legacy.driver_claim.claim_data,
                    size_bytes: None,
                }
            }
            _ => return Ok(None),
        };
        Ok(Some(Reference {
            size_bytes,
            ..reference
        }))
    }
}

fn put_metadata_entry(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    let entry_len = wire::len_header_size(ENTRY_KEY, key.len())
        + key.len()
        + wire::len_header_size(ENTRY_VALUE, value.len())
        + value.len();
    wire::put_len_header(out, PAYLOAD_METADATA, entry_len);
    wire::put_len_header(out, ENTRY_KEY, key.len());
    out.extend_from_slice(key.as_bytes());
    wire::put_len_header(out, ENTRY_VALUE, value.len());
    out.extend_from_slice(value);
}

/// Key and value of a `map<string, bytes>` entry; non-UTF-8 keys read as empty.
fn metadata_entry(entry: &[u8]) -> Result<(&str, &[u8]), wire::WireError> {
    let (mut key, mut value): (&[u8], &[u8]) = (&[], &[]);
    for field in Fields::new(entry, 0..entry.len()) {
        let field = field?;
        match (field.number, field.wire_type) {
            (ENTRY_KEY, WIRE_LEN) => key = &entry[field.content],
            (ENTRY_VALUE, WIRE_LEN) => value = &entry[field.content],
            _ => {}
        }
    }
    Ok((std::str::from_utf8(key).unwrap_or_default(), value))
}

fn external_size(details: &[u8]) -> Result<Option<u64>, wire::WireError> {
    for field in Fields::new(details, 0..details.len()) {
        let field = field?;
        if field.number == EXTERNAL_SIZE && field.wire_type == WIRE_VARINT {
            return Ok(Some(wire::read_varint(details, field.content.start)?.0));
        }
    }
    Ok(None)
}

/// Where an offloaded payload belongs in Temporal's key layout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    pub namespace: String,
    /// Workflow type, id and run id, when the proxy can tell which run the payload is for.
    pub workflow: Option<WorkflowRun>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkflowRun {
    pub workflow_type: String,
    pub workflow_id: String,
    pub run_id: String,
}

/// S3's limit on key length; longer run-scoped keys fall back to the namespace layout.
const MAX_KEY_BYTES: usize = 1024;

/// The object key, as the SDK drivers lay it out under `prefix`:
/// `{prefix}v0/ns/{ns}/wt/{type}/wi/{id}/ri/{run}/d/sha256/{hex}`, or
/// `{prefix}v0/ns/{ns}/d/sha256/{hex}` when the run is unknown or the key is too long.
pub fn object_key(prefix: &str, target: &Target, sha256_hex: &str) -> String {
    let scope = namespace_scope(prefix, &target.namespace);
    if let Some(run) = &target.workflow {
        let key = format!(
            "{scope}wt/{}/wi/{}/ri/{}/d/{SHA256}/{sha256_hex}",
            segment(&run.workflow_type),
            segment(&run.workflow_id),
            segment(&run.run_id)
        );
        if key.len() <= MAX_KEY_BYTES {
            return key;
        }
    }
    format!("{scope}d/{SHA256}/{sha256_hex}")
}

/// The key prefix every object of `namespace` lives under.
pub fn namespace_scope(prefix: &str, namespace: &str) -> String {
    format!("{prefix}v0/ns/{}/", segment(namespace))
}

/// The key the SDKs write when they store a payload for no namespace (a Nexus result, a codec
/// server's `/encode`): `{prefix}v0/d/sha256/{hex}`.
pub fn unscoped_key(prefix: &str, sha256_hex: &str) -> String {
    format!("{prefix}v0/d/{SHA256}/{sha256_hex}")
}

/// The key prefix holding one folder per workflow type, each holding run-scoped objects.
pub fn workflow_types_scope(prefix: &str, namespace: &str) -> String {
    format!("{}wt/", namespace_scope(prefix, namespace))
}

/// The key prefix of one workflow's objects under a folder of [`workflow_types_scope`]: all
/// its runs', or, given a run id, that run's alone.
pub fn workflow_scope(type_folder: &str, workflow_id: &str, run_id: Option<&str>) -> String {
    let workflow = format!("{type_folder}wi/{}/", segment(workflow_id));
    match run_id {
        Some(run) => format!("{workflow}ri/{}/", segment(run)),
        None => workflow,
    }
}

/// Percent-encodes a key segment outside S3's safe set, as the SDK drivers do;
/// an empty value is the literal `null`.
fn segment(value: &str) -> String {
    if value.is_empty() {
        return "null".to_owned();
    }
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"!-_.*'()".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use temporalio_protos::temporal::api::common::v1::Payload;

    fn reference() -> Reference {
        Reference {
            driver_name: "aws.s3driver".into(),
            claim: BTreeMap::from([
                ("bucket".into(), "b".into()),
                ("key".into(), "v0/ns/default/d/sha256/ab".into()),
                (CLAIM_HASH_ALGORITHM.into(), SHA256.into()),
                (CLAIM_HASH_VALUE.into(), "ab".into()),
            ]),
            size_bytes: None,
        }
    }

    #[test]
    fn reference_payload_decodes_as_a_temporal_payload() {
        let bytes = reference().to_payload(3_145_728).unwrap();
        let payload = Payload::decode(bytes.as_slice()).unwrap();
        assert_eq!(payload.metadata["encoding"], b"json/protobuf");
        assert_eq!(payload.metadata["messageType"], REFERENCE_TYPE);
        assert_eq!(payload.external_payloads[0].size_bytes, 3_145_728);
        let json: serde_json::Value = serde_json::from_slice(&payload.data).unwrap();
        assert_eq!(json["driverName"], "aws.s3driver");
        assert_eq!(json["claimData"]["hash_algorithm"], "sha256");
    }

    #[test]
    fn reference_round_trips() {
        let bytes = reference().to_payload(42).unwrap();
        let parsed = Reference::from_payload(&bytes).unwrap().unwrap();
        assert_eq!(
            parsed,
            Reference {
                size_bytes: Some(42),
                ..reference()
            }
        );
    }

    #[test]
    fn reads_the_sdk_json_spelling_and_the_legacy_encoding() {
        // The Python SDK writes MessageToJson output: camelCase names, indented.
        let sdk = Payload {
            metadata: [
                ("encoding".to_owned(), b"json/protobuf".to_vec()),
                ("messageType".to_owned(), REFERENCE_TYPE.to_vec()),
            ]
            .into(),
            data: b"{\n  \"driverName\": \"aws.s3driver\",\n  \"claimData\": {\"key\": \"k\"}\n}".to_vec(),
            external_payloads: vec![],
        };
        let parsed = Reference::from_payload(&sdk.encode_to_vec()).unwrap().unwrap();
        assert_eq!(parsed.claim["key"], "k");
        let legacy = Payload {
            metadata: [("encoding".to_owned(), LEGACY_ENCODING.to_vec())].into(),
            data: br#"{"driver_name": "s3", "driver_claim": {"claim_data": {"key": "k2"}}}"#.to_vec(),
            external_payloads: vec![],
        };
        let parsed = Reference::from_payload(&legacy.encode_to_vec()).unwrap().unwrap();
        assert_eq!(
            (parsed.driver_name.as_str(), parsed.claim["key"].as_str()),
            ("s3", "k2")
        );
    }

    #[test]
    fn the_hash_claim_is_read_in_every_sdk_spelling() {
        let with = |pairs: [(&str, &str); 2]| Reference {
            claim: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..reference()
        };
        // Python, Go and Java write snake_case; TypeScript writes camelCase.
        let snake = with([("hash_algorithm", "sha256"), ("hash_value", "AB")]);
        let camel = with([("hashAlgorithm", "sha256"), ("hashValue", "ab")]);
        assert_eq!(snake.sha256().as_deref(), Some("ab"));
        assert_eq!(camel.sha256().as_deref(), Some("ab"));
        let other = with([("hash_algorithm", "md5"), ("hash_value", "ab")]);
        assert_eq!(other.sha256(), None, "only SHA-256 is verifiable");
        let missing = with([("hash_algorithm", "sha256"), ("key", "k")]);
        assert_eq!(missing.sha256(), None);
    }

    #[test]
    fn ordinary_payloads_are_not_references() {
        let plain = Payload {
            metadata: [("encoding".to_owned(), b"json/plain".to_vec())].into(),
            data: b"{}".to_vec(),
            external_payloads: vec![],
        };
        assert_eq!(Reference::from_payload(&plain.encode_to_vec()).unwrap(), None);
    }

    #[test]
    fn keys_follow_the_sdk_layout() {
        let run = WorkflowRun {
            workflow_type: "Order Flow".into(),
            workflow_id: "id/1".into(),
            run_id: String::new(),
        };
        let target = Target {
            namespace: "billing".into(),
            workflow: Some(run),
        };
        assert_eq!(
            object_key("p/", &target, "ab"),
            "p/v0/ns/billing/wt/Order%20Flow/wi/id%2F1/ri/null/d/sha256/ab"
        );
        let long = Target {
            workflow: Some(WorkflowRun {
                workflow_id: "x".repeat(2000),
                ..Default::default()
            }),
            ..target
        };
        assert_eq!(object_key("", &long, "ab"), "v0/ns/billing/d/sha256/ab");
    }

    #[test]
    fn a_workflow_scope_contains_the_keys_of_its_runs() {
        let run = WorkflowRun {
            workflow_type: "Order Flow".into(),
            workflow_id: "id/1".into(),
            run_id: "r1".into(),
        };
        let target = Target {
            namespace: "billing".into(),
            workflow: Some(run),
        };
        let key = object_key("p/", &target, "ab");
        let types = workflow_types_scope("p/", "billing");
        let type_folder = format!("{types}Order%20Flow/");
        assert!(
            key.starts_with(&workflow_scope(&type_folder, "id/1", None)),
            "{key}"
        );
        assert!(
            key.starts_with(&workflow_scope(&type_folder, "id/1", Some("r1"))),
            "{key}"
        );
        assert!(
            !key.starts_with(&workflow_scope(&type_folder, "id/1", Some("r2"))),
            "{key}"
        );
        assert!(
            !key.starts_with(&workflow_scope(&type_folder, "id", None)),
            "{key}"
        );
    }
}
