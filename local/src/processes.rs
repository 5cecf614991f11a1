//! Replicas of a service running as processes of its built binary, which a rehearsal may
//! kill -9 and start again on the same port with the same settings. Killed when dropped.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The replicas of one service (`presale` or `idp`), each `BINARY serve` with its own
/// environment and port.
#[derive(Clone, Default)]
pub struct Processes(Arc<Mutex<Vec<Process>>>);

pub(crate) struct Process {
    child: testkit::servers::Child,
    pub command: PathBuf,
    pub env: Vec<(String, String)>,
    pub port: u16,
    /// Holds the files the process reads (the storefronts file).
    _dir: Option<Arc<testkit::servers::TempDir>>,
}

impl Process {
    pub fn new(
        command: PathBuf,
        env: Vec<(String, String)>,
        port: u16,
        dir: Option<Arc<testkit::servers::TempDir>>,
    ) -> Self {
        Self {
            command,
            env,
            port,
            child: testkit::servers::Child::default(),
            _dir: dir,
        }
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let child = std::process::Command::new(&self.command)
            .arg("serve")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(std::process::Stdio::null())
            .spawn()?;
        self.child.set(child);
        Ok(())
    }

    fn kill(&mut self) {
        self.child.kill();
    }
}

impl Processes {
    fn lock(&self) -> MutexGuard<'_, Vec<Process>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where each replica listens.
    pub fn addrs(&self) -> Vec<std::net::SocketAddr> {
        self.lock()
            .iter()
            .map(|p| ([127, 0, 0, 1], p.port).into())
            .collect()
    }

    /// Adds a replica and starts it (without waiting for it: [`Processes::ready`]).
    pub(crate) fn spawn(&self, mut p: Process) -> std::io::Result<()> {
        p.spawn()?;
        self.lock().push(p);
        Ok(())
    }

    /// kill -9 of replica `i`: gone at once, with whatever it had in flight.
    pub fn crash(&self, i: usize) -> anyhow::Result<()> {
        let mut g = self.lock();
        let p = g
            .get_mut(i)
            .ok_or_else(|| anyhow::anyhow!("no replica {i}"))?;
        p.kill();
        Ok(())
    }

    /// Starts replica `i` again (same port, same settings) and waits until it is ready.
    pub async fn start(&self, i: usize) -> anyhow::Result<()> {
        let port = {
            let mut g = self.lock();
            let p = g
                .get_mut(i)
                .ok_or_else(|| anyhow::anyhow!("no replica {i}"))?;
            p.kill();
            p.spawn()?;
            p.port
        };
        ready(port).await
    }

    /// Waits until every replica is ready.
    pub async fn ready(&self) -> anyhow::Result<()> {
        let ports: Vec<u16> = self.lock().iter().map(|p| p.port).collect();
        for port in ports {
            ready(port).await?;
        }
        Ok(())
    }

    pub(crate) fn kill_all(&self) {
        for p in self.lock().iter_mut() {
            p.kill();
        }
    }
}

/// Waits up to 30 s for a replica's `/readyz` to answer 200.
async fn ready(port: u16) -> anyhow::Result<()> {
    let url = format!("http://127.0.0.1:{port}/readyz");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get(&url).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the replica on port {port} was not ready within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
