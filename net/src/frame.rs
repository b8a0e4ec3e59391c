//! The replica wire format, in one place.
//!
//! A frame is a 4-byte big-endian length `len` followed by `len` body bytes. The body starts
//! with a kind byte:
//!
//! | kind | body after the kind byte |
//! | --- | --- |
//! | `1` Hello | protocol version `u16` BE, sender replica id `u16` BE, cluster id length `u8`, cluster id bytes |
//! | `2` Message | author replica id `u16` BE, opaque payload |
//!
//! Invariants: a length above the configured maximum is refused from the 4 header bytes alone,
//! **before** any body buffer is allocated; a body is never read past its length; every
//! malformed input is a [`FrameError`] carrying the sizes involved, never a panic.

use bytes::{BufMut, Bytes, BytesMut};
use notary_consensus::ReplicaId;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Bytes of the length prefix.
pub const LENGTH_PREFIX_BYTES: usize = 4;
/// Bytes a Message frame body spends before its payload (kind + author).
pub const MESSAGE_HEADER_BYTES: usize = 3;
/// The longest cluster id a Hello can carry.
pub const CLUSTER_ID_BYTES_MAX: usize = 255;
/// The largest Hello body: kind, version, id, cluster length, cluster id.
pub const HELLO_BYTES_MAX: usize = 1 + 2 + 2 + 1 + CLUSTER_ID_BYTES_MAX;

const KIND_HELLO: u8 = 1;
const KIND_MESSAGE: u8 = 2;

/// A frame that broke the format. Each variant carries the numbers that were wrong.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The length prefix announced more than the limit; nothing was allocated for it.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// Announced body length.
        len: u64,
        /// The configured maximum.
        max: usize,
    },
    /// A body of zero bytes: there is no kind byte.
    #[error("empty frame body")]
    Empty,
    /// An unknown kind byte.
    #[error("unknown frame kind {kind}")]
    UnknownKind {
        /// The kind byte.
        kind: u8,
    },
    /// A body shorter than its kind requires.
    #[error("frame kind {kind} needs at least {needed} bytes, got {len}")]
    Truncated {
        /// The kind byte.
        kind: u8,
        /// Bytes the kind requires.
        needed: usize,
        /// Bytes present.
        len: usize,
    },
    /// A Hello with bytes after the cluster id.
    #[error("hello has {extra} trailing bytes")]
    TrailingBytes {
        /// Bytes past the end of the hello.
        extra: usize,
    },
    /// A cluster id that does not fit a Hello.
    #[error("cluster id of {len} bytes exceeds {max} bytes")]
    ClusterIdTooLong {
        /// Its length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// A cluster id that is not UTF-8.
    #[error("cluster id is not UTF-8")]
    ClusterIdNotUtf8,
}

/// Reading a frame from a stream failed.
#[derive(Debug, Error)]
pub enum ReadError {
    /// The bytes broke the format.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame: {got} of {expected} bytes")]
    UnexpectedEof {
        /// Bytes expected for the current element.
        expected: usize,
        /// Bytes received before the end.
        got: usize,
    },
    /// The stream failed.
    #[error("stream read failed: {0}")]
    Io(#[from] std::io::Error),
}

/// The versioned greeting each side sends first on a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The sender's protocol version.
    pub protocol_version: u16,
    /// The replica id the sender claims; it must match its certificate.
    pub replica: ReplicaId,
    /// The sender's cluster id.
    pub cluster_id: String,
}

/// One decoded frame body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The greeting.
    Hello(Hello),
    /// An opaque message from `author`.
    Message {
        /// The replica the sender says wrote it; checked against the connection's identity.
        author: ReplicaId,
        /// The message bytes (a view into the frame buffer, no copy).
        payload: Bytes,
    },
}

/// Checks a length prefix against the limit. This is the only gate before allocation.
pub fn check_length(prefix: [u8; LENGTH_PREFIX_BYTES], max: usize) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(prefix);
    match usize::try_from(len) {
        Ok(len) if len <= max => Ok(len),
        _ => Err(FrameError::TooLarge {
            len: u64::from(len),
            max,
        }),
    }
}

/// Appends a Message frame (prefix included) to `out`. Fails if the body would exceed `max`.
pub fn encode_message(
    out: &mut BytesMut,
    author: ReplicaId,
    payload: &[u8],
    max: usize,
) -> Result<(), FrameError> {
    let body_len = MESSAGE_HEADER_BYTES + payload.len();
    let len = u32::try_from(body_len)
        .ok()
        .filter(|_| body_len <= max)
        .ok_or(FrameError::TooLarge {
            len: body_len as u64,
            max,
        })?;
    out.reserve(LENGTH_PREFIX_BYTES + body_len);
    out.put_u32(len);
    out.put_u8(KIND_MESSAGE);
    out.put_u16(author.0);
    out.put_slice(payload);
    Ok(())
}

