//! gRPC frames: the decoder and the body collector, on frames that are well formed,
//! compressed, bombs (small gzip, huge output) and prefixes claiming far more than they bring.

use std::io::Write;
use std::sync::OnceLock;

use bytes::Bytes;
use claimcheck::payload::frame::{self, Collector};

use super::alloc;
use super::mutate::mutate;
use super::rng::Rng;
use super::runner::Target;

const LIMITS: [usize; 3] = [1 << 10, 64 << 10, 1 << 20];

pub struct Frames;

impl Target for Frames {
    fn name(&self) -> &'static str {
        "frame"
    }

    fn case(&self, rng: &mut Rng) -> Result<usize, String> {
        let mut body = body(rng);
        if rng.chance(0.5) {
            mutate(rng, &mut body);
        }
        let limit = *rng.pick(&LIMITS);
        let encoding = *rng.pick(&[None, Some("gzip"), Some("snappy")]);
        let body = Bytes::from(body);
        alloc::start();
        match frame::decode(body.clone(), encoding, limit) {
            Ok(message) if message.len() > limit => {
                return Err(format!(
                    "{} bytes decoded past the limit of {limit}",
                    message.len()
                ));
            }
            Ok(message) if body[0] == 0 && message != body[5..] => {
                return Err("an uncompressed message came out changed".to_owned());
            }
            _ => {}
        }
        collect(rng, &body, limit)?;
        Ok(body.len() + limit)
    }
}

/// A frame of random bytes, a gzip frame, a gzip bomb, or a bare prefix claiming up to 4 GiB.
fn body(rng: &mut Rng) -> Vec<u8> {
    let (flag, message) = match rng.below(4) {
        0 => (0, rng.some_bytes()),
        1 => (1, gzip(&rng.some_bytes())),
        2 => (1, bomb().to_vec()),
        _ => {
            let mut prefix = vec![rng.below(2) as u8];
            prefix.extend(rng.pick(&[u32::MAX, 1 << 30, 1 << 20, 100]).to_be_bytes());
            return [prefix, rng.some_bytes()].concat();
        }
    };
    let mut framed = vec![flag];
    framed.extend((message.len() as u32).to_be_bytes());
    framed.extend(message);
    framed
}

/// 8 MiB of zeros in a few KiB, built once.
fn bomb() -> &'static [u8] {
    static BOMB: OnceLock<Vec<u8>> = OnceLock::new();
    BOMB.get_or_init(|| gzip(&vec![0; 8 << 20]))
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder
        .write_all(data)
        .and_then(|()| encoder.finish())
        .unwrap_or_default()
}

/// The body in random chunks, never paid for: the collector holds what arrived, or refuses.
fn collect(rng: &mut Rng, body: &Bytes, limit: usize) -> Result<(), String> {
    let mut collector = Collector::default();
    let mut at = 0;
    while at < body.len() {
        let end = (at + 1 + rng.len()).min(body.len());
        if collector.push(body.slice(at..end), limit).is_err() {
            return Ok(());
        }
        at = end;
    }
    match collector.finish() == *body {
        true => Ok(()),
        false => Err("the collector changed the body".to_owned()),
    }
}
