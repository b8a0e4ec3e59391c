//! Every limit a client can push against, in one place (units last in the names).
//!
//! The count limit is Corda's (10,000 inputs plus references). The byte limit bounds the
//! canonical encoding and is chosen so that a request at the count limit still fits:
//! 10,000 state refs × 36 bytes = 360,000 bytes, plus the fixed fields (< 400 bytes).

/// At most this many input plus reference state refs in one request.
pub const STATE_REFS_COUNT_MAX: usize = 10_000;

/// At most this many bytes in a request's wire encoding (canonical bytes + 64-byte signature).
pub const REQUEST_BYTES_MAX: usize = 361_024;

/// At most this many bytes in a request's JSON body (hex doubles the bytes; field names add more).
/// The HTTP layer enforces it before parsing.
pub const REQUEST_JSON_BYTES_MAX: usize = 2 * 1024 * 1024;

/// The size of one encoded state ref: a 32-byte transaction id and a 4-byte output index.
pub const STATE_REF_BYTES: usize = 36;

/// At most this many headers in an answer's chain, from the answer's block to the signed
/// one. Replicas sign at least every [`CHAIN_HEADERS_MAX`]th height (the heights that are
/// multiples of it), so an honest chain is never longer.
pub const CHAIN_HEADERS_MAX: usize = 64;

/// Cluster ids are 1 to this many characters of `[a-z0-9-]`.
pub const CLUSTER_ID_CHARS_MAX: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_at_the_count_limit_fits_the_byte_limit() {
        // tag(18) + cluster id (1 + 64) + tx id 32 + two counts 8 + window 17 + requester 32 + sig 64.
        let fixed_bytes = 18 + 65 + 32 + 8 + 17 + 32 + 64;
        assert!(STATE_REFS_COUNT_MAX * STATE_REF_BYTES + fixed_bytes <= REQUEST_BYTES_MAX);
    }
}