/// Encodes a Hello frame, prefix included.
pub fn encode_hello(hello: &Hello) -> Result<Bytes, FrameError> {
    let cluster = hello.cluster_id.as_bytes();
    let cluster_len = u8::try_from(cluster.len()).map_err(|_| FrameError::ClusterIdTooLong {
        len: cluster.len(),
        max: CLUSTER_ID_BYTES_MAX,
    })?;
    let body_len = 6 + cluster.len();
    let mut out = BytesMut::with_capacity(LENGTH_PREFIX_BYTES + body_len);
    out.put_u32(body_len as u32);
    out.put_u8(KIND_HELLO);
    out.put_u16(hello.protocol_version);
    out.put_u16(hello.replica.0);
    out.put_u8(cluster_len);
    out.put_slice(cluster);
    Ok(out.freeze())
}

/// Decodes one frame body (the bytes after the length prefix).
pub fn decode(body: Bytes) -> Result<Frame, FrameError> {
    let Some(&kind) = body.first() else {
        return Err(FrameError::Empty);
    };
    let truncated = |needed: usize| FrameError::Truncated {
        kind,
        needed,
        len: body.len(),
    };
    match kind {
        KIND_MESSAGE => {
            if body.len() < MESSAGE_HEADER_BYTES {
                return Err(truncated(MESSAGE_HEADER_BYTES));
            }
            let author = ReplicaId(u16::from_be_bytes([body[1], body[2]]));
            Ok(Frame::Message {
                author,
                payload: body.slice(MESSAGE_HEADER_BYTES..),
            })
        }
        KIND_HELLO => {
            if body.len() < 6 {
                return Err(truncated(6));
            }
            let cluster_len = usize::from(body[5]);
            let end = 6 + cluster_len;
            if body.len() < end {
                return Err(truncated(end));
            }
            if body.len() > end {
                return Err(FrameError::TrailingBytes {
                    extra: body.len() - end,
                });
            }
            let cluster_id = std::str::from_utf8(&body[6..end])
                .map_err(|_| FrameError::ClusterIdNotUtf8)?
                .to_owned();
            Ok(Frame::Hello(Hello {
                protocol_version: u16::from_be_bytes([body[1], body[2]]),
                replica: ReplicaId(u16::from_be_bytes([body[3], body[4]])),
                cluster_id,
            }))
        }
        kind => Err(FrameError::UnknownKind { kind }),
    }
}

