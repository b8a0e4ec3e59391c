//! The small value types of the protocol: cluster id, transaction id, state ref, timestamp,
//! height, time window, digests. Each is a validated newtype.

use serde::{de::Error as _, Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};
use std::fmt;
use thiserror::Error;
use time::{format_description::well_known::Rfc3339, OffsetDateTime};

use crate::limits::CLUSTER_ID_CHARS_MAX;

/// A cluster id was not 1..=64 characters of `[a-z0-9-]`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid cluster id {id:?}: must be 1 to {max} characters of [a-z0-9-]", max = CLUSTER_ID_CHARS_MAX)]
pub struct InvalidClusterId {
    /// The text refused (cut to 80 characters).
    pub id: String,
}

/// The name of one notary cluster, e.g. `wooden-dollars`: 1 to 64 characters of `[a-z0-9-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterId(String);

impl ClusterId {
    /// Validates `id`.
    pub fn new(id: &str) -> Result<Self, InvalidClusterId> {
        let ok = !id.is_empty()
            && id.len() <= CLUSTER_ID_CHARS_MAX
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(id.to_owned()))
        } else {
            Err(InvalidClusterId {
                id: id.chars().take(80).collect(),
            })
        }
    }
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for ClusterId {
    type Err = InvalidClusterId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl Serialize for ClusterId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ClusterId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::new(&text).map_err(D::Error::custom)
    }
}

macro_rules! bytes32 {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub struct $name(#[serde(with = "crate::hexser")] pub [u8; 32]);

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), hex::encode(self.0))
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }
        impl std::str::FromStr for $name {
            type Err = hex::FromHexError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let mut out = [0u8; 32];
                hex::decode_to_slice(s, &mut out)?;
                Ok(Self(out))
            }
        }
    };
}

bytes32!(
    /// A transaction id: 32 bytes chosen by the ledger (in Corda, the Merkle root of the transaction).
    TxId
);
bytes32!(
    /// SHA-256 of a request's canonical bytes: binds an outcome to the exact request content.
    RequestDigest
);
bytes32!(
    /// SHA-256 of a consuming transaction id: what a conflict reveals instead of the id itself.
    TxIdHash
);
bytes32!(
    /// A SHA-256 node of the block's Merkle tree (a leaf hash, an inner node or the root).
    MerkleHash
);
bytes32!(
    /// SHA-256 of a block header's canonical bytes: how the next header names it.
    HeaderHash
);
bytes32!(
    /// A requester's ed25519 public key, as the 32 bytes of RFC 8032.
    RequesterKey
);

impl TxId {
    /// SHA-256 of the 32 id bytes: how a conflict names the consuming transaction.
    pub fn hashed(&self) -> TxIdHash {
        TxIdHash(Sha256::digest(self.0).into())
    }
}

/// One output of an earlier transaction: (transaction id, output index). Ordered by the id's
/// bytes, then by the index: exactly the order of their canonical encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StateRef {
    /// The transaction that created the state.
    pub tx_id: TxId,
    /// The output index within that transaction.
    pub index: u32,
}

impl StateRef {
    /// The 36 canonical bytes: tx id, then the index as big-endian `u32`.
    pub fn to_bytes(&self) -> [u8; 36] {
        let mut out = [0u8; 36];
        out[..32].copy_from_slice(&self.tx_id.0);
        out[32..].copy_from_slice(&self.index.to_be_bytes());
        out
    }
    /// The inverse of [`StateRef::to_bytes`].
    pub fn from_bytes(bytes: &[u8; 36]) -> Self {
        let mut tx_id = [0u8; 32];
        tx_id.copy_from_slice(&bytes[..32]);
        let mut index = [0u8; 4];
        index.copy_from_slice(&bytes[32..]);
        Self {
            tx_id: TxId(tx_id),
            index: u32::from_be_bytes(index),
        }
    }
}

impl fmt::Display for StateRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.tx_id, self.index)
    }
}

/// The height of a committed block in the notary's sequence: 1, 2, 3, ... without gaps.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Height(pub u64);

