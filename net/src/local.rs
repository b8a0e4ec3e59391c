//! Clusters on loopback for tests, benchmarks and local tools: fresh identities, sockets
//! bound to `127.0.0.1:0` first so every address is known before any replica starts.

use crate::config::{Limits, Member, NetConfig, Timing};
use crate::identity::{generate_member_identity, IdentityError, Validity};
use notary_consensus::ReplicaId;
use std::net::UdpSocket;

/// Protocol version used by [`loopback_cluster`].
pub const LOCAL_PROTOCOL_VERSION: u16 = 1;

/// `n` member configurations (ids `0..n`) and their bound sockets, in id order.
pub fn loopback_cluster(
    cluster_id: &str,
    n: u16,
) -> Result<Vec<(NetConfig, UdpSocket)>, IdentityError> {
    let mut identities = Vec::new();
    let mut sockets = Vec::new();
    let mut members = Vec::new();
    for i in 0..n {
        let id = ReplicaId(i);
        let identity = generate_member_identity(cluster_id, id, Validity::long_lived())?;
        let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| IdentityError::Pem {
            what: "loopback socket",
            detail: e.to_string(),
        })?;
        let addr = socket.local_addr().map_err(|e| IdentityError::Pem {
            what: "loopback socket address",
            detail: e.to_string(),
        })?;
        members.push(Member {
            id,
            addr: addr.to_string(),
            fingerprint: identity.fingerprint()?,
        });
        identities.push(identity);
        sockets.push((socket, addr));
    }
    Ok(identities
        .into_iter()
        .zip(sockets)
        .enumerate()
        .map(|(i, (identity, (socket, addr)))| {
            let config = NetConfig {
                me: ReplicaId(i as u16),
                listen: addr,
                cluster_id: cluster_id.to_owned(),
                protocol_version: LOCAL_PROTOCOL_VERSION,
                identity,
                members: members.clone(),
                limits: Limits::default(),
                timing: Timing::default(),
                rng_seed: i as u64,
            };
            (config, socket)
        })
        .collect())
}
