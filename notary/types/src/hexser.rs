//! Serde helpers: fixed-size byte arrays as lowercase hex strings in JSON.

use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

/// Serialises `N` bytes as a hex string.
pub fn serialize<S: Serializer, const N: usize>(bytes: &[u8; N], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(bytes))
}

/// Deserialises a hex string of exactly `2 * N` characters.
pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(d: D) -> Result<[u8; N], D::Error> {
    let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    let mut out = [0u8; N];
    hex::decode_to_slice(text.as_bytes(), &mut out)
        .map_err(|e| D::Error::custom(format!("expected {} hex characters: {e}", 2 * N)))?;
    Ok(out)
}