impl fmt::Display for Height {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Milliseconds since the Unix epoch (UTC). RFC 3339 in JSON, with at most millisecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp(pub u64);

/// A text was not an RFC 3339 time the protocol can carry.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InvalidTimestamp {
    /// Not RFC 3339.
    #[error("not an RFC 3339 time: {0}")]
    Syntax(String),
    /// Before 1970-01-01T00:00:00Z.
    #[error("time before the Unix epoch")]
    BeforeEpoch,
    /// Carries precision below one millisecond, which the canonical form cannot hold.
    #[error("time has sub-millisecond precision ({nanos} ns)")]
    SubMillisecond {
        /// The nanoseconds of the second.
        nanos: u32,
    },
    /// Too far in the future to format (beyond year 9999).
    #[error("time {ms} ms is beyond year 9999")]
    TooLate {
        /// The milliseconds since the epoch.
        ms: u64,
    },
}

impl Timestamp {
    /// The RFC 3339 form, in UTC with milliseconds, e.g. `2025-01-02T03:04:05.678Z`.
    pub fn to_rfc3339(&self) -> Result<String, InvalidTimestamp> {
        let too_late = InvalidTimestamp::TooLate { ms: self.0 };
        let nanos = i128::from(self.0) * 1_000_000;
        let t = OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|_| too_late.clone())?;
        if t.year() > 9999 {
            return Err(too_late);
        }
        let (y, mo, d) = (t.year(), u8::from(t.month()), t.day());
        let (h, mi, s, ms) = (t.hour(), t.minute(), t.second(), t.millisecond());
        Ok(format!(
            "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z"
        ))
    }
    /// Parses RFC 3339 (any offset); refuses times before the epoch or with sub-ms precision.
    pub fn parse_rfc3339(text: &str) -> Result<Self, InvalidTimestamp> {
        let t = OffsetDateTime::parse(text, &Rfc3339)
            .map_err(|e| InvalidTimestamp::Syntax(e.to_string()))?;
        let nanos = t.unix_timestamp_nanos();
        if nanos < 0 {
            return Err(InvalidTimestamp::BeforeEpoch);
        }
        if nanos % 1_000_000 != 0 {
            return Err(InvalidTimestamp::SubMillisecond {
                nanos: t.nanosecond(),
            });
        }
        u64::try_from(nanos / 1_000_000)
            .map(Self)
            .map_err(|_| InvalidTimestamp::BeforeEpoch)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = self.to_rfc3339().map_err(serde::ser::Error::custom)?;
        s.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse_rfc3339(&text).map_err(D::Error::custom)
    }
}

/// A time window `[from, until)`: `from` inclusive, `until` exclusive; either bound may be absent
/// but not both, and when both are present `from < until`. Construct it with [`TimeWindow::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct TimeWindow {
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    until: Option<Timestamp>,
}

/// A time window that can never contain a time.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InvalidTimeWindow {
    /// Neither bound is present (send no window instead).
    #[error("time window has neither `from` nor `until`")]
    Unbounded,
    /// `from >= until`: the window is empty.
    #[error("time window is empty: from {from} ms >= until {until} ms")]
    Empty {
        /// The inclusive lower bound.
        from: u64,
        /// The exclusive upper bound.
        until: u64,
    },
}

