//! The four signed round messages, their wire form (hex in JSON) and their decoded form.
//!
//! Every message is signed by its sender over
//! `"notary-dkg/v1" ‖ ceremony id ‖ round ‖ sender ‖ SHA-256(JSON body)`, so a [`Header`]
//! (round, sender, body digest, signature) is verifiable on its own: two valid headers of one
//! sender for one round with different digests are transferable proof of equivocation.

use blsttc::poly::Commitment;
use blsttc::{Ciphertext, PublicKey, SecretKey};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{CeremonyConfig, CeremonyId, ParticipantIndex};

/// Domain separation for message signatures.
const SIGN_DOMAIN: &[u8] = b"notary-dkg/v1/message";

/// A share's ciphertext: `u` (G1) ‖ `w` (G2) ‖ the 32 encrypted bytes of the scalar.
pub(crate) const CIPHERTEXT_BYTES: usize = blsttc::PK_SIZE + blsttc::SIG_SIZE + blsttc::SK_SIZE;

/// The four rounds, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "u8", try_from = "u8")]
pub enum Round {
    /// 1: every participant publishes one fresh BLS encryption key per dealer.
    Keys = 1,
    /// 2: every dealer publishes its Feldman commitment and one encrypted share per participant.
    Deal = 2,
    /// 3: every participant publishes verifiable complaints against dealers whose share was bad.
    Complain = 3,
    /// 4: every participant publishes the digest of the result it computed.
    Confirm = 4,
}

impl Round {
    /// All rounds, in order.
    pub const ALL: [Round; 4] = [Round::Keys, Round::Deal, Round::Complain, Round::Confirm];

    /// The round's number, 1..=4.
    pub fn number(self) -> u8 {
        self as u8
    }

    /// Position in per-round arrays.
    pub(crate) fn slot(self) -> usize {
        usize::from(self.number() - 1)
    }

    /// The round after this one.
    pub fn next(self) -> Option<Round> {
        Round::try_from(self.number() + 1).ok()
    }
}

impl From<Round> for u8 {
    fn from(r: Round) -> u8 {
        r.number()
    }
}

impl TryFrom<u8> for Round {
    type Error = String;
    fn try_from(v: u8) -> Result<Self, String> {
        match v {
            1 => Ok(Round::Keys),
            2 => Ok(Round::Deal),
            3 => Ok(Round::Complain),
            4 => Ok(Round::Confirm),
            _ => Err(format!("round {v} is not 1..=4")),
        }
    }
}

impl std::fmt::Display for Round {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({self:?})", self.number())
    }
}

/// A message's signed header: enough to check the signature without the body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The round the message belongs to.
    pub round: Round,
    /// Who sent (and signed) it.
    pub sender: ParticipantIndex,
    /// SHA-256 of the JSON body, hex.
    pub digest: String,
    /// ed25519 signature over the signed bytes, hex.
    pub signature: String,
}

impl Header {
    fn signed_bytes(
        ceremony: &CeremonyId,
        round: Round,
        sender: ParticipantIndex,
        digest: &[u8; 32],
    ) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(SIGN_DOMAIN);
        ceremony.hash_into(&mut h);
        h.update([round.number()]);
        h.update(sender.0.to_be_bytes());
        h.update(digest);
        h.finalize().into()
    }

    /// Checks the signature against the sender's key in `config`.
    pub fn verify(&self, config: &CeremonyConfig) -> bool {
        let Some(key) = config.key(self.sender) else {
            return false;
        };
        let (Some(digest), Some(sig)) = (
            decode_array::<32>(&self.digest),
            decode_array::<64>(&self.signature),
        ) else {
            return false;
        };
        let bytes = Self::signed_bytes(&config.ceremony, self.round, self.sender, &digest);
        verify_sig(key, &bytes, &Signature::from_bytes(&sig))
    }
}

fn verify_sig(key: &VerifyingKey, bytes: &[u8], sig: &Signature) -> bool {
    key.verify(bytes, sig).is_ok()
}

/// A complaint against one dealer, published in round 3.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Complaint {
    /// The dealer complained against.
    pub dealer: ParticipantIndex,
    /// The complainer's round-1 encryption key for this dealer, revealed (hex), so anyone can
    /// decrypt the share and check it against the dealer's commitment. `None`: the dealer sent
    /// no share at all. The key protects nothing else: it was used only for this dealer.
    pub revealed_key: Option<String>,
}

