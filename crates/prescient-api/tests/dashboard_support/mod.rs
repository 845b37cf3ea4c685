//! What the dashboard test and bench (and the API's configuration test)
//! share: a real agent replaying a committed sample trace with the API
//! server in front of it, a
//! chromedriver child process, and a headless Chromium session driven
//! through it. Every process started here is ended by its guard's `Drop`,
//! by pid, even when a test fails.

#![allow(dead_code)] // each user takes what it needs

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use prescient_agent::config::{Config, Role, TokenConfig};
use prescient_agent::control::{Control, ControlHandle, LiveView};
use prescient_agent::replay::{ReplayError, ReplayOptions};
use prescient_agent::{ConfigSource, RunSummary, Signals};
use prescient_api::Server;

/// The operator token configured on the server.
pub const OPERATOR_TOKEN: &str = "dashboard-test-operator-token";

/// The admin token configured on the server (named `root`).
pub const ADMIN_TOKEN: &str = "dashboard-test-admin-token";

/// The chromedriver binary (`PRESCIENT_CHROMEDRIVER` overrides).
pub fn chromedriver_bin() -> PathBuf {
    std::env::var_os("PRESCIENT_CHROMEDRIVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/usr/bin/chromedriver".into())
}

/// The Chromium binary (`PRESCIENT_CHROMIUM` overrides).
pub fn chromium_bin() -> PathBuf {
    std::env::var_os("PRESCIENT_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/usr/bin/chromium".into())
}

/// A committed sample trace.
pub fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/sample")
        .join(name)
}

/// The workspace's target directory (where the screenshot goes).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}

/// A port free on loopback now (the kernel's choice for port 0).
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Polls `f` every 50 ms until it gives `Some`, or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A chromedriver child process on a free loopback port. Dropping it asks
/// chromedriver to shut down (which quits the browsers it started), then
/// kills it by pid if it is still there.
pub struct Chromedriver {
    child: Child,
    port: u16,
}

impl Chromedriver {
    /// Starts chromedriver and waits until it accepts connections.
    pub fn start() -> Result<Chromedriver, String> {
        let bin = chromedriver_bin();
        let port = free_port().map_err(|e| format!("finding a free port: {e}"))?;
        let child = Command::new(&bin)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        let mut driver = Chromedriver { child, port };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let up = wait_for(Duration::from_secs(20), || {
            if let Ok(Some(status)) = driver.child.try_wait() {
                return Some(Err(format!("chromedriver exited at start: {status}")));
            }
            TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                .ok()
                .map(|_| Ok(()))
        });
        match up {
            Some(Ok(())) => Ok(driver),
            Some(Err(e)) => Err(e),
            None => {
                driver.stop();
                Err(format!(
                    "chromedriver did not listen on port {port} within 20 s"
                ))
            }
        }
    }

    /// Its WebDriver URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // chromedriver's own shutdown ends the sessions (and so the
        // browsers) it started; a kill alone would orphan them.
        if let Ok(mut s) = TcpStream::connect_timeout(
            &SocketAddr::from(([127, 0, 0, 1], self.port)),
            Duration::from_secs(1),
        ) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = s.write_all(
                b"GET /shutdown HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
            );
            let _ = s.read_to_end(&mut Vec::new());
        }
        let exited = wait_for(Duration::from_secs(5), || {
            self.child.try_wait().ok().flatten().map(|_| ())
        });
        if exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A headless Chromium session through `driver`, with its profile in
/// `profile` (a temporary directory the caller owns).
pub async fn browser(driver: &Chromedriver, profile: &Path) -> Result<Client, String> {
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), "chrome".into());
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium_bin(),
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--disable-extensions",
                "--window-size=1280,1500",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url())
        .await
        .map_err(|e| format!("starting a Chromium session through {}: {e}", driver.url()))
}

