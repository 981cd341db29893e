//! A small seeded generator (SplitMix64): a failing case is replayed from its seed alone.

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// 0..n (0 when n is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    pub fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// A length that is mostly small, sometimes larger: the sizes where parsers break.
    pub fn len(&mut self) -> usize {
        match self.below(10) {
            0..=5 => self.below(8),
            6..=8 => self.below(100),
            _ => self.below(5000),
        }
    }

    pub fn some_bytes(&mut self) -> Vec<u8> {
        let len = self.len();
        self.bytes(len)
    }

    pub fn some_text(&mut self) -> String {
        let len = self.len();
        self.text(len)
    }

    /// A size anywhere from 0 to 2^64 - 1, small ones as likely as large ones.
    pub fn any_size(&mut self) -> u64 {
        let shift = self.below(64);
        self.next() >> shift
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }

    pub fn text(&mut self, len: usize) -> String {
        const CHARS: &[u8] = b"abcz09-_./:%\\\"' \n\t{}[]#&*!|>";
        (0..len).map(|_| *self.pick(CHARS) as char).collect()
    }
}
