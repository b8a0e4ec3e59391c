//! Stateless checks, run by the replica that receives a request, before consensus: malformed,
//! unknown cluster, requester not permitted, bad signature, in that order. The only way to get a
//! [`VerifiedRequest`] is to pass them. Pure functions of (policy, request): callable from any
//! thread, and deterministic, so every replica that re-checks a request agrees.

use std::collections::HashMap;

use notary_types::ed25519_dalek::{self, Signature, Verifier as _, VerifyingKey};
use notary_types::{ClusterId, MalformedRequest, NotarisationRequest, RequestDigest, RequesterKey};
use sha2::{Digest as _, Sha256};
use thiserror::Error;

/// Who may ask this cluster for notarisations: the cluster id and the permitted requester keys
/// (from the cluster file). Built once at start-up.
#[derive(Debug, Clone)]
pub struct ClusterPolicy {
    cluster_id: ClusterId,
    permitted: HashMap<RequesterKey, VerifyingKey>,
}

/// A permitted requester key in the cluster file is unusable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("requester key {key} in the cluster file is not a valid, strong ed25519 key")]
pub struct InvalidRequesterKey {
    /// The key refused.
    pub key: RequesterKey,
}

impl ClusterPolicy {
    /// Validates every permitted key (refusing invalid and small-order keys).
    pub fn new(
        cluster_id: ClusterId,
        permitted: impl IntoIterator<Item = RequesterKey>,
    ) -> Result<Self, InvalidRequesterKey> {
        let permitted = permitted
            .into_iter()
            .map(|key| match VerifyingKey::from_bytes(&key.0) {
                Ok(vk) if !vk.is_weak() => Ok((key, vk)),
                _ => Err(InvalidRequesterKey { key }),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            cluster_id,
            permitted,
        })
    }
    /// The cluster's id.
    pub fn cluster_id(&self) -> &ClusterId {
        &self.cluster_id
    }
}

/// Why a request was refused before consensus. Each is final for that request (not retryable
/// without changing it).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Rejection {
    /// Format or limits.
    #[error("malformed request: {0}")]
    Malformed(#[from] MalformedRequest),
    /// Meant for another cluster.
    #[error("request for cluster {got}, this is cluster {expected}")]
    UnknownCluster {
        /// The request's cluster id.
        got: ClusterId,
        /// This cluster's id.
        expected: ClusterId,
    },
    /// The requester key is not on the cluster's list.
    #[error("requester {requester} is not permitted on this cluster")]
    RequesterNotPermitted {
        /// The requester's key.
        requester: RequesterKey,
    },
    /// The signature does not verify.
    #[error("the requester's signature does not verify (requester {requester})")]
    SignatureInvalid {
        /// The requester's key.
        requester: RequesterKey,
    },
}

/// A request that passed every stateless check, with its digest computed once. Only
/// [`check`], [`check_batch`], [`check_wire`] and (for requests f + 1 replicas verified)
/// [`check_attested`] construct it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRequest {
    request: NotarisationRequest,
    digest: RequestDigest,
}

impl VerifiedRequest {
    /// The request.
    pub fn request(&self) -> &NotarisationRequest {
        &self.request
    }
    /// SHA-256 of its canonical bytes.
    pub fn digest(&self) -> RequestDigest {
        self.digest
    }
    /// Gives the request back.
    pub fn into_request(self) -> NotarisationRequest {
        self.request
    }
}

/// Everything but the signature; returns the key and the canonical bytes to verify.
fn precheck<'p>(
    policy: &'p ClusterPolicy,
    request: &NotarisationRequest,
) -> Result<(&'p VerifyingKey, Vec<u8>), Rejection> {
    let fields = &request.fields;
    fields.check_well_formed()?;
    if fields.cluster_id != policy.cluster_id {
        return Err(Rejection::UnknownCluster {
            got: fields.cluster_id.clone(),
            expected: policy.cluster_id.clone(),
        });
    }
    let key = policy
        .permitted
        .get(&fields.requester)
        .ok_or(Rejection::RequesterNotPermitted {
            requester: fields.requester,
        })?;
    Ok((key, fields.canonical_bytes()))
}