/// A message body, by round. Group elements and ciphertexts are hex of `blsttc`'s `to_bytes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Body {
    /// Round 1: `enc_keys[d]` is the key dealer `d` encrypts this participant's share to.
    Keys {
        /// One BLS public key per dealer, hex.
        enc_keys: Vec<String>,
    },
    /// Round 2: the dealer's commitment and shares, and the round-1 headers it received.
    Deal {
        /// `blsttc::poly::Commitment` of the dealer's degree-t polynomial, hex.
        commitment: String,
        /// `shares[j]`: the share for `j` encrypted to `j`'s key for this dealer, hex; `None` if
        /// the dealer has no round-1 keys of `j`.
        shares: Vec<Option<String>>,
        /// `echo[s]`: the header of `s`'s round-1 message as this participant received it.
        echo: Vec<Option<Header>>,
    },
    /// Round 3: complaints, and the round-2 headers received.
    Complain {
        /// At most one complaint per dealer.
        complaints: Vec<Complaint>,
        /// `echo[s]`: the header of `s`'s round-2 message as received.
        echo: Vec<Option<Header>>,
    },
    /// Round 4: the result digest, and the round-3 headers received.
    Confirm {
        /// Hex SHA-256 of the qualified dealers and the public key set this participant computed.
        result: String,
        /// `echo[s]`: the header of `s`'s round-3 message as received.
        echo: Vec<Option<Header>>,
    },
}

impl Body {
    /// The round this body belongs to.
    pub fn round(&self) -> Round {
        match self {
            Body::Keys { .. } => Round::Keys,
            Body::Deal { .. } => Round::Deal,
            Body::Complain { .. } => Round::Complain,
            Body::Confirm { .. } => Round::Confirm,
        }
    }

    fn digest(&self) -> [u8; 32] {
        let json =
            serde_json::to_vec(self).expect("a body of strings and vectors always serialises");
        Sha256::digest(json).into()
    }

    /// The echo carried by rounds 2–4 (about the previous round).
    pub(crate) fn echo(&self) -> Option<&[Option<Header>]> {
        match self {
            Body::Keys { .. } => None,
            Body::Deal { echo, .. } | Body::Complain { echo, .. } | Body::Confirm { echo, .. } => {
                Some(echo)
            }
        }
    }
}

/// A signed message as it travels (JSON) and as it is kept in the transcript.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedMessage {
    /// The ceremony it belongs to.
    pub ceremony: CeremonyId,
    /// Round, sender, digest of `body`, signature.
    pub header: Header,
    /// The content.
    pub body: Body,
}

impl SignedMessage {
    /// Signs `body` as `sender` of `ceremony`.
    pub fn sign(
        ceremony: &CeremonyId,
        sender: ParticipantIndex,
        body: Body,
        key: &SigningKey,
    ) -> Self {
        let round = body.round();
        let digest = body.digest();
        let signature = key.sign(&Header::signed_bytes(ceremony, round, sender, &digest));
        Self {
            ceremony: ceremony.clone(),
            header: Header {
                round,
                sender,
                digest: hex::encode(digest),
                signature: hex::encode(signature.to_bytes()),
            },
            body,
        }
    }

    /// Checks that the message belongs to this ceremony, that the header matches the body and
    /// that the sender signed it. Says nothing yet about the body's content.
    pub fn verify_signature(&self, config: &CeremonyConfig) -> bool {
        self.ceremony == config.ceremony
            && self.header.round == self.body.round()
            && self.header.digest == hex::encode(self.body.digest())
            && self.header.verify(config)
    }

    /// The sender.
    pub fn sender(&self) -> ParticipantIndex {
        self.header.sender
    }

    /// The round.
    pub fn round(&self) -> Round {
        self.header.round
    }
}

/// Decodes hex into a fixed-size array.
pub(crate) fn decode_array<const N: usize>(h: &str) -> Option<[u8; N]> {
    hex::decode(h).ok()?.try_into().ok()
}

/// A round-2 message, decoded.
#[derive(Clone, Debug)]
pub(crate) struct DecodedDeal {
    pub commitment: Commitment,
    /// Ciphertext bytes of the right length; decoded (curve points checked) only when used,
    /// since that costs a G2 decompression each and only the recipient or a judge needs it.
    pub shares: Vec<Option<Vec<u8>>>,
}

impl DecodedDeal {
    /// The ciphertext for `j`: `Ok(None)` if none was dealt, `Err` if it does not decode.
    pub fn ciphertext(&self, j: ParticipantIndex) -> Result<Option<Ciphertext>, ()> {
        match self.shares.get(j.get()).and_then(Option::as_ref) {
            None => Ok(None),
            Some(b) => Ciphertext::from_bytes(b).map(Some).map_err(drop),
        }
    }
}

