//! A cluster of real `notaryd` processes on 127.0.0.1, for the demo and the end-to-end tests.
//!
//! `notaryd testnet` writes every replica's home directory; this module starts, kills
//! (SIGKILL), stops (SIGTERM) and restarts the processes, and waits for `/readyz`;
//! [`LocalCluster::create_with_dkg`] replaces the dealer's keys by a real ceremony's. Dropping a
//! [`LocalCluster`] kills every child it started, so a failing test leaves nothing behind.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Ports of replica `i` in a local cluster with base port `p`: peer `p+i`, API `p+100+i`,
/// admin `p+200+i`.
pub fn ports(base_port: u16, i: usize) -> (u16, u16, u16) {
    let i = i as u16;
    (base_port + i, base_port + 100 + i, base_port + 200 + i)
}

/// Real `notaryd` processes, one per replica home under `dir`.
pub struct LocalCluster {
    notaryd: PathBuf,
    dir: PathBuf,
    n: usize,
    base_port: u16,
    children: Vec<Option<Child>>,
    /// Extra environment for every child (e.g. `RUST_LOG`).
    pub env: Vec<(String, String)>,
}

impl LocalCluster {
    /// Writes a fresh testnet of `n` replicas under `dir` with `notaryd testnet`.
    pub fn create(notaryd: &Path, dir: &Path, n: usize, base_port: u16) -> Result<Self> {
        let status = Command::new(notaryd)
            .arg("testnet")
            .arg("--replicas")
            .arg(n.to_string())
            .arg("--out")
            .arg(dir)
            .arg("--base-port")
            .arg(base_port.to_string())
            .stdout(Stdio::null())
            .status()
            .with_context(|| format!("cannot run {}", notaryd.display()))?;
        if !status.success() {
            bail!("notaryd testnet failed: {status}");
        }
        Ok(Self {
            notaryd: notaryd.to_owned(),
            dir: dir.to_owned(),
            n,
            base_port,
            children: (0..n).map(|_| None).collect(),
            env: Vec::new(),
        })
    }