fn verified(request: NotarisationRequest, canonical: &[u8]) -> VerifiedRequest {
    VerifiedRequest {
        request,
        digest: RequestDigest(Sha256::digest(canonical).into()),
    }
}

/// Every stateless check but the signature: well-formed, this cluster, a permitted requester.
/// For a replica that admits requests at once and verifies their signatures later, in
/// batches ([`check_batch`]), which is also what every peer runs on the batch.
pub fn check_unsigned(
    policy: &ClusterPolicy,
    request: &NotarisationRequest,
) -> Result<(), Rejection> {
    precheck(policy, request).map(|_| ())
}

/// Runs every stateless check on one request.
pub fn check(
    policy: &ClusterPolicy,
    request: NotarisationRequest,
) -> Result<VerifiedRequest, Rejection> {
    let (key, canonical) = precheck(policy, &request)?;
    let sig = Signature::from_bytes(&request.signature.0);
    key.verify(&canonical, &sig)
        .map_err(|_| Rejection::SignatureInvalid {
            requester: request.fields.requester,
        })?;
    Ok(verified(request, &canonical))
}

/// Every stateless check but the signature, for a request of a batch that f + 1 replicas
/// attest they checked in full (node's `attest.rs`): at least one of them is honest, and an
/// honest replica attests only to requests whose signatures it verified. Never call it for a
/// request nobody verified.
pub fn check_attested(
    policy: &ClusterPolicy,
    request: NotarisationRequest,
) -> Result<VerifiedRequest, Rejection> {
    let (_, canonical) = precheck(policy, &request)?;
    Ok(verified(request, &canonical))
}

/// Decodes wire bytes and runs every stateless check.
pub fn check_wire(policy: &ClusterPolicy, bytes: &[u8]) -> Result<VerifiedRequest, Rejection> {
    check(policy, NotarisationRequest::from_wire_bytes(bytes)?)
}

