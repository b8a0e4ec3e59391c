//! The block payload the simulated replicas order: batches of request wire bytes, each batch
//! named by its SHA-256. A small length-prefixed format with a limit on every count, so that a
//! malformed payload from a Byzantine leader decodes to an error, never a panic.

use sha2::{Digest as _, Sha256};

/// Most batches in one payload.
pub const PAYLOAD_BATCHES_MAX: usize = 64;
/// Most requests in one batch.
pub const BATCH_REQUESTS_MAX: usize = 256;
/// Largest request wire encoding accepted in a batch.
pub const REQUEST_BYTES_MAX: usize = notary_types::limits::REQUEST_BYTES_MAX;

/// A batch: request wire bytes in arrival order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// The requests' wire bytes.
    pub requests: Vec<Vec<u8>>,
}

/// A payload that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// Ran out of bytes.
    #[error("payload truncated at byte {at} of {len}")]
    Truncated {
        /// Where.
        at: usize,
        /// Total length.
        len: usize,
    },
    /// A count above its limit.
    #[error("{what} count {count} exceeds {max}")]
    TooMany {
        /// Which count.
        what: &'static str,
        /// Found.
        count: usize,
        /// Limit.
        max: usize,
    },
    /// Bytes left after the last batch.
    #[error("{extra} trailing bytes")]
    Trailing {
        /// How many.
        extra: usize,
    },
}

impl Batch {
    /// The batch's encoding (also what its digest is over).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.requests.len() as u32).to_be_bytes());
        for r in &self.requests {
            out.extend_from_slice(&(r.len() as u32).to_be_bytes());
            out.extend_from_slice(r);
        }
    }

    /// SHA-256 of the encoding.
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.encode()).into()
    }

    /// Decodes one batch from the whole of `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Batch, PayloadError> {
        let mut r = Cursor { bytes, at: 0 };
        let b = r.batch()?;
        r.finish()?;
        Ok(b)
    }
}

/// Encodes batches as one block payload; empty input gives the empty payload.
pub fn encode_payload(batches: &[&Batch]) -> Vec<u8> {
    if batches.is_empty() {
        return Vec::new();
    }
    let mut out = (batches.len() as u32).to_be_bytes().to_vec();
    for b in batches {
        b.encode_into(&mut out);
    }
    out
}

/// Decodes a block payload (the empty payload is no batches).
pub fn decode_payload(bytes: &[u8]) -> Result<Vec<Batch>, PayloadError> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let mut r = Cursor { bytes, at: 0 };
    let n = r.count("batch", PAYLOAD_BATCHES_MAX)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(r.batch()?);
    }
    r.finish()?;
    Ok(out)
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], PayloadError> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.bytes.len());
        let Some(end) = end else {
            return Err(PayloadError::Truncated {
                at: self.at,
                len: self.bytes.len(),
            });
        };
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn count(&mut self, what: &'static str, max: usize) -> Result<usize, PayloadError> {
        let b = self.take(4)?;
        let count = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
        if count > max {
            return Err(PayloadError::TooMany { what, count, max });
        }
        Ok(count)
    }

    fn batch(&mut self) -> Result<Batch, PayloadError> {
        let n = self.count("request", BATCH_REQUESTS_MAX)?;
        let mut requests = Vec::with_capacity(n);
        for _ in 0..n {
            let len = self.count("request byte", REQUEST_BYTES_MAX)?;
            requests.push(self.take(len)?.to_vec());
        }
        Ok(Batch { requests })
    }

    fn finish(self) -> Result<(), PayloadError> {
        let extra = self.bytes.len() - self.at;
        if extra > 0 {
            return Err(PayloadError::Trailing { extra });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips_and_truncations_are_errors() {
        let a = Batch {
            requests: vec![vec![1, 2, 3], vec![]],
        };
        let b = Batch {
            requests: vec![vec![9; 40]],
        };
        let bytes = encode_payload(&[&a, &b]);
        assert_eq!(decode_payload(&bytes).unwrap(), vec![a.clone(), b]);
        for cut in 1..bytes.len() {
            assert!(decode_payload(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert_eq!(decode_payload(&[]).unwrap(), Vec::<Batch>::new());
        assert_eq!(Batch::decode(&a.encode()).unwrap(), a);
    }

    #[test]
    fn limit_payload_batches_max() {
        let mut bytes = ((PAYLOAD_BATCHES_MAX + 1) as u32).to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0; 8]);
        assert_eq!(
            decode_payload(&bytes),
            Err(PayloadError::TooMany {
                what: "batch",
                count: PAYLOAD_BATCHES_MAX + 1,
                max: PAYLOAD_BATCHES_MAX
            })
        );
    }
}