    /// Like [`LocalCluster::create`], then replaces the dealer's development keys by keys
    /// from a real key ceremony: one `notaryd dkg online` process per replica (their output
    /// goes to `replica-i/dkg.log`), after which every cluster file carries the ceremony's
    /// key set and says `development = false`. Returns the cluster and the ceremony's wall
    /// time (from starting the processes until the last one exited).
    pub fn create_with_dkg(
        notaryd: &Path,
        dir: &Path,
        n: usize,
        base_port: u16,
    ) -> Result<(Self, Duration)> {
        let cluster = Self::create(notaryd, dir, n, base_port)?;
        let mut nonce = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut nonce);
        let session = hex::encode(nonce);
        let started = Instant::now();
        let mut children = Vec::with_capacity(n);
        for i in 0..n {
            let log = std::fs::File::create(cluster.home(i).join("dkg.log"))
                .with_context(|| format!("cannot create the ceremony log of replica {i}"))?;
            let child = Command::new(notaryd)
                .args(["dkg", "online", "--force", "--session", &session])
                .arg("--home")
                .arg(cluster.home(i))
                .args(["--round-timeout", "10s", "--start-timeout", "60s"])
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("cannot start the key ceremony of replica {i}"))?;
            children.push(KillOnDrop(child));
        }
        let deadline = started + Duration::from_secs(120);
        for (i, child) in children.iter_mut().enumerate() {
            let status = loop {
                if let Some(status) = child.0.try_wait()? {
                    break status;
                }
                if Instant::now() > deadline {
                    bail!("the key ceremony of replica {i} did not finish within 120 s");
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            if !status.success() {
                bail!(
                    "the key ceremony failed at replica {i} ({status}); see {}",
                    cluster.home(i).join("dkg.log").display()
                );
            }
        }
        let took = started.elapsed();
        let mut key_set: Option<String> = None;
        for i in 0..n {
            let path = cluster.home(i).join(crate::dkg::TRANSCRIPT_FILE);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let transcript = notary_dkg::Transcript::from_json(&text)
                .with_context(|| format!("{}: not a transcript", path.display()))?;
            let set = transcript
                .public_key_set
                .with_context(|| format!("{}: no key set", path.display()))?;
            match &key_set {
                None => key_set = Some(set),
                Some(first) if *first != set => {
                    bail!("replicas 0 and {i} came out of the ceremony with different key sets")
                }
                Some(_) => {}
            }
        }
        let key_set = key_set.context("a cluster has members")?;
        let mut paths = vec![dir.join("cluster.toml")];
        paths.extend((0..n).map(|i| crate::config::Home::new(cluster.home(i)).cluster_file()));
        for path in paths {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let mut file: crate::config::ClusterFile = toml::from_str(&text)
                .with_context(|| format!("{}: not a cluster file", path.display()))?;
            file.bls_public_key_set = key_set.clone();
            file.development = false;
            let text = format!(
                "# The cluster file: shared byte for byte by every agency of the cluster.\n\
                 # The BLS key set comes from a key ceremony (notaryd dkg online).\n{}",
                toml::to_string(&file).context("cannot encode the cluster file")?
            );
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok((cluster, took))
    }

    /// The number of replicas.
    pub fn n(&self) -> usize {
        self.n
    }

    /// The home directory of replica `i`.
    pub fn home(&self, i: usize) -> PathBuf {
        self.dir.join(format!("replica-{i}"))
    }

    /// The directory `notaryd testnet` wrote (holds `client.key`, `cluster.toml`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The shared cluster file `notaryd testnet` wrote.
    pub fn cluster_file(&self) -> Result<crate::config::ClusterFile> {
        let path = self.dir.join("cluster.toml");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("{} does not parse", path.display()))
    }

    /// A client of every replica that trusts the cluster file's key and retries until
    /// `deadline`.
    pub fn client(&self, deadline: Duration) -> Result<notary_client::Client> {
        let key = crate::keys::public_key_set(&self.cluster_file()?)?.public_key();
        let policy = notary_client::RetryPolicy {
            deadline,
            ..notary_client::RetryPolicy::default()
        };
        Ok(notary_client::Client::new(self.api_urls(), key, policy)?)
    }

    /// The client API base URL of replica `i`.
    pub fn api_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", ports(self.base_port, i).1)
    }

    /// Every replica's client API base URL.
    pub fn api_urls(&self) -> Vec<String> {
        (0..self.n).map(|i| self.api_url(i)).collect()
    }

    /// The admin address of replica `i`.
    pub fn admin_addr(&self, i: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], ports(self.base_port, i).2))
    }

    /// Starts replica `i` (its output goes to `replica-i/notaryd.log`).
    pub fn start(&mut self, i: usize) -> Result<()> {
        if self.is_running(i) {
            return Ok(());
        }
        let home = self.home(i);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(home.join("notaryd.log"))
            .with_context(|| format!("cannot open the log of replica {i}"))?;
        let child = Command::new(&self.notaryd)
            .arg("start")
            .arg("--home")
            .arg(&home)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start replica {i}"))?;
        self.children[i] = Some(child);
        Ok(())
    }

    /// Starts every replica that is not running.
    pub fn start_all(&mut self) -> Result<()> {
        (0..self.n).try_for_each(|i| self.start(i))
    }

    /// Whether replica `i` is a live child process.
    pub fn is_running(&mut self, i: usize) -> bool {
        match self.children[i].as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Kills replica `i` with SIGKILL: no chance to flush anything.
    pub fn kill(&mut self, i: usize) -> Result<()> {
        if let Some(mut c) = self.children[i].take() {
            c.kill().ok();
            c.wait().context("waiting for a killed replica")?;
        }
        Ok(())
    }

    /// Stops replica `i` with SIGTERM and waits up to `timeout` for it to exit; returns its
    /// exit code (or kills it and fails).
    pub fn terminate(&mut self, i: usize, timeout: Duration) -> Result<Option<i32>> {
        let Some(mut c) = self.children[i].take() else {
            return Ok(None);
        };
        Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status()
            .context("cannot run kill")?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = c.try_wait()? {
                return Ok(status.code());
            }
            if Instant::now() > deadline {
                c.kill().ok();
                c.wait().ok();
                bail!("replica {i} did not exit within {timeout:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until replica `i` answers 200 on `/readyz`.
    pub fn wait_ready(&mut self, i: usize, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("no answer yet");
        while Instant::now() < deadline {
            if !self.is_running(i) {
                bail!(
                    "replica {i} exited; the end of {}:\n{}",
                    self.home(i).join("notaryd.log").display(),
                    self.log_tail(i, 10)
                );
            }
            match http_get(self.admin_addr(i), "/readyz") {
                Ok((200, _)) => return Ok(()),
                Ok((code, body)) => last = format!("{code}: {}", body.trim()),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("replica {i} not ready after {timeout:?} ({last})")
    }

    /// The last `lines` lines of replica `i`'s log.
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        let text = std::fs::read_to_string(self.home(i).join("notaryd.log")).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Waits until every running replica is ready.
    pub fn wait_all_ready(&mut self, timeout: Duration) -> Result<()> {
        for i in 0..self.n {
            if self.is_running(i) {
                self.wait_ready(i, timeout)?;
            }
        }
        Ok(())
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for c in self.children.iter_mut().flatten() {
            c.kill().ok();
            c.wait().ok();
        }
    }
}

/// A child process killed when dropped (a ceremony that fails elsewhere leaves nothing behind).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            self.0.kill().ok();
            self.0.wait().ok();
        }
    }
}

/// A minimal blocking HTTP/1.1 GET for loopback health checks: `(status, body)`.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.take(1 << 20).read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no HTTP status line")?;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Ok((code, body))
}