/// A real agent replaying a sample trace on a thread, with the API server
/// (an operator token, `ops`, and an admin token, `root`, configured) in
/// front of it. Dropping it stops the
/// server, then the agent, and removes its store.
pub struct Live {
    /// The server.
    pub server: Option<Server>,
    /// The loop's view, as the server sees it.
    pub handle: ControlHandle,
    signals: Signals,
    agent: Option<JoinHandle<Result<RunSummary, ReplayError>>>,
    /// Holds the store.
    pub dir: tempfile::TempDir,
}

impl Live {
    /// Replays `max_workloads` workloads of `trace` at `speed`, waits until
    /// the loop has made `plans` plans, then starts the server.
    pub fn start(trace: &str, max_workloads: usize, speed: f64, plans: u64) -> Live {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut config = Config::default();
        config.store.path = dir.path().join("prescient.db");
        config.api.enabled = true;
        config.api.listen = "127.0.0.1:0".into();
        config.api.tokens = vec![
            TokenConfig {
                name: "ops".into(),
                role: Role::Operator,
                sha256: prescient_api::hash_token(OPERATOR_TOKEN),
            },
            TokenConfig {
                name: "root".into(),
                role: Role::Admin,
                sha256: prescient_api::hash_token(ADMIN_TOKEN),
            },
        ];
        let (handle, port) = Control::new();
        let signals = Signals::new();
        let path = sample(trace);
        let options = ReplayOptions {
            speed,
            max_workloads: Some(max_workloads),
            ..ReplayOptions::default()
        };
        let agent = {
            let signals = signals.clone();
            let source = ConfigSource::Fixed(config.clone());
            std::thread::spawn(move || {
                prescient_agent::replay::run(&source, &path, &options, &signals, Some(port))
            })
        };
        let mut live = Live {
            server: None,
            handle,
            signals,
            agent: Some(agent),
            dir,
        };
        let made = wait_for(Duration::from_secs(120), || {
            let v = live.handle.view();
            (v.counters.plans >= plans && !v.workloads.is_empty()).then_some(())
        });
        if made.is_none() {
            let why = live.stop_agent();
            panic!("the replay made no {plans} plans within 120 s: {why}");
        }
        // The agent made the store; the server opens its own connections.
        let server = prescient_api::serve(&config, live.handle.clone())
            .unwrap_or_else(|e| panic!("starting the API server: {e}"));
        live.server = Some(server);
        live
    }

    /// The server's base URL.
    pub fn url(&self) -> String {
        self.server.as_ref().map(Server::url).unwrap_or_default()
    }

    /// The loop's latest view.
    pub fn view(&self) -> std::sync::Arc<LiveView> {
        self.handle.view()
    }

    /// Stops the agent and says how its run ended.
    pub fn stop_agent(&mut self) -> String {
        self.signals.stop();
        match self.agent.take().map(JoinHandle::join) {
            Some(Ok(Ok(s))) => format!(
                "stopped after {} plans, {} samples",
                s.counters.plans, s.counters.samples
            ),
            Some(Ok(Err(e))) => format!("the replay failed: {e}"),
            Some(Err(_)) => "the replay thread panicked".into(),
            None => "already stopped".into(),
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        drop(self.server.take());
        self.stop_agent();
    }
}

/// Loads `url` in `client` and waits for the page's ready marker; returns
/// the time to interactive: navigation start to the `prescient-ready`
/// mark, in ms, as the page's `performance` timeline measured it.
pub async fn load_and_measure(client: &Client, url: &str) -> Result<f64, String> {
    client
        .goto(url)
        .await
        .map_err(|e| format!("loading {url}: {e}"))?;
    client
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(fantoccini::Locator::Css("html[data-ready='true']"))
        .await
        .map_err(|e| format!("{url}: the page never became ready: {e}"))?;
    let v = client
        .execute(
            "const m = performance.getEntriesByName('prescient-ready', 'mark');\
             return m.length ? m[0].startTime : null;",
            vec![],
        )
        .await
        .map_err(|e| format!("reading the ready mark: {e}"))?;
    v.as_f64()
        .ok_or_else(|| format!("no prescient-ready mark on {url} (got {v})"))
}
