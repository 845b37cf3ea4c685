//! Alert notifications to a webhook: a JSON POST per alert that fires or
//! resolves, sent from a background thread so the loop never waits on the
//! network, retried with exponential backoff on connection errors, 429 and
//! 5xx, and dropped with a log line after the configured attempts (or at
//! once on another 4xx: the receiver refuses it and will go on refusing).
//!
//! The body:
//!
//! ```json
//! {"status": "firing", "host": "web-01", "alert": {"id": "hot/host/cpu", "rule": "hot",
//!  "severity": "warning", "state": "firing", "subject": "host/cpu",
//!  "message": "...", "since": 1700000000000, "resolved_at": null}}
//! ```

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;

use crate::control::{AlertState, AlertView};

/// Notifications queued beyond this are dropped (with a log line): a
/// receiver that is down must not make the agent's memory grow.
pub const QUEUE: usize = 1024;

/// The longest wait between two tries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// One notification's body.
#[derive(Debug, Clone, Serialize)]
pub struct Notification {
    /// `firing` or `resolved`.
    pub status: AlertState,
    /// The agent's host.
    pub host: String,
    /// The alert.
    pub alert: AlertView,
}

/// How to send.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// The URL.
    pub url: String,
    /// Tries per notification.
    pub attempts: u32,
    /// The first wait between tries (doubled after each).
    pub backoff: Duration,
    /// The time one try may take.
    pub timeout: Duration,
}

/// What happened to a notification (for the log and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Delivered after this many tries.
    Delivered {
        /// The alert's id.
        id: String,
        /// Tries it took.
        attempts: u32,
    },
    /// Given up.
    Dropped {
        /// The alert's id.
        id: String,
        /// Why.
        reason: String,
    },
}

/// Sends notifications from a background thread. Dropping it sends what is
/// queued (each with its tries) and then stops the thread.
pub struct WebhookSender {
    tx: Option<SyncSender<Notification>>,
    thread: Option<JoinHandle<()>>,
}

impl WebhookSender {
    /// Starts the sending thread. `report` is called (on that thread) with
    /// the outcome of each notification.
    pub fn start(
        config: WebhookConfig,
        report: impl Fn(Delivery) + Send + 'static,
    ) -> std::io::Result<WebhookSender> {
        WebhookSender::start_with_sleeper(config, report, std::thread::sleep)
    }