async fn fill<R: AsyncRead + Unpin>(r: &mut R, buf: &mut [u8]) -> Result<usize, std::io::Error> {
    let mut got = 0;
    while got < buf.len() {
        let n = r.read(&mut buf[got..]).await?;
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok(got)
}

/// Reads one frame body. `Ok(None)` is a clean end of stream at a frame boundary.
///
/// The length is checked against `max` before the body buffer exists, so a peer announcing
/// 4 GiB costs us four bytes of reading and nothing else.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
) -> Result<Option<Bytes>, ReadError> {
    let mut prefix = [0u8; LENGTH_PREFIX_BYTES];
    let got = fill(r, &mut prefix).await?;
    if got == 0 {
        return Ok(None);
    }
    if got < LENGTH_PREFIX_BYTES {
        return Err(ReadError::UnexpectedEof {
            expected: LENGTH_PREFIX_BYTES,
            got,
        });
    }
    let len = check_length(prefix, max)?;
    let mut body = vec![0u8; len];
    let got = fill(r, &mut body).await?;
    if got < len {
        return Err(ReadError::UnexpectedEof { expected: len, got });
    }
    Ok(Some(Bytes::from(body)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// A reader that serves `data` and then fails the test if anyone reads further: proof
    /// that a refused frame's body is never requested (and so never allocated for).
    struct Tripwire {
        data: Vec<u8>,
        pos: usize,
    }

    impl AsyncRead for Tripwire {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            assert!(self.pos < self.data.len(), "read past the length prefix");
            let n = buf.remaining().min(self.data.len() - self.pos);
            let start = self.pos;
            buf.put_slice(&self.data[start..start + n]);
            self.pos += n;
            Poll::Ready(Ok(()))
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime always builds")
            .block_on(f)
    }

    #[test]
    fn frame_of_exactly_max_bytes_passes() {
        let max = 1024;
        let mut out = BytesMut::new();
        encode_message(
            &mut out,
            ReplicaId(3),
            &vec![7u8; max - MESSAGE_HEADER_BYTES],
            max,
        )
        .expect("a body of exactly max bytes is allowed");
        let body = block_on(read_frame(&mut &out[..], max))
            .expect("read")
            .expect("one frame");
        assert_eq!(body.len(), max);
        match decode(body).expect("decodes") {
            Frame::Message { author, payload } => {
                assert_eq!(author, ReplicaId(3));
                assert_eq!(payload.len(), max - MESSAGE_HEADER_BYTES);
            }
            other => panic!("expected a message, got {other:?}"),
        }
    }

    #[test]
    fn frame_of_max_plus_one_is_refused_from_the_prefix_alone() {
        let max = 1024;
        let mut wire = Tripwire {
            data: ((max + 1) as u32).to_be_bytes().to_vec(),
            pos: 0,
        };
        let err = block_on(read_frame(&mut wire, max)).expect_err("must be refused");
        assert!(matches!(
            err,
            ReadError::Frame(FrameError::TooLarge {
                len: 1025,
                max: 1024
            })
        ));
        let mut out = BytesMut::new();
        let err = encode_message(&mut out, ReplicaId(0), &vec![0; max - 2], max);
        assert_eq!(err, Err(FrameError::TooLarge { len: 1025, max }));
        assert!(out.is_empty(), "a refused encode writes nothing");
    }

    #[test]
    fn a_four_gib_announcement_is_refused_without_reading_on() {
        let mut wire = Tripwire {
            data: u32::MAX.to_be_bytes().to_vec(),
            pos: 0,
        };
        let err = block_on(read_frame(&mut wire, 8 << 20)).expect_err("refused");
        assert!(matches!(err, ReadError::Frame(FrameError::TooLarge { .. })));
    }

    #[test]
    fn eof_inside_a_frame_is_typed() {
        let data = [0u8, 0, 0, 10, 2, 0];
        let err = block_on(read_frame(&mut &data[..], 64)).expect_err("truncated");
        assert!(matches!(
            err,
            ReadError::UnexpectedEof {
                expected: 10,
                got: 2
            }
        ));
        let err = block_on(read_frame(&mut &data[..2], 64)).expect_err("truncated prefix");
        assert!(matches!(
            err,
            ReadError::UnexpectedEof {
                expected: 4,
                got: 2
            }
        ));
        assert!(block_on(read_frame(&mut &[][..], 64))
            .expect("clean eof")
            .is_none());
    }

    #[test]
    fn garbage_bodies_are_typed_errors() {
        assert_eq!(decode(Bytes::new()), Err(FrameError::Empty));
        assert_eq!(
            decode(Bytes::from_static(&[9, 1, 2])),
            Err(FrameError::UnknownKind { kind: 9 })
        );
        assert_eq!(
            decode(Bytes::from_static(&[2, 1])),
            Err(FrameError::Truncated {
                kind: 2,
                needed: 3,
                len: 2
            })
        );
        assert_eq!(
            decode(Bytes::from_static(&[1, 0, 1, 0, 2, 3, b'a'])),
            Err(FrameError::Truncated {
                kind: 1,
                needed: 9,
                len: 7
            })
        );
    }

    #[test]
    fn cluster_id_longer_than_a_hello_holds_is_refused() {
        let hello = Hello {
            protocol_version: 1,
            replica: ReplicaId(0),
            cluster_id: "x".repeat(CLUSTER_ID_BYTES_MAX + 1),
        };
        assert_eq!(
            encode_hello(&hello),
            Err(FrameError::ClusterIdTooLong { len: 256, max: 255 })
        );
    }

    proptest! {
        #[test]
        fn hello_round_trips(version: u16, id: u16, cluster in "[a-z0-9-]{0,255}") {
            let hello = Hello { protocol_version: version, replica: ReplicaId(id), cluster_id: cluster };
            let wire = encode_hello(&hello).expect("fits");
            prop_assert!(wire.len() - LENGTH_PREFIX_BYTES <= HELLO_BYTES_MAX);
            let body = block_on(read_frame(&mut &wire[..], HELLO_BYTES_MAX)).expect("read").expect("frame");
            prop_assert_eq!(decode(body).expect("decodes"), Frame::Hello(hello));
        }

        #[test]
        fn messages_round_trip(id: u16, payload in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let mut out = BytesMut::new();
            encode_message(&mut out, ReplicaId(id), &payload, 4096).expect("fits");
            let body = block_on(read_frame(&mut &out[..], 4096)).expect("read").expect("frame");
            prop_assert_eq!(
                decode(body).expect("decodes"),
                Frame::Message { author: ReplicaId(id), payload: Bytes::from(payload) }
            );
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut r = &data[..];
            while let Ok(Some(body)) = block_on(read_frame(&mut r, 32)) {
                prop_assert!(body.len() <= 32, "a body over the limit was returned");
                if let Ok(Frame::Message { payload, .. }) = decode(body) {
                    prop_assert!(payload.len() <= 32 - MESSAGE_HEADER_BYTES);
                }
            }
        }
    }
}