/// Why a signed message's content is unusable (its sender's fault: it signed it).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum Malformed {
    /// A list has the wrong length.
    #[error("{field} has {len} entries, expected {expected}")]
    WrongLength {
        /// Which list.
        field: String,
        /// Its length.
        len: usize,
        /// The required length.
        expected: usize,
    },
    /// A field does not decode.
    #[error("{field} does not decode")]
    Undecodable {
        /// Which field.
        field: String,
    },
    /// An echoed header is not validly signed or belongs to the wrong round or sender.
    #[error("echo entry {index} is not a valid header of participant {index}")]
    BadEcho {
        /// The echo position.
        index: usize,
    },
    /// A complaint names a dealer out of range, or twice.
    #[error("complaint against dealer {dealer} is out of range or repeated")]
    BadComplaint {
        /// The dealer index given.
        dealer: u16,
    },
}

/// Checks a message's content against the ceremony's parameters (lengths, decodability,
/// echo signatures). Does not decode ciphertexts' validity (that costs pairings and is only
/// needed when someone complains).
pub(crate) fn check_body(msg: &SignedMessage, config: &CeremonyConfig) -> Result<(), Malformed> {
    let n = config.n();
    let len = |field: &str, len: usize| {
        if len == n {
            Ok(())
        } else {
            Err(Malformed::WrongLength {
                field: field.to_owned(),
                len,
                expected: n,
            })
        }
    };
    if let Some(echo) = msg.body.echo() {
        len("echo", echo.len())?;
        let previous =
            Round::try_from(msg.round().number() - 1).expect("only rounds 2..=4 carry an echo");
        for (i, h) in echo.iter().enumerate() {
            if let Some(h) = h {
                if h.sender.get() != i || h.round != previous || !h.verify(config) {
                    return Err(Malformed::BadEcho { index: i });
                }
            }
        }
    }
    match &msg.body {
        Body::Keys { enc_keys } => {
            len("enc_keys", enc_keys.len())?;
            for k in enc_keys {
                decode_public_key(k).ok_or(Malformed::Undecodable {
                    field: "enc_keys".into(),
                })?;
            }
        }
        Body::Deal { .. } => {
            decode_deal(&msg.body, config)?;
        }
        Body::Complain { complaints, .. } => {
            let mut seen = vec![false; n];
            for c in complaints {
                let d = c.dealer.get();
                if d >= n || seen[d] {
                    return Err(Malformed::BadComplaint { dealer: c.dealer.0 });
                }
                seen[d] = true;
                if let Some(k) = &c.revealed_key {
                    decode_secret_key(k).ok_or(Malformed::Undecodable {
                        field: "revealed_key".into(),
                    })?;
                }
            }
        }
        Body::Confirm { result, .. } => {
            decode_array::<32>(result).ok_or(Malformed::Undecodable {
                field: "result".into(),
            })?;
        }
    }
    Ok(())
}

pub(crate) fn decode_public_key(h: &str) -> Option<PublicKey> {
    PublicKey::from_bytes(decode_array::<48>(h)?).ok()
}

pub(crate) fn decode_secret_key(h: &str) -> Option<SecretKey> {
    let mut bytes = zeroize::Zeroizing::new(decode_array::<32>(h)?);
    SecretKey::from_bytes(*bytes)
        .ok()
        .inspect(|_| zeroize::Zeroize::zeroize(&mut *bytes))
}

/// Decodes a deal body; the commitment must have degree exactly `t`.
pub(crate) fn decode_deal(body: &Body, config: &CeremonyConfig) -> Result<DecodedDeal, Malformed> {
    let Body::Deal {
        commitment, shares, ..
    } = body
    else {
        return Err(Malformed::Undecodable {
            field: "body".into(),
        });
    };
    let n = config.n();
    if shares.len() != n {
        return Err(Malformed::WrongLength {
            field: "shares".into(),
            len: shares.len(),
            expected: n,
        });
    }
    let bytes = hex::decode(commitment).map_err(|_| Malformed::Undecodable {
        field: "commitment".into(),
    })?;
    let expected_len = (config.threshold + 1) * blsttc::PK_SIZE;
    if bytes.len() != expected_len {
        return Err(Malformed::WrongLength {
            field: "commitment bytes".into(),
            len: bytes.len(),
            expected: expected_len,
        });
    }
    let commitment = Commitment::from_bytes(bytes).map_err(|_| Malformed::Undecodable {
        field: "commitment".into(),
    })?;
    let mut decoded = Vec::with_capacity(n);
    for s in shares {
        decoded.push(match s {
            None => None,
            Some(h) => Some(
                hex::decode(h)
                    .ok()
                    .filter(|b| b.len() == CIPHERTEXT_BYTES)
                    .ok_or(Malformed::Undecodable {
                        field: "shares".into(),
                    })?,
            ),
        });
    }
    Ok(DecodedDeal {
        commitment,
        shares: decoded,
    })
}
