//! A tiny big-endian byte writer and a strict reader: the building blocks of every canonical
//! encoding in `docs/PROTOCOL.md` (fixed-width big-endian integers, explicit length prefixes).

use thiserror::Error;

use crate::ids::ClusterId;

/// Why a byte string did not decode. Each variant carries the offset or the numbers involved.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The input ended before a field of `needed_bytes` at `offset` could be read.
    #[error("truncated input: needed {needed_bytes} bytes at offset {offset}, {available_bytes} available")]
    Truncated {
        /// Where the read started.
        offset: usize,
        /// How many bytes the field needed.
        needed_bytes: usize,
        /// How many bytes were left.
        available_bytes: usize,
    },
    /// Bytes were left over after the last field.
    #[error("{trailing_bytes} trailing bytes after the last field")]
    TrailingBytes {
        /// How many bytes were left over.
        trailing_bytes: usize,
    },
    /// The domain tag at the start is not the one expected.
    #[error("wrong domain tag: expected {expected:?}")]
    WrongTag {
        /// The tag the decoder expected.
        expected: &'static str,
    },
    /// A field holds a value outside its allowed range.
    #[error("invalid field {field}: {reason}")]
    Invalid {
        /// The field's name.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A count is larger than the limit allows (checked before allocating).
    #[error("{field} count {count} exceeds the limit {max}")]
    CountTooLarge {
        /// The field's name.
        field: &'static str,
        /// The count read.
        count: u64,
        /// The limit.
        max: u64,
    },
}

/// Appends canonical fields to a byte vector.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    bytes: Vec<u8>,
}

impl Writer {
    /// A writer with room for `capacity_bytes`.
    pub fn with_capacity(capacity_bytes: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(capacity_bytes),
        }
    }
    /// A domain tag: one length byte, then the ASCII tag.
    pub fn tag(&mut self, tag: &'static str) {
        debug_assert!(tag.len() <= usize::from(u8::MAX), "tags are short");
        self.u8(tag.len() as u8);
        self.bytes.extend_from_slice(tag.as_bytes());
    }
    /// One byte.
    pub fn u8(&mut self, v: u8) {
        self.bytes.push(v);
    }
    /// A big-endian `u32`.
    pub fn u32(&mut self, v: u32) {
        self.bytes.extend_from_slice(&v.to_be_bytes());
    }
    /// A big-endian `u64`.
    pub fn u64(&mut self, v: u64) {
        self.bytes.extend_from_slice(&v.to_be_bytes());
    }
    /// Raw bytes of a fixed, known width (no length prefix).
    pub fn fixed(&mut self, v: &[u8]) {
        self.bytes.extend_from_slice(v);
    }
    /// A cluster id: its length as a `u8`, then its bytes (at most 64, by `ClusterId`).
    pub fn cluster_id(&mut self, id: &ClusterId) {
        let bytes = id.as_str().as_bytes();
        self.u8(u8::try_from(bytes.len()).expect("a ClusterId has at most 64 bytes"));
        self.fixed(bytes);
    }
    /// A `u32` big-endian length prefix, then the bytes.
    pub fn var_bytes(&mut self, v: &[u8]) {
        let len = u32::try_from(v.len()).expect("encoded fields are bounded far below 4 GiB");
        self.u32(len);
        self.fixed(v);
    }
    /// The bytes written so far.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
    /// How many bytes were written.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }
    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// Reads canonical fields from a byte slice, refusing truncation and (at `finish`) trailing bytes.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    /// A reader at offset 0.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, offset: 0 }
    }
    /// How many bytes are left.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.offset
    }
    /// Reads `n` raw bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated {
                offset: self.offset,
                needed_bytes: n,
                available_bytes: self.remaining(),
            });
        }
        let out = &self.bytes[self.offset..self.offset + n];
        self.offset += n;
        Ok(out)
    }
    /// Reads a fixed-size array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    /// Checks the domain tag written by [`Writer::tag`].
    pub fn tag(&mut self, expected: &'static str) -> Result<(), DecodeError> {
        let len = self.u8()?;
        let got = self.take(usize::from(len))?;
        if got != expected.as_bytes() {
            return Err(DecodeError::WrongTag { expected });
        }
        Ok(())
    }
    /// One byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }
    /// A big-endian `u32`.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    /// A big-endian `u64`.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    /// A `u32` length prefix then that many bytes, refusing lengths above `max_bytes`.
    pub fn var_bytes(
        &mut self,
        field: &'static str,
        max_bytes: usize,
    ) -> Result<&'a [u8], DecodeError> {
        let len = self.u32()? as usize;
        if len > max_bytes {
            return Err(DecodeError::CountTooLarge {
                field,
                count: len as u64,
                max: max_bytes as u64,
            });
        }
        self.take(len)
    }
    /// A cluster id written by [`Writer::cluster_id`], refusing bytes that are not one.
    pub fn cluster_id(&mut self) -> Result<ClusterId, DecodeError> {
        let len = usize::from(self.u8()?);
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| ClusterId::new(s).ok())
            .ok_or_else(|| DecodeError::Invalid {
                field: "cluster_id",
                reason: "not 1 to 64 characters of [a-z0-9-]".into(),
            })
    }
    /// A `u32` count, refusing counts above `max`.
    pub fn count(&mut self, field: &'static str, max: usize) -> Result<usize, DecodeError> {
        let count = self.u32()? as usize;
        if count > max {
            return Err(DecodeError::CountTooLarge {
                field,
                count: count as u64,
                max: max as u64,
            });
        }
        Ok(count)
    }
    /// Succeeds only if every byte was read.
    pub fn finish(self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            trailing_bytes => Err(DecodeError::TrailingBytes { trailing_bytes }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_strictness() {
        let mut w = Writer::default();
        w.tag("t/v1");
        w.u8(7);
        w.u32(0x0102_0304);
        w.u64(9);
        w.var_bytes(b"abc");
        let bytes = w.into_bytes();
        assert_eq!(&bytes[..5], b"\x04t/v1");
        let mut r = Reader::new(&bytes);
        r.tag("t/v1").unwrap();
        assert_eq!(r.u8().unwrap(), 7);
        assert_eq!(r.u32().unwrap(), 0x0102_0304);
        assert_eq!(r.u64().unwrap(), 9);
        assert_eq!(r.var_bytes("x", 3).unwrap(), b"abc");
        r.finish().unwrap();

        let mut r = Reader::new(&bytes);
        assert_eq!(
            r.tag("t/v2"),
            Err(DecodeError::WrongTag { expected: "t/v2" })
        );
        let mut r = Reader::new(&bytes[..3]);
        assert!(matches!(r.u32(), Err(DecodeError::Truncated { .. })));
        let mut r = Reader::new(&bytes);
        r.take(5).unwrap();
        assert_eq!(
            r.finish(),
            Err(DecodeError::TrailingBytes { trailing_bytes: 20 })
        );
    }

    #[test]
    fn var_bytes_refuses_lengths_above_the_bound() {
        let mut w = Writer::default();
        w.var_bytes(b"abcd");
        let bytes = w.into_bytes();
        let err = Reader::new(&bytes).var_bytes("x", 3).unwrap_err();
        assert_eq!(
            err,
            DecodeError::CountTooLarge {
                field: "x",
                count: 4,
                max: 3
            }
        );
    }
}
