//! Protobuf wire format, read without decoding: the rewriter walks messages as
//! (field number, wire type, byte range) and copies everything it does not touch.
//!
//! Every read is bounds-checked and returns [`WireError`]; nothing here panics on
//! arbitrary bytes.

use std::ops::Range;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("truncated protobuf message")]
    Truncated,
    #[error("malformed varint")]
    BadVarint,
    #[error("invalid wire type {0}")]
    BadWireType(u8),
    #[error("field number 0 is not allowed")]
    ZeroField,
    #[error("message nested deeper than {0} levels")]
    TooDeep(usize),
}

pub const WIRE_VARINT: u8 = 0;
pub const WIRE_I64: u8 = 1;
pub const WIRE_LEN: u8 = 2;
pub const WIRE_SGROUP: u8 = 3;
pub const WIRE_EGROUP: u8 = 4;
pub const WIRE_I32: u8 = 5;

/// One field of a message, as byte ranges into the buffer it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub number: u32,
    pub wire_type: u8,
    /// The whole field: tag, length prefix (if any) and content.
    pub whole: Range<usize>,
    /// The content: for `WIRE_LEN` the bytes after the length prefix, else the value.
    pub content: Range<usize>,
}

/// Reads a varint at `pos`, returning the value and the position after it.
pub fn read_varint(buf: &[u8], mut pos: usize) -> Result<(u64, usize), WireError> {
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(pos).ok_or(WireError::Truncated)?;
        pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok((value, pos));
        }
    }
    Err(WireError::BadVarint)
}

pub fn varint_len(mut value: u64) -> usize {
    let mut len = 1;
    while value >= 0x80 {
        value >>= 7;
        len += 1;
    }
    len
}

pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Writes the tag and length prefix of a length-delimited field.
pub fn put_len_header(out: &mut Vec<u8>, number: u32, len: usize) {
    put_varint(out, (u64::from(number) << 3) | u64::from(WIRE_LEN));
    put_varint(out, len as u64);
}

/// Size of the tag and length prefix that [`put_len_header`] writes.
pub fn len_header_size(number: u32, len: usize) -> usize {
    varint_len((u64::from(number) << 3) | u64::from(WIRE_LEN)) + varint_len(len as u64)
}

/// Iterates over the fields of the message held in `buf[range]`.
pub struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Fields<'a> {
    pub fn new(buf: &'a [u8], range: Range<usize>) -> Self {
        let end = range.end.min(buf.len());
        Fields {
            buf,
            pos: range.start,
            end,
        }
    }

    fn read_field(&mut self) -> Result<Field, WireError> {
        let bounded = &self.buf[..self.end];
        let start = self.pos;
        let (tag, pos) = read_varint(bounded, start)?;
        let number = u32::try_from(tag >> 3).map_err(|_| WireError::BadVarint)?;
        if number == 0 {
            return Err(WireError::ZeroField);
        }
        let wire_type = (tag & 7) as u8;
        let (content, next) = match wire_type {
            WIRE_VARINT => {
                let (_, next) = read_varint(bounded, pos)?;
                (pos..next, next)
            }
            WIRE_I64 => fixed(bounded, pos, 8)?,
            WIRE_I32 => fixed(bounded, pos, 4)?,
            WIRE_LEN => {
                let (len, body) = read_varint(bounded, pos)?;
                let len = usize::try_from(len).map_err(|_| WireError::Truncated)?;
                fixed(bounded, body, len)?
            }
            WIRE_SGROUP => skip_group(bounded, pos, number)?,
            other => return Err(WireError::BadWireType(other)),
        };
        self.pos = next;
        Ok(Field {
            number,
            wire_type,
            whole: start..next,
            content,
        })
    }
}

impl Iterator for Fields<'_> {
    type Item = Result<Field, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.end {
            return None;
        }
        let field = self.read_field();
        if field.is_err() {
            // Stop after the first error: the rest of the buffer has no trustworthy framing.
            self.pos = self.end;
        }
        Some(field)
    }
}

fn fixed(buf: &[u8], pos: usize, len: usize) -> Result<(Range<usize>, usize), WireError> {
    let end = pos.checked_add(len).ok_or(WireError::Truncated)?;
    if end > buf.len() {
        return Err(WireError::Truncated);
    }
    Ok((pos..end, end))
}

/// Skips a deprecated group up to its matching end tag; groups never hold payloads.
fn skip_group(buf: &[u8], mut pos: usize, number: u32) -> Result<(Range<usize>, usize), WireError> {
    let start = pos;
    let mut depth = 1usize;
    loop {
        let (tag, after_tag) = read_varint(buf, pos)?;
        let wire_type = (tag & 7) as u8;
        pos = match wire_type {
            WIRE_VARINT => read_varint(buf, after_tag)?.1,
            WIRE_I64 => fixed(buf, after_tag, 8)?.1,
            WIRE_I32 => fixed(buf, after_tag, 4)?.1,
            WIRE_LEN => {
                let (len, body) = read_varint(buf, after_tag)?;
                fixed(buf, body, usize::try_from(len).map_err(|_| WireError::Truncated)?)?.1
            }
            WIRE_SGROUP => {
                depth += 1;
                after_tag
            }
            WIRE_EGROUP => {
                depth -= 1;
                if depth == 0 {
                    if tag >> 3 != u64::from(number) {
                        return Err(WireError::BadWireType(WIRE_EGROUP));
                    }
                    return Ok((start..pos, after_tag));
                }
                after_tag
            }
            other => return Err(WireError::BadWireType(other)),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        for value in [0u64, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(out.len(), varint_len(value));
            assert_eq!(read_varint(&out, 0), Ok((value, out.len())));
        }
    }

    #[test]
    fn fields_report_ranges() {
        // field 1 varint 150, field 2 bytes "hi", field 3 fixed32
        let buf = [0x08, 0x96, 0x01, 0x12, 0x02, b'h', b'i', 0x1d, 1, 2, 3, 4];
        let fields: Vec<Field> = Fields::new(&buf, 0..buf.len()).collect::<Result<_, _>>().unwrap();
        assert_eq!(fields.len(), 3);
        assert_eq!(fields[1].content, 5..7);
        assert_eq!(fields[1].whole, 3..7);
        assert_eq!(fields[2].content, 8..12);
    }

    #[test]
    fn truncated_length_is_an_error() {
        let buf = [0x12, 0x05, b'h'];
        let first = Fields::new(&buf, 0..buf.len()).next();
        assert_eq!(first, Some(Err(WireError::Truncated)));
    }

    #[test]
    fn groups_are_skipped() {
        // field 1 start group, inner field 2 varint 1, field 1 end group, field 3 varint 7
        let buf = [0x0b, 0x10, 0x01, 0x0c, 0x18, 0x07];
        let fields: Vec<Field> = Fields::new(&buf, 0..buf.len()).collect::<Result<_, _>>().unwrap();
        assert_eq!(fields.iter().map(|f| f.number).collect::<Vec<_>>(), vec![1, 3]);
    }
}
