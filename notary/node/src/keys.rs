//! The replica's key files: the ed25519 consensus key and the BLS key share.
//!
//! Every private file is written and read through [`notary_net::keyfile`]: created with mode
//! 0600, refused when group or others can read it. Secrets are never logged; the share file
//! says where the share came from (`dealer` for development clusters, `dkg` from a ceremony),
//! and `notaryd start` refuses dealer shares unless the cluster file says `development = true`.

use std::path::Path;

use anyhow::{bail, Context, Result};
use blsttc::{PublicKeySet, SecretKeySet, SecretKeyShare};
use ed25519_dalek::SigningKey;
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};

use crate::config::ClusterFile;

/// Makes a directory that holds private keys unreadable by group and others.
pub fn restrict_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict {}", dir.display()))
}

/// A fresh ed25519 key from the operating system's RNG.
pub fn generate_consensus_key() -> SigningKey {
    SigningKey::generate(&mut OsRng)
}

/// Writes an ed25519 key (its 32-byte seed, hex) to a private file.
pub fn write_consensus_key(path: &Path, key: &SigningKey) -> Result<()> {
    notary_net::keyfile::write_private(path, hex::encode(key.to_bytes()).as_bytes())?;
    Ok(())
}

/// Reads an ed25519 key written by [`write_consensus_key`] (or a ledger node's key).
pub fn read_consensus_key(path: &Path) -> Result<SigningKey> {
    let bytes = notary_net::keyfile::read_private(path)?;
    let text = String::from_utf8_lossy(&bytes);
    let seed: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .with_context(|| format!("{}: not a 64-hex-character ed25519 seed", path.display()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// A dealer's key set with threshold `f`: signatures need f+1 shares.
pub fn deal(f: usize, rng: &mut OsRng) -> SecretKeySet {
    SecretKeySet::random(f, rng)
}

/// The cluster's BLS public key set from the cluster file.
pub fn public_key_set(cluster: &ClusterFile) -> Result<PublicKeySet> {
    if cluster.bls_public_key_set.is_empty() {
        bail!(
            "cluster file: bls_public_key_set is missing; run the key ceremony (`notaryd dkg \
             online` or `notaryd dkg offline`) and put the key set it prints into the cluster file"
        );
    }
    let bytes = hex::decode(&cluster.bls_public_key_set)
        .context("cluster file: bls_public_key_set is not hex")?;
    PublicKeySet::from_bytes(bytes)
        .map_err(|e| anyhow::anyhow!("cluster file: bls_public_key_set does not decode: {e}"))
}

/// Where a BLS key share came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyOrigin {
    /// `notaryd testnet`'s dealer, which knew the whole key: development only.
    Dealer,
    /// A distributed key generation ceremony: nobody ever held the whole key.
    Dkg,
}

/// The contents of `keys/bls.share`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlsShareFile {
    /// The replica id (the share's index in the key set).
    pub index: u16,
    /// Where it came from.
    pub origin: KeyOrigin,
    /// The secret key share, hex (32 bytes). Never logged.
    pub share: String,
}

impl BlsShareFile {
    /// The file for share `index`.
    pub fn new(index: u16, share: &SecretKeyShare, origin: KeyOrigin) -> Self {
        Self {
            index,
            origin,
            share: hex::encode(share.to_bytes()),
        }
    }

    /// Writes it with mode 0600.
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut text =
            String::from("# This replica's BLS secret key share. Never share or log it.\n");
        if self.origin == KeyOrigin::Dealer {
            text.push_str(
                "# DEVELOPMENT KEY: dealt by `notaryd testnet`, whose dealer knew the whole\n\
                 # cluster key. `notaryd start` refuses it unless the cluster is a development one.\n",
            );
        }
        text.push_str(&toml::to_string(self)?);
        notary_net::keyfile::write_private(path, text.as_bytes())?;
        Ok(())
    }

    /// Reads it, refusing a file others can read.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = notary_net::keyfile::read_private(path)?;
        let text =
            String::from_utf8(bytes).with_context(|| format!("{}: not UTF-8", path.display()))?;
        toml::from_str(&text).with_context(|| format!("{}: not a BLS share file", path.display()))
    }

    /// The secret share.
    pub fn secret(&self) -> Result<SecretKeyShare> {
        let bytes: [u8; 32] = hex::decode(&self.share)
            .ok()
            .and_then(|b| b.try_into().ok())
            .context("bls.share: share is not 64 hex characters")?;
        SecretKeyShare::from_bytes(bytes).map_err(|e| anyhow::anyhow!("bls.share: {e}"))
    }

    /// Checks that this share belongs to replica `id` of the key set, and that a dealer's
    /// share is only used by a development cluster.
    pub fn check_against(&self, set: &PublicKeySet, id: u16, development: bool) -> Result<()> {
        if self.index != id {
            bail!("bls.share is share {} but this replica is {id}", self.index);
        }
        if self.origin == KeyOrigin::Dealer && !development {
            bail!(
                "bls.share came from a dealer (notaryd testnet), which knew the whole cluster key; \
                 a production cluster needs keys from the DKG ceremony (or set development = true \
                 in the cluster file for a development cluster)"
            );
        }
        if self.secret()?.public_key_share() != set.public_key_share(usize::from(id)) {
            bail!("bls.share does not match public key share {id} of the cluster file's key set");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dealt() -> (SecretKeySet, BlsShareFile) {
        let set = deal(1, &mut OsRng);
        let file = BlsShareFile::new(1, &set.secret_key_share(1), KeyOrigin::Dealer);
        (set, file)
    }

    #[test]
    fn dealer_shares_are_refused_unless_the_cluster_is_a_development_one() {
        let (set, dealer) = dealt();
        let err = dealer
            .check_against(&set.public_keys(), 1, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("dealer"), "{err}");
        dealer.check_against(&set.public_keys(), 1, true).unwrap();
        let dkg = BlsShareFile::new(1, &set.secret_key_share(1), KeyOrigin::Dkg);
        dkg.check_against(&set.public_keys(), 1, false).unwrap();
    }

    #[test]
    fn a_cluster_file_without_a_key_set_is_refused_with_a_pointer_to_the_ceremony() {
        let text = r#"
cluster_id = "c"
protocol_version = 1
members = []
"#;
        let cluster: ClusterFile = toml::from_str(text).unwrap();
        assert!(cluster.bls_public_key_set.is_empty());
        let err = public_key_set(&cluster).unwrap_err().to_string();
        assert!(err.contains("notaryd dkg"), "{err}");
    }
}
