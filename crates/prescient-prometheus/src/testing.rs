//! A real Prometheus on loopback, for tests (the `testing` feature).
//!
//! [`Prometheus::start`] writes a configuration that scrapes one target
//! every second into a temporary directory, runs `/usr/bin/prometheus`
//! (or `$PRESCIENT_PROMETHEUS_BIN`) with its storage there, listening on a
//! free loopback port, and waits until it is ready. Dropping it kills the
//! child by its pid, waits for it, and removes the directory, also when a
//! test panics.

use std::fs;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::Client;

/// How long Prometheus may take to become ready.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// A running Prometheus, killed when dropped.
#[derive(Debug)]
pub struct Prometheus {
    child: Child,
    url: String,
    log: PathBuf,
    // Dropped after `child` is killed (see Drop): holds the config, the
    // TSDB and the log.
    dir: tempfile::TempDir,
}

/// A free TCP port on 127.0.0.1 (free when this returns; another process
/// could take it before it is used, which [`Prometheus::start`] survives
/// by trying another).
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The wall clock, Unix ms.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The Prometheus binary: `$PRESCIENT_PROMETHEUS_BIN`, else
/// `/usr/bin/prometheus`, else `prometheus` on the PATH.
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("PRESCIENT_PROMETHEUS_BIN") {
        return PathBuf::from(p);
    }
    let usr = Path::new("/usr/bin/prometheus");
    if usr.exists() {
        usr.to_path_buf()
    } else {
        PathBuf::from("prometheus")
    }
}

/// What a [`Prometheus`] scrapes, every second.
#[derive(Debug, Clone)]
pub struct Scrape {
    /// The job name (the `job` label of its series).
    pub job: String,
    /// The target's address.
    pub target: SocketAddr,
    /// The path of its metrics (`/metrics`).
    pub metrics_path: String,
    /// A bearer token to send (`Authorization: Bearer …`).
    pub bearer_token: Option<String>,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` (`metrics_path` on it, as job
    /// `job`) every second, and waits until it is ready.
    pub fn start(job: &str, target: SocketAddr, metrics_path: &str) -> io::Result<Prometheus> {
        Self::start_scraping(&Scrape {
            job: job.to_string(),
            target,
            metrics_path: metrics_path.to_string(),
            bearer_token: None,
        })
    }

    /// Starts Prometheus scraping as `scrape` says, and waits until it is
    /// ready.
    pub fn start_scraping(scrape: &Scrape) -> io::Result<Prometheus> {
        let mut last_err = None;
        // The port may be taken between choosing and binding it: try a
        // few.
        for _ in 0..3 {
            match Self::start_once(scrape) {
                Ok(p) => return Ok(p),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| io::Error::other("prometheus did not start")))
    }

    fn start_once(scrape: &Scrape) -> io::Result<Prometheus> {
        let dir = tempfile::Builder::new()
            .prefix("prescient-prometheus-")
            .tempdir()?;
        let config = dir.path().join("prometheus.yml");
        // JSON is YAML: serde_json quotes the strings safely.
        let q = |s: &str| serde_json::Value::from(s).to_string();
        let mut yaml = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: {}\n    metrics_path: {}\n    static_configs:\n      - targets: [{}]\n",
            q(&scrape.job),
            q(&scrape.metrics_path),
            q(&scrape.target.to_string()),
        );
        if let Some(token) = &scrape.bearer_token {
            yaml.push_str(&format!(
                "    authorization:\n      type: Bearer\n      credentials: {}\n",
                q(token)
            ));
        }
        fs::write(&config, yaml)?;
        let port = free_port()?;
        let log = dir.path().join("prometheus.log");
        let out = fs::File::create(&log)?;
        let err = out.try_clone()?;
        let bin = binary();
        let child = Command::new(&bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("running {}: {e}", bin.display())))?;
        let mut p = Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
            dir,
        };
        p.wait_ready()?;
        Ok(p)
    }

    fn wait_ready(&mut self) -> io::Result<()> {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(2)))
            .build()
            .new_agent();
        let ready = format!("{}/-/ready", self.url);
        let until = Instant::now() + READY_WITHIN;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(io::Error::other(format!(
                    "prometheus exited ({status}) before it was ready; its log:\n{}",
                    self.log_text()
                )));
            }
            if let Ok(r) = agent.get(&ready).call()
                && r.status() == 200
            {
                return Ok(());
            }
            if Instant::now() > until {
                return Err(io::Error::other(format!(
                    "prometheus was not ready at {ready} within {READY_WITHIN:?}; its log:\n{}",
                    self.log_text()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Its base URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A client of it.
    pub fn client(&self) -> Client {
        Client::new(&self.url).expect("the URL made by start is an http URL")
    }

    /// Its directory (configuration, data, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What it logged so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_else(|e| format!("(cannot read the log: {e})"))
    }

    /// Calls `check` every 200 ms until it gives `Some`, or fails after
    /// `within` with `what` and Prometheus's log.
    pub fn wait_until<T>(
        &self,
        within: Duration,
        what: &str,
        mut check: impl FnMut(&Client) -> Option<T>,
    ) -> Result<T, String> {
        let client = self.client();
        let until = Instant::now() + within;
        loop {
            if let Some(t) = check(&client) {
                return Ok(t);
            }
            if Instant::now() > until {
                return Err(format!(
                    "{what}: not within {within:?}; prometheus's log:\n{}",
                    self.log_text()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        // Kills this child by its pid (SIGKILL), then reaps it; the
        // TempDir field is removed after this.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An answer of a [`TinyServer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// The `Content-Type`.
    pub content_type: String,
    /// The body.
    pub body: String,
}

