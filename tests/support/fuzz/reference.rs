//! External Storage references and their claims, as each SDK writes them, then mutated.
//! A reference that reads must encode and read back the same; no bytes may panic the reader
//! or a driver's reading of the claim.

use std::collections::BTreeMap;

use claimcheck::driver::Driver;
use claimcheck::payload::reference::Reference;

use super::alloc;
use super::mutate::mutate;
use super::rng::Rng;
use super::runner::Target;

const CLAIM_KEYS: [&str; 8] = [
    "hash_algorithm",
    "hash_value",
    "hashAlgorithm",
    "hashValue",
    "key",
    "object_name",
    "object",
    "bucket",
];

/// A reference with claims in any SDK's spelling.
pub fn generate(rng: &mut Rng) -> Reference {
    let claim: BTreeMap<String, String> = (0..rng.below(6))
        .map(|_| {
            let key = match rng.chance(0.9) {
                true => rng.pick(&CLAIM_KEYS).to_string(),
                false => rng.some_text(),
            };
            let value = match rng.below(3) {
                0 => "sha256".to_owned(),
                1 => format!("v0/ns/default/d/sha256/{}", hex::encode(rng.bytes(32))),
                _ => rng.some_text(),
            };
            (key, value)
        })
        .collect();
    Reference {
        driver_name: rng.pick(&["claimcheck", "aws.s3driver", "gcs", ""]).to_string(),
        claim,
        size_bytes: None,
    }
}

pub struct References {
    drivers: Vec<Driver>,
}

impl References {
    pub fn new() -> Self {
        let open = |url: &str| Driver::open(url, "", &Default::default()).expect("driver");
        References {
            drivers: vec![open("memory://"), open("s3://bucket/"), open("gs://bucket/")],
        }
    }
}

impl Target for References {
    fn name(&self) -> &'static str {
        "reference"
    }

    fn case(&self, rng: &mut Rng) -> Result<usize, String> {
        let reference = generate(rng);
        let size = rng.any_size();
        let mut payload = match rng.chance(0.8) {
            true => reference.to_payload(size).map_err(|e| e.to_string())?,
            false => legacy(&reference),
        };
        let mutated = rng.chance(0.7);
        if mutated {
            mutate(rng, &mut payload);
        }
        alloc::start();
        let read = match Reference::from_payload(&payload) {
            Ok(Some(read)) => read,
            Ok(None) | Err(_) if mutated => return Ok(payload.len()),
            other => return Err(format!("a written reference did not read back: {other:?}")),
        };
        if !mutated && read.claim != reference.claim {
            return Err("the claim changed on the way".to_owned());
        }
        let _ = read.sha256();
        for driver in &self.drivers {
            if driver.owns(&read) {
                let _ = driver.key_of(&read);
            }
        }
        let again = read
            .to_payload(read.size_bytes.unwrap_or(0))
            .map_err(|e| e.to_string())?;
        match Reference::from_payload(&again) {
            Ok(Some(back)) if back.claim == read.claim && back.driver_name == read.driver_name => {
                Ok(payload.len())
            }
            other => Err(format!(
                "a reference that read did not read back once written: {other:?}"
            )),
        }
    }
}

/// The legacy `json/external-storage-reference` payload of Go SDK 1.42.
fn legacy(reference: &Reference) -> Vec<u8> {
    let data = serde_json::json!({
        "driver_name": reference.driver_name,
        "driver_claim": {"claim_data": reference.claim},
    })
    .to_string();
    let entry = [
        &[0x0a, 8][..],
        b"encoding",
        &[0x12, 31],
        b"json/external-storage-reference",
    ]
    .concat();
    let mut out = vec![0x0a, entry.len() as u8];
    out.extend(entry);
    out.push(0x12);
    claimcheck::payload::wire::put_varint(&mut out, data.len() as u64);
    out.extend(data.as_bytes());
    out
}
