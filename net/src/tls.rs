//! Pinned mutual TLS: rustls verifiers that accept exactly the certificates whose public-key
//! fingerprint the cluster file pins, and the client/server configurations built on them.
//!
//! Invariants: no web PKI and no CA is consulted; a certificate is accepted only if its
//! SubjectPublicKeyInfo hash is pinned, it is inside its validity window, and (on the dialling
//! side) it is pinned for the replica we meant to reach. The handshake signature is still
//! verified with the certificate's key, so presenting someone's certificate without their key
//! fails. Every refusal is counted by reason and logged once.

use crate::config::{NetConfig, ALPN};
use crate::identity::{member_common_name, replica_of_server_name, Fingerprint, Identity};
use crate::stats::{RejectCounters, RejectReason};
use crate::x509;
use notary_consensus::ReplicaId;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The pinned members: fingerprint to replica id, plus the names used to spot look-alikes.
#[derive(Debug)]
pub struct Pins {
    by_fingerprint: BTreeMap<Fingerprint, ReplicaId>,
    names: BTreeMap<String, ReplicaId>,
    rejects: Arc<RejectCounters>,
    me: ReplicaId,
}

impl Pins {
    /// The pins of a configuration, with counters of their own (for tools and tests).
    pub fn for_config(config: &NetConfig) -> Arc<Self> {
        Arc::new(Self::new(config, Arc::default()))
    }

    pub(crate) fn new(config: &NetConfig, rejects: Arc<RejectCounters>) -> Self {
        let mut by_fingerprint = BTreeMap::new();
        let mut names = BTreeMap::new();
        for m in &config.members {
            by_fingerprint.insert(m.fingerprint, m.id);
            names.insert(member_common_name(&config.cluster_id, m.id), m.id);
        }
        let me = config.me;
        Self {
            by_fingerprint,
            names,
            rejects,
            me,
        }
    }

    /// The replica a certificate is pinned for, if any (no validity check).
    pub fn replica_of(&self, cert_der: &[u8]) -> Option<ReplicaId> {
        let fp = Fingerprint::of_certificate(cert_der).ok()?;
        self.by_fingerprint.get(&fp).copied()
    }

    /// Decides whether `cert` may speak as `expected` (or as any member when `None`).
    fn check(
        &self,
        cert: &CertificateDer<'_>,
        expected: Option<ReplicaId>,
        now: UnixTime,
        side: &str,
    ) -> Result<ReplicaId, rustls::Error> {
        let refuse = |reason: RejectReason, detail: String| {
            self.rejects.count(reason);
            tracing::warn!(me = %self.me, %reason, side, "refused peer certificate: {detail}");
            // AccessDenied marks "refused by our verifier, already counted" for the handshake
            // error classifier in `quic`.
            rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
        };
        let info = match x509::parse_certificate(cert) {
            Ok(info) => info,
            Err(e) => return Err(refuse(RejectReason::UnknownCertificate, e.to_string())),
        };
        let fp = Fingerprint(
            sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(
                info.spki_der,
            ))
            .into(),
        );
        let Some(&id) = self.by_fingerprint.get(&fp) else {
            let name = info.common_name.unwrap_or_default();
            return Err(match self.names.get(&name) {
                Some(id) => refuse(
                    RejectReason::LookAlikeCertificate,
                    format!("certificate named {name:?} (replica {id}) has unpinned key {fp}"),
                ),
                None => refuse(
                    RejectReason::UnknownCertificate,
                    format!("key {fp} (name {name:?}) is not pinned in the cluster file"),
                ),
            });
        };
        if let Some(expected) = expected {
            if id != expected {
                return Err(refuse(
                    RejectReason::WrongReplica,
                    format!("expected replica {expected}, certificate is pinned for replica {id}"),
                ));
            }
        }
        let now = now.as_secs() as i64;
        if now < info.not_before_unix || now >= info.not_after_unix {
            return Err(refuse(
                RejectReason::ExpiredCertificate,
                format!(
                    "replica {id}'s certificate is valid from {} to {} (unix s), now is {now}",
                    info.not_before_unix, info.not_after_unix
                ),
            ));
        }
        Ok(id)
    }
}

#[derive(Debug)]
struct PinnedVerifier {
    pins: Arc<Pins>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The dialer names the replica it means to reach in the server name.
        let expected = match server_name {
            ServerName::DnsName(name) => replica_of_server_name(name.as_ref()),
            _ => None,
        };
        let Some(expected) = expected else {
            return Err(rustls::Error::General(format!(
                "server name {server_name:?} names no replica"
            )));
        };
        self.pins.check(end_entity, Some(expected), now, "dial")?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Only TLS 1.3 is enabled (QUIC requires it).
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl ClientCertVerifier for PinnedVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Which replica the client claims is learned from its hello and checked then.
        self.pins.check(end_entity, None, now, "accept")?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ServerCertVerifier::verify_tls12_signature(self, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ServerCertVerifier::verify_tls13_signature(self, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn verifier(pins: Arc<Pins>) -> Arc<PinnedVerifier> {
    Arc::new(PinnedVerifier {
        pins,
        algorithms: provider().signature_verification_algorithms,
    })
}

/// The rustls client configuration of a dialer: our certificate, pinned server verification,
/// TLS 1.3 only, our ALPN. Public so tests can build deliberately wrong peers from it.
pub fn client_config(
    identity: &Identity,
    pins: Arc<Pins>,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier(pins))
        .with_client_auth_cert(
            vec![CertificateDer::from(identity.cert_der.clone())],
            identity.private_key(),
        )?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(config)
}

/// The rustls server configuration of an acceptor: client certificates required and pinned.
pub fn server_config(
    identity: &Identity,
    pins: Arc<Pins>,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier(pins))
        .with_single_cert(
            vec![CertificateDer::from(identity.cert_der.clone())],
            identity.private_key(),
        )?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(config)
}