/// Runs every stateless check on many requests, verifying the signatures of those that pass the
/// other checks in one ed25519 batch; if the batch fails, each is verified alone so that exactly
/// the bad signatures are refused. Results are in input order.
pub fn check_batch(
    policy: &ClusterPolicy,
    requests: Vec<NotarisationRequest>,
) -> Vec<Result<VerifiedRequest, Rejection>> {
    let mut results: Vec<Option<Result<VerifiedRequest, Rejection>>> =
        Vec::with_capacity(requests.len());
    let mut pending: Vec<(usize, NotarisationRequest, VerifyingKey, Vec<u8>)> = Vec::new();
    for (i, request) in requests.into_iter().enumerate() {
        match precheck(policy, &request) {
            Ok((key, canonical)) => {
                results.push(None);
                pending.push((i, request, *key, canonical));
            }
            Err(rejection) => results.push(Some(Err(rejection))),
        }
    }
    let messages: Vec<&[u8]> = pending.iter().map(|p| p.3.as_slice()).collect();
    let signatures: Vec<Signature> = pending
        .iter()
        .map(|p| Signature::from_bytes(&p.1.signature.0))
        .collect();
    let keys: Vec<VerifyingKey> = pending.iter().map(|p| p.2).collect();
    let batch_ok =
        !pending.is_empty() && ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok();
    for (k, (i, request, key, canonical)) in pending.into_iter().enumerate() {
        let ok = batch_ok || key.verify(&canonical, &signatures[k]).is_ok();
        results[i] = Some(if ok {
            Ok(verified(request, &canonical))
        } else {
            Err(Rejection::SignatureInvalid {
                requester: request.fields.requester,
            })
        });
    }
    results
        .into_iter()
        .map(|r| r.expect("every position was filled by a precheck failure or a signature check"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use notary_types::{RequestFields, StateRef, TxId};

    fn key(b: u8) -> SigningKey {
        SigningKey::from_bytes(&[b; 32])
    }

    fn policy() -> ClusterPolicy {
        ClusterPolicy::new(
            ClusterId::new("wooden-dollars").unwrap(),
            [RequesterKey(key(1).verifying_key().to_bytes())],
        )
        .unwrap()
    }

    fn request(tx: u8, signer: &SigningKey) -> NotarisationRequest {
        NotarisationRequest::sign(
            RequestFields {
                cluster_id: ClusterId::new("wooden-dollars").unwrap(),
                tx_id: TxId([tx; 32]),
                inputs: vec![StateRef {
                    tx_id: TxId([0; 32]),
                    index: u32::from(tx),
                }],
                references: vec![],
                time_window: None,
                requester: RequesterKey([0; 32]),
            },
            signer,
        )
    }

    fn forged_for_attested(good: &NotarisationRequest) -> NotarisationRequest {
        let mut forged = good.clone();
        forged.signature.0[0] ^= 1;
        forged
    }

    #[test]
    fn each_stateless_rejection_in_order() {
        let p = policy();
        let good = request(1, &key(1));
        let v = check(&p, good.clone()).unwrap();
        assert_eq!(v.digest(), good.fields.digest());

        let mut malformed = good.clone();
        malformed.fields.inputs.push(malformed.fields.inputs[0]);
        assert!(matches!(check(&p, malformed), Err(Rejection::Malformed(_))));

        let mut other_cluster = good.clone();
        other_cluster.fields.cluster_id = ClusterId::new("other").unwrap();
        assert!(matches!(
            check(&p, other_cluster),
            Err(Rejection::UnknownCluster { .. })
        ));

        let stranger = request(1, &key(2));
        assert!(matches!(
            check(&p, stranger),
            Err(Rejection::RequesterNotPermitted { .. })
        ));

        let mut forged = good.clone();
        forged.signature.0[0] ^= 1;
        assert!(matches!(
            check(&p, forged),
            Err(Rejection::SignatureInvalid { .. })
        ));

        // An attested request skips only the signature: the rest is checked as before.
        assert_eq!(check_attested(&p, good.clone()).unwrap(), v);
        assert!(check_attested(&p, forged_for_attested(&good)).is_ok());
        assert!(matches!(
            check_attested(&p, request(1, &key(2))),
            Err(Rejection::RequesterNotPermitted { .. })
        ));

        assert_eq!(check_wire(&p, &good.to_wire_bytes()).unwrap(), v);
        assert!(matches!(
            check_wire(&p, &[1, 2, 3]),
            Err(Rejection::Malformed(_))
        ));
    }

    #[test]
    fn batch_attributes_exactly_the_bad_signature() {
        let p = policy();
        let mut batch: Vec<NotarisationRequest> = (0..10).map(|t| request(t, &key(1))).collect();
        batch[3].signature.0[5] ^= 0x40;
        batch[7] = request(7, &key(2));
        let results = check_batch(&p, batch.clone());
        for (i, r) in results.iter().enumerate() {
            match i {
                3 => assert!(matches!(r, Err(Rejection::SignatureInvalid { .. }))),
                7 => assert!(matches!(r, Err(Rejection::RequesterNotPermitted { .. }))),
                _ => assert_eq!(r.as_ref().unwrap().request(), &batch[i]),
            }
        }
        let all_good: Vec<_> = (0..4).map(|t| request(t, &key(1))).collect();
        assert!(check_batch(&p, all_good).iter().all(Result::is_ok));
        assert!(check_batch(&p, vec![]).is_empty());
    }

    #[test]
    fn weak_permitted_keys_are_refused_at_start_up() {
        let identity = RequesterKey({
            let mut b = [0u8; 32];
            b[0] = 1;
            b
        });
        assert!(ClusterPolicy::new(ClusterId::new("x").unwrap(), [identity]).is_err());
    }
}
