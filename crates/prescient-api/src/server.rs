//! Starting and stopping the server: its own tokio runtime on a background
//! thread, HTTP or (with `api.tls_cert` and `api.tls_key`) HTTPS.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use prescient_agent::config::Config;
use prescient_agent::control::ControlHandle;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::ApiError;
use crate::state::AppState;

/// Tokio worker threads of the server's runtime.
pub const WORKER_THREADS: usize = 2;

/// How long open connections get to finish at shutdown before they are cut.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A running server. Stops (gracefully) on [`Server::shutdown`] or drop.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    tls: bool,
    handle: Handle,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// The address it listens on (the port chosen when `api.listen` asked
    /// for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR` or `https://ADDR`.
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.addr
        )
    }

    /// Stops accepting connections, lets those open finish their requests
    /// (up to [`SHUTDOWN_GRACE`]), and waits for the server's thread.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.handle.graceful_shutdown(Some(SHUTDOWN_GRACE));
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            log::warn!("the API server's thread panicked");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts the server of `config.api` on a background thread, reading the
/// store at `config.store.path` and the loop through `control`. Logs
/// `API listening on http://ADDR` (https with TLS).
pub fn serve(config: &Config, control: ControlHandle) -> Result<Server, ApiError> {
    serve_state(AppState::new(config, control)?)
}

/// Like [`serve`], with a state made by the caller (tests adjust it).
pub fn serve_state(state: AppState) -> Result<Server, ApiError> {
    let api = &state.config.api;
    let listen = api.listen.clone();
    let addr: SocketAddr = listen.parse().map_err(|e| ApiError::Listen {
        addr: listen.clone(),
        reason: format!("not an address: {e}"),
    })?;
    let tls = match (&api.tls_cert, &api.tls_key) {
        (Some(cert), Some(key)) => Some(tls_config(cert, key)?),
        (None, None) => None,
        _ => {
            return Err(ApiError::Config(
                "api.tls_cert and api.tls_key go together: set both or neither".into(),
            ));
        }
    };
    let listener = std::net::TcpListener::bind(addr).map_err(|e| ApiError::Listen {
        addr: listen.clone(),
        reason: e.to_string(),
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|e| ApiError::Listen {
            addr: listen.clone(),
            reason: e.to_string(),
        })?;
    let local = listener.local_addr().map_err(|e| ApiError::Listen {
        addr: listen,
        reason: e.to_string(),
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .thread_name("prescient-api")
        .enable_all()
        .build()
        .map_err(|e| ApiError::Runtime(e.to_string()))?;
    let handle = Handle::new();
    let app = crate::router(state).into_make_service_with_connect_info::<SocketAddr>();
    let is_tls = tls.is_some();
    let server_handle = handle.clone();
    let thread = std::thread::Builder::new()
        .name("prescient-api".into())
        .spawn(move || {
            let served = runtime.block_on(async move {
                match tls {
                    Some(tls) => {
                        axum_server::from_tcp_rustls(listener, RustlsConfig::from_config(tls))
                            .handle(server_handle)
                            .serve(app)
                            .await
                    }
                    None => {
                        axum_server::from_tcp(listener)
                            .handle(server_handle)
                            .serve(app)
                            .await
                    }
                }
            });
            if let Err(e) = served {
                log::error!("API server stopped: {e}");
            }
            // Whatever is left (a connection past the grace period) is cut.
            runtime.shutdown_timeout(Duration::from_millis(100));
        })
        .map_err(|e| ApiError::Runtime(e.to_string()))?;
    let server = Server {
        addr: local,
        tls: is_tls,
        handle,
        thread: Some(thread),
    };
    log::info!("API listening on {}", server.url());
    Ok(server)
}

/// A rustls server configuration from PEM files (ring as the provider,
/// HTTP/1.1 and HTTP/2 by ALPN).
fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, ApiError> {
    let bad = |k: &'static str, p: &Path, reason: String| ApiError::Tls {
        key: k,
        path: p.to_path_buf(),
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad("api.tls_cert", cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad("api.tls_cert", cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(bad(
            "api.tls_cert",
            cert,
            "no PEM certificate in the file".into(),
        ));
    }
    let private =
        PrivateKeyDer::from_pem_file(key).map_err(|e| bad("api.tls_key", key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ApiError::Runtime(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, private)
        .map_err(|e| bad("api.tls_key", key, e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