    /// Like [`WebhookSender::start`], with `sleep` doing the waits between
    /// tries (the sending thread calls it with each wait: a test passes one
    /// that records the waits instead of sleeping).
    pub fn start_with_sleeper(
        config: WebhookConfig,
        report: impl Fn(Delivery) + Send + 'static,
        mut sleep: impl FnMut(Duration) + Send + 'static,
    ) -> std::io::Result<WebhookSender> {
        let (tx, rx) = sync_channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name("prescient-webhook".into())
            .spawn(move || send_all(&config, &rx, &report, &mut sleep))?;
        Ok(WebhookSender {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queues a notification; `false` (and a log line) when the queue is
    /// full.
    pub fn send(&self, n: Notification) -> bool {
        let Some(tx) = &self.tx else { return false };
        match tx.try_send(n) {
            Ok(()) => true,
            Err(TrySendError::Full(n)) => {
                log::error!(
                    "alert webhook: {QUEUE} notifications waiting; dropped the one for {}",
                    n.alert.id
                );
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }
}

impl Drop for WebhookSender {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn send_all(
    config: &WebhookConfig,
    rx: &Receiver<Notification>,
    report: &dyn Fn(Delivery),
    sleep: &mut dyn FnMut(Duration),
) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(config.timeout))
        .http_status_as_error(false)
        .build()
        .into();
    while let Ok(n) = rx.recv() {
        let outcome = deliver(&agent, config, &n, sleep);
        match &outcome {
            Delivery::Delivered { .. } => {}
            Delivery::Dropped { id, reason } => {
                log::error!("alert webhook {}: gave up on {id}: {reason}", config.url)
            }
        }
        report(outcome);
    }
}

/// One notification, with its tries: the waits between them (through
/// `sleep`) start at `config.backoff` and double, up to [`MAX_BACKOFF`].
fn deliver(
    agent: &ureq::Agent,
    config: &WebhookConfig,
    n: &Notification,
    sleep: &mut dyn FnMut(Duration),
) -> Delivery {
    let id = n.alert.id.clone();
    let body = match serde_json::to_string(n) {
        Ok(b) => b,
        Err(e) => {
            return Delivery::Dropped {
                id,
                reason: format!("could not encode it: {e}"),
            };
        }
    };
    let mut wait = config.backoff;
    let attempts = config.attempts.max(1);
    let mut last = String::new();
    for attempt in 1..=attempts {
        let result = agent
            .post(&config.url)
            .header("content-type", "application/json")
            .send(body.as_str());
        let retry = match result {
            Ok(resp) => {
                let status = resp.status().as_u16();
                if (200..300).contains(&status) {
                    return Delivery::Delivered {
                        id,
                        attempts: attempt,
                    };
                }
                last = format!("HTTP {status}");
                status == 429 || status >= 500
            }
            Err(e) => {
                last = e.to_string();
                true
            }
        };
        if !retry {
            return Delivery::Dropped {
                id,
                reason: format!("the receiver refused it ({last})"),
            };
        }
        if attempt < attempts {
            log::warn!(
                "alert webhook {}: try {attempt} of {attempts} for {id} failed ({last}); next in {wait:?}",
                config.url
            );
            sleep(wait);
            wait = (wait * 2).min(MAX_BACKOFF);
        }
    }
    Delivery::Dropped {
        id,
        reason: format!("{attempts} tries failed, the last with {last}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex, mpsc};

    /// A local HTTP receiver: answers the i-th request with `statuses[i]`
    /// (200 after the list), and keeps the bodies.
    fn receiver(statuses: Vec<u16>) -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&bodies);
        std::thread::spawn(move || {
            for (i, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { return };
                let mut r = BufReader::new(stream.try_clone().unwrap());
                let mut len = 0;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let l = line.to_ascii_lowercase();
                    if let Some(v) = l.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; len];
                let _ = r.read_exact(&mut body);
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&body).into());
                let status = statuses.get(i).copied().unwrap_or(200);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
            }
        });
        (url, bodies)
    }

    fn note(id: &str, state: AlertState) -> Notification {
        Notification {
            status: state,
            host: "h".into(),
            alert: AlertView {
                id: id.into(),
                state,
                ..AlertView::default()
            },
        }
    }

    fn sender(url: &str, attempts: u32) -> (WebhookSender, mpsc::Receiver<Delivery>) {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let s = WebhookSender::start(
            WebhookConfig {
                url: url.into(),
                attempts,
                backoff: Duration::from_millis(5),
                timeout: Duration::from_secs(5),
            },
            move |d| {
                let _ = tx.lock().unwrap().send(d);
            },
        )
        .unwrap();
        (s, rx)
    }

    #[test]
    fn retries_server_errors_then_delivers_the_json() {
        let (url, bodies) = receiver(vec![500, 503]);
        let (s, rx) = sender(&url, 5);
        assert!(s.send(note("hot/host/cpu", AlertState::Firing)));
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(30)).unwrap(),
            Delivery::Delivered {
                id: "hot/host/cpu".into(),
                attempts: 3
            }
        );
        let b = bodies.lock().unwrap().clone();
        assert_eq!(b.len(), 3);
        let v: serde_json::Value = serde_json::from_str(&b[2]).unwrap();
        assert_eq!(v["status"], "firing");
        assert_eq!(v["alert"]["id"], "hot/host/cpu");
        assert_eq!(v["host"], "h");
    }

    #[test]
    fn gives_up_after_the_attempts_and_at_once_on_a_client_error() {
        let (url, bodies) = receiver(vec![500, 500, 500, 400]);
        let (s, rx) = sender(&url, 3);
        s.send(note("a", AlertState::Firing));
        s.send(note("a", AlertState::Resolved));
        let first = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert!(
            matches!(&first, Delivery::Dropped { reason, .. } if reason.contains("3 tries") && reason.contains("500")),
            "{first:?}"
        );
        let second = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert!(
            matches!(&second, Delivery::Dropped { reason, .. } if reason.contains("refused") && reason.contains("400")),
            "{second:?}"
        );
        drop(s);
        assert_eq!(bodies.lock().unwrap().len(), 4);
    }

    /// A sender whose waits between tries are recorded, not slept.
    fn recording_sender(
        url: &str,
        attempts: u32,
        backoff: Duration,
    ) -> (
        WebhookSender,
        mpsc::Receiver<Delivery>,
        Arc<Mutex<Vec<Duration>>>,
    ) {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let waits = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&waits);
        let s = WebhookSender::start_with_sleeper(
            WebhookConfig {
                url: url.into(),
                attempts,
                backoff,
                timeout: Duration::from_secs(5),
            },
            move |d| {
                let _ = tx.lock().unwrap().send(d);
            },
            move |wait| recorded.lock().unwrap().push(wait),
        )
        .unwrap();
        (s, rx, waits)
    }

    #[test]
    fn the_waits_between_tries_double_up_to_the_cap_and_none_follows_the_last() {
        // Waits of 100 s doubling would pass MAX_BACKOFF (300 s) at the
        // third: capped from there. Nothing really sleeps.
        assert_eq!(MAX_BACKOFF, Duration::from_secs(300));
        let (url, bodies) = receiver(vec![500; 6]);
        let (s, rx, waits) = recording_sender(&url, 6, Duration::from_secs(100));
        s.send(note("slow", AlertState::Firing));
        let d = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert!(
            matches!(&d, Delivery::Dropped { reason, .. } if reason.contains("6 tries")),
            "{d:?}"
        );
        let secs: Vec<u64> = waits
            .lock()
            .unwrap()
            .iter()
            .map(Duration::as_secs)
            .collect();
        assert_eq!(
            secs,
            [100, 200, 300, 300, 300],
            "five waits between six tries"
        );
        assert_eq!(bodies.lock().unwrap().len(), 6);

        // A delivery after two failures waited twice, doubling from the
        // start; the next notification starts from the first wait again,
        // and a refusal (4xx) is not retried, so it waits for nothing.
        let (url, _) = receiver(vec![503, 429, 200, 404]);
        let (s, rx, waits) = recording_sender(&url, 5, Duration::from_millis(250));
        s.send(note("a", AlertState::Firing));
        s.send(note("b", AlertState::Firing));
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(30)).unwrap(),
            Delivery::Delivered {
                id: "a".into(),
                attempts: 3
            }
        );
        let d = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert!(
            matches!(&d, Delivery::Dropped { id, reason } if id == "b" && reason.contains("404")),
            "{d:?}"
        );
        let ms: Vec<u128> = waits
            .lock()
            .unwrap()
            .iter()
            .map(Duration::as_millis)
            .collect();
        assert_eq!(ms, [250, 500]);
    }

    #[test]
    fn an_unreachable_receiver_is_dropped_after_its_tries() {
        // A port nobody listens on: bind, note it, close.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (s, rx) = sender(&format!("http://127.0.0.1:{port}/x"), 2);
        s.send(note("b", AlertState::Firing));
        let d = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert!(
            matches!(&d, Delivery::Dropped { id, reason } if id == "b" && reason.contains("2 tries")),
            "{d:?}"
        );
    }
}
