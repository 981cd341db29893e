//! Byte mutations of a well-formed input, as a broken or hostile peer would send it.

use super::rng::Rng;

/// Lengths a peer might claim in a prefix or a varint: around the 32- and 64-bit edges.
const HUGE_VARINTS: [&[u8]; 4] = [
    &[0xff, 0xff, 0xff, 0xff, 0x0f],
    &[0x80, 0x80, 0x80, 0x80, 0x10],
    &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
    &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
];

/// Applies one to four mutations to `data`.
pub fn mutate(rng: &mut Rng, data: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        once(rng, data);
    }
}

fn once(rng: &mut Rng, data: &mut Vec<u8>) {
    let at = rng.below(data.len() + 1);
    let span = rng.len().min(data.len() - at);
    match rng.below(8) {
        0 if at < data.len() => data[at] ^= 1 << rng.below(8),
        1 if at < data.len() => data[at] = *rng.pick(&[0x00, 0x7f, 0x80, 0xff, 0x0a, 0x12]),
        2 => {
            let inserted = rng.some_bytes();
            data.splice(at..at, inserted);
        }
        3 => {
            data.drain(at..at + span);
        }
        4 => {
            let copy = data[at..at + span].to_vec();
            let to = rng.below(data.len() + 1);
            data.splice(to..to, copy);
        }
        5 => data.truncate(at),
        6 => {
            let varint = rng.pick(&HUGE_VARINTS).to_vec();
            let end = (at + varint.len()).min(data.len());
            data.splice(at..end, varint);
        }
        _ => {
            let end = (at + 4).min(data.len());
            data.splice(at..end, u32::MAX.to_be_bytes());
        }
    }
}
