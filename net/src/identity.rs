//! Member identities: generating a certificate and key with rcgen, the pinned fingerprint,
//! and PEM/DER loading.
//!
//! **Pinning choice:** a member is pinned by the SHA-256 of its certificate's
//! SubjectPublicKeyInfo (hex, 64 characters). Pinning the key rather than the whole certificate
//! lets an agency renew an expiring certificate with the same key without a change to the
//! shared cluster file; expiry itself is still enforced on every handshake.

use crate::x509;
use notary_consensus::ReplicaId;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// SHA-256 of a certificate's SubjectPublicKeyInfo: what the cluster file pins.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// Parses 64 hex characters (either case; `:` separators allowed).
    pub fn from_hex(s: &str) -> Result<Self, IdentityError> {
        let clean: Vec<u8> = s.bytes().filter(|b| *b != b':').collect();
        let bad = || IdentityError::BadFingerprint { text: s.to_owned() };
        if clean.len() != 64 {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, pair) in clean.chunks(2).enumerate() {
            let hex = std::str::from_utf8(pair).map_err(|_| bad())?;
            out[i] = u8::from_str_radix(hex, 16).map_err(|_| bad())?;
        }
        Ok(Self(out))
    }

    /// Lower-case hex, 64 characters.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The fingerprint of a DER certificate's public key.
    pub fn of_certificate(cert_der: &[u8]) -> Result<Self, IdentityError> {
        let info = x509::parse_certificate(cert_der)?;
        Ok(Self(Sha256::digest(info.spki_der).into()))
    }
}

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fingerprint({})", self.to_hex())
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// An identity could not be generated, parsed or loaded.
#[derive(Debug, Error)]
pub enum IdentityError {
    /// Not 64 hex characters.
    #[error("fingerprint {text:?} is not 64 hex characters (SHA-256 of the SubjectPublicKeyInfo)")]
    BadFingerprint {
        /// The text given.
        text: String,
    },
    /// The certificate DER could not be read.
    #[error("certificate: {0}")]
    Certificate(#[from] x509::X509Error),
    /// No PEM item of the expected kind.
    #[error("PEM: no {what} found: {detail}")]
    Pem {
        /// Certificate or private key.
        what: &'static str,
        /// The parser's message.
        detail: String,
    },
    /// rcgen failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
}

/// A member's own certificate and private key (DER, PKCS#8 / SEC1 / PKCS#1 key).
#[derive(Clone)]
pub struct Identity {
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// The private key, DER.
    pub key_der: Vec<u8>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("cert_der_bytes", &self.cert_der.len())
            .field("key_der", &"<redacted>")
            .finish()
    }
}

impl Identity {
    /// Loads a PEM certificate and a PEM private key.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, IdentityError> {
        let cert = CertificateDer::from_pem_slice(cert_pem).map_err(|e| IdentityError::Pem {
            what: "certificate",
            detail: e.to_string(),
        })?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| IdentityError::Pem {
            what: "private key",
            detail: e.to_string(),
        })?;
        Ok(Self {
            cert_der: cert.to_vec(),
            key_der: key.secret_der().to_vec(),
        })
    }

    /// The certificate as PEM.
    pub fn cert_pem(&self) -> String {
        pem("CERTIFICATE", &self.cert_der)
    }

    /// The private key as PEM (PKCS#8).
    pub fn key_pem(&self) -> String {
        pem("PRIVATE KEY", &self.key_der)
    }

    /// The pinned fingerprint of this identity.
    pub fn fingerprint(&self) -> Result<Fingerprint, IdentityError> {
        Fingerprint::of_certificate(&self.cert_der)
    }

    /// The certificate's notAfter, unix seconds.
    pub fn not_after_unix(&self) -> Result<i64, IdentityError> {
        Ok(x509::parse_certificate(&self.cert_der)?.not_after_unix)
    }

    pub(crate) fn private_key(&self) -> PrivateKeyDer<'static> {
        match PrivateKeyDer::try_from(self.key_der.clone()) {
            Ok(key) => key,
            // Unrecognised DER: hand it to rustls as PKCS#8, which reports the real error.
            Err(_) => PrivateKeyDer::Pkcs8(self.key_der.clone().into()),
        }
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::with_capacity(der.len() * 4 / 3 + 4);
    for chunk in der.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 output is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The subject common name a generated member certificate carries; a certificate that is not