impl TimeWindow {
    /// Validates the bounds.
    pub fn new(
        from: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> Result<Self, InvalidTimeWindow> {
        match (from, until) {
            (None, None) => Err(InvalidTimeWindow::Unbounded),
            (Some(f), Some(u)) if f >= u => Err(InvalidTimeWindow::Empty {
                from: f.0,
                until: u.0,
            }),
            _ => Ok(Self { from, until }),
        }
    }
    /// The inclusive lower bound.
    pub fn from(&self) -> Option<Timestamp> {
        self.from
    }
    /// The exclusive upper bound.
    pub fn until(&self) -> Option<Timestamp> {
        self.until
    }
    /// Whether `t` lies in `[from, until)`.
    pub fn contains(&self, t: Timestamp) -> bool {
        self.from.is_none_or(|f| f <= t) && self.until.is_none_or(|u| t < u)
    }
}

impl<'de> Deserialize<'de> for TimeWindow {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            #[serde(default)]
            from: Option<Timestamp>,
            #[serde(default)]
            until: Option<Timestamp>,
        }
        let raw = Raw::deserialize(d)?;
        Self::new(raw.from, raw.until).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_id_accepts_only_lowercase_digits_and_dashes() {
        assert!(ClusterId::new("wooden-dollars").is_ok());
        assert!(ClusterId::new(&"a".repeat(64)).is_ok());
        for bad in ["", "Wooden", "a_b", "a b", "é", &"a".repeat(65)] {
            assert!(ClusterId::new(bad).is_err(), "{bad:?}");
        }
        let json = serde_json::to_string(&ClusterId::new("x-1").unwrap()).unwrap();
        assert_eq!(json, "\"x-1\"");
        assert!(serde_json::from_str::<ClusterId>("\"X\"").is_err());
    }

    #[test]
    fn timestamp_rfc3339_round_trips_at_millisecond_precision() {
        let t = Timestamp(1_735_787_045_678);
        let text = t.to_rfc3339().unwrap();
        assert_eq!(text, "2025-01-02T03:04:05.678Z");
        assert_eq!(Timestamp::parse_rfc3339(&text).unwrap(), t);
        assert_eq!(
            Timestamp::parse_rfc3339("2025-01-02T04:04:05.678+01:00").unwrap(),
            t
        );
        assert!(matches!(
            Timestamp::parse_rfc3339("2025-01-02T03:04:05.6781Z"),
            Err(InvalidTimestamp::SubMillisecond { .. })
        ));
        assert_eq!(
            Timestamp::parse_rfc3339("1969-12-31T23:59:59Z"),
            Err(InvalidTimestamp::BeforeEpoch)
        );
        assert!(Timestamp(u64::MAX).to_rfc3339().is_err());
    }

    #[test]
    fn time_window_from_is_inclusive_and_until_exclusive() {
        let w = TimeWindow::new(Some(Timestamp(10)), Some(Timestamp(20))).unwrap();
        assert!(!w.contains(Timestamp(9)));
        assert!(w.contains(Timestamp(10)));
        assert!(w.contains(Timestamp(19)));
        assert!(!w.contains(Timestamp(20)));
        let open_end = TimeWindow::new(Some(Timestamp(10)), None).unwrap();
        assert!(open_end.contains(Timestamp(u64::MAX)) && !open_end.contains(Timestamp(9)));
        let open_start = TimeWindow::new(None, Some(Timestamp(10))).unwrap();
        assert!(open_start.contains(Timestamp(0)) && !open_start.contains(Timestamp(10)));
    }

    #[test]
    fn time_window_refuses_unbounded_and_empty() {
        assert_eq!(
            TimeWindow::new(None, None),
            Err(InvalidTimeWindow::Unbounded)
        );
        assert_eq!(
            TimeWindow::new(Some(Timestamp(5)), Some(Timestamp(5))),
            Err(InvalidTimeWindow::Empty { from: 5, until: 5 })
        );
        assert!(serde_json::from_str::<TimeWindow>("{}").is_err());
        let w: TimeWindow = serde_json::from_str(r#"{"from":"1970-01-01T00:00:00.010Z"}"#).unwrap();
        assert_eq!(w.from(), Some(Timestamp(10)));
    }

    #[test]
    fn state_ref_order_is_the_order_of_its_bytes() {
        let a = StateRef {
            tx_id: TxId([1; 32]),
            index: 256,
        };
        let b = StateRef {
            tx_id: TxId([1; 32]),
            index: 2,
        };
        assert_eq!(a.cmp(&b), a.to_bytes().cmp(&b.to_bytes()));
        assert_eq!(StateRef::from_bytes(&a.to_bytes()), a);
    }
}