impl Reply {
    /// A reply with `status`, `content_type` and `body`.
    pub fn new(status: u16, content_type: &str, body: impl Into<String>) -> Reply {
        Reply {
            status,
            content_type: content_type.to_string(),
            body: body.into(),
        }
    }
}

type Handler = dyn Fn(&str) -> Reply + Send + Sync + 'static;

/// A minimal HTTP/1.1 server on loopback for tests: every request's target
/// (path and query string) goes to a handler, whose [`Reply`] is sent back
/// with `Connection: close`. Stopped (and its thread joined) when dropped.
#[derive(Debug)]
pub struct TinyServer {
    addr: SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TinyServer {
    /// Serves `handler` on a free port of 127.0.0.1.
    pub fn start(
        handler: impl Fn(&str) -> Reply + Send + Sync + 'static,
    ) -> io::Result<TinyServer> {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                // One request per connection, answered in order: enough for
                // a scraper and a client under test.
                let _ = answer(conn, &*handler);
            }
        });
        Ok(TinyServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// An exporter: serves `body()` as Prometheus text exposition at
    /// `/metrics` (with any query string), a 404 at any other target.
    pub fn exporter(body: impl Fn() -> String + Send + Sync + 'static) -> io::Result<TinyServer> {
        TinyServer::start(move |target| {
            if !target.starts_with("/metrics") {
                return Reply::new(404, "text/plain", "not found");
            }
            Reply::new(200, "text/plain; version=0.0.4", body())
        })
    }

    /// An exporter of gauge `metric` with one series per `(labels,
    /// factor)` of `series` (`labels` as written between the braces, say
    /// `series="a"`): at a scrape at `ts` (Unix ms), the series' sample is
    /// `factor * value(ts)` stamped with `ts`, so that Prometheus stores
    /// exactly `(ts, factor * value(ts))`.
    pub fn timestamped_gauge(
        metric: &str,
        series: &[(&str, f64)],
        value: fn(i64) -> f64,
    ) -> io::Result<TinyServer> {
        let metric = metric.to_string();
        let series: Vec<(String, f64)> = series.iter().map(|&(l, k)| (l.to_string(), k)).collect();
        TinyServer::exporter(move || {
            let ts = now_ms();
            let v = value(ts);
            let mut text = format!("# TYPE {metric} gauge\n");
            for (labels, k) in &series {
                text.push_str(&format!("{metric}{{{labels}}} {} {ts}\n", k * v));
            }
            text
        })
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its base URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn answer(mut conn: std::net::TcpStream, handler: &Handler) -> io::Result<()> {
    use std::io::{BufRead, BufReader, Write};
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Skip the headers (a GET has no body).
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let target = request_line.split_whitespace().nth(1).unwrap_or("/");
    let reply = handler(target);
    let reason = match reply.status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        503 => "Service Unavailable",
        _ => "Status",
    };
    write!(
        conn,
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        reply.status,
        reply.content_type,
        reply.body.len(),
        reply.body
    )?;
    conn.flush()
}

impl Drop for TinyServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = std::net::TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