/// pinned but bears this name is reported as a look-alike rather than merely unknown.
pub fn member_common_name(cluster_id: &str, id: ReplicaId) -> String {
    format!("notary replica {} of {}", id.0, cluster_id)
}

/// The DNS name in a generated member certificate and the TLS server name dialers use.
pub fn member_server_name(id: ReplicaId) -> String {
    format!("replica-{}.notary", id.0)
}

/// Parses the replica id out of [`member_server_name`].
pub(crate) fn replica_of_server_name(name: &str) -> Option<ReplicaId> {
    name.strip_prefix("replica-")?
        .strip_suffix(".notary")?
        .parse()
        .ok()
        .map(ReplicaId)
}

/// Validity window of a generated certificate, in calendar years (from 1 January).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// First year of validity.
    pub from_year: i32,
    /// Validity ends on 1 January of this year.
    pub until_year: i32,
}

impl Validity {
    /// From last year to 30 years on: long-lived, since the pin (not a CA) carries the trust.
    pub fn long_lived() -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let year = x509::year_of_unix(now) as i32;
        Self {
            from_year: year - 1,
            until_year: year + 30,
        }
    }
}

/// Generates a self-signed member certificate (ECDSA P-256) naming the replica and cluster.
pub fn generate_member_identity(
    cluster_id: &str,
    id: ReplicaId,
    validity: Validity,
) -> Result<Identity, IdentityError> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(vec![member_server_name(id)])?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        member_common_name(cluster_id, id),
    );
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, cluster_id);
    params.not_before = rcgen::date_time_ymd(validity.from_year, 1, 1);
    params.not_after = rcgen::date_time_ymd(validity.until_year, 1, 1);
    let cert = params.self_signed(&key)?;
    Ok(Identity {
        cert_der: cert.der().to_vec(),
        key_der: key.serialize_der(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_identity_round_trips_through_pem_and_keeps_its_fingerprint() {
        let id = generate_member_identity("c1", ReplicaId(2), Validity::long_lived()).expect("gen");
        let back = Identity::from_pem(id.cert_pem().as_bytes(), id.key_pem().as_bytes())
            .expect("pem parses");
        assert_eq!(back.cert_der, id.cert_der);
        assert_eq!(back.key_der, id.key_der);
        let fp = id.fingerprint().expect("fp");
        assert_eq!(Fingerprint::from_hex(&fp.to_hex()).expect("hex"), fp);
        let info = x509::parse_certificate(&id.cert_der).expect("parse");
        assert_eq!(
            info.common_name.as_deref(),
            Some(member_common_name("c1", ReplicaId(2)).as_str())
        );
        assert!(info.not_after_unix > info.not_before_unix);
    }

    #[test]
    fn fingerprint_is_of_the_key_so_renewal_keeps_it() {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = |year| {
            let mut p = rcgen::CertificateParams::new(vec!["a".into()]).expect("params");
            p.not_after = rcgen::date_time_ymd(year, 1, 1);
            p.self_signed(&key).expect("sign").der().to_vec()
        };
        let (old, new) = (cert(2030), cert(2040));
        assert_ne!(old, new);
        assert_eq!(
            Fingerprint::of_certificate(&old).expect("fp"),
            Fingerprint::of_certificate(&new).expect("fp")
        );
    }

    #[test]
    fn server_name_encodes_the_replica() {
        assert_eq!(
            replica_of_server_name(&member_server_name(ReplicaId(7))),
            Some(ReplicaId(7))
        );
        assert_eq!(replica_of_server_name("replica-x.notary"), None);
        assert!(Fingerprint::from_hex("abc").is_err());
    }
}
