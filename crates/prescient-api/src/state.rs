//! What every handler shares: the control handle, the configuration, a
//! small pool of store connections, and the rate limiter.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prescient_agent::config::Config;
use prescient_agent::control::ControlHandle;
use prescient_store::Store;
use tokio::sync::Semaphore;

use crate::auth::{KnownToken, RateLimiter, known_tokens};
use crate::error::ApiError;
use crate::series::AllocationCache;

/// Store connections open at most at once: queries run on tokio's blocking
/// threads, one connection each; more callers wait for a free one.
pub const STORE_CONNECTIONS: usize = 4;

/// The server's shared state (cheap to clone).
#[derive(Clone)]
pub struct AppState {
    /// The agent loop: its latest view, and commands.
    pub control: ControlHandle,
    /// The configuration the server was started with.
    pub config: Arc<Config>,
    store: Arc<StorePool>,
    pub(crate) limiter: Arc<RateLimiter>,
    pub(crate) tokens: Arc<Vec<KnownToken>>,
    pub(crate) allocations: Arc<Mutex<AllocationCache>>,
    /// How long a write waits for the loop's answer before a 503.
    pub reply_timeout: Duration,
}

/// The default of [`AppState::reply_timeout`]: the loop answers within one
/// pass (a sample interval, 1 s by default).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("store", &self.store.path)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// State for `config`, reading the store at `config.store.path` (one
    /// connection is opened now, so a store that cannot be opened is an
    /// error here rather than at the first request).
    pub fn new(config: &Config, control: ControlHandle) -> Result<AppState, ApiError> {
        let tokens = known_tokens(&config.api.tokens)?;
        let pool = StorePool::new(&config.store.path, STORE_CONNECTIONS)?;
        Ok(AppState {
            control,
            tokens: Arc::new(tokens),
            allocations: Arc::new(Mutex::new(AllocationCache::default())),
            reply_timeout: REPLY_TIMEOUT,
            limiter: Arc::new(RateLimiter::new(config.api.rate_limit)),
            config: Arc::new(config.clone()),
            store: Arc::new(pool),
        })
    }

    /// The largest request body accepted, bytes (`api.max_body`).
    pub fn max_body(&self) -> usize {
        usize::try_from(self.config.api.max_body.0).unwrap_or(usize::MAX)
    }

    /// Runs `f` on a store connection, on a blocking thread.
    pub async fn with_store<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, ApiError> + Send + 'static,
    {
        self.with_store_mut(move |s| f(s)).await
    }

    /// Runs `f` on a store connection that it may write through, on a
    /// blocking thread.
    pub async fn with_store_mut<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Store) -> Result<T, ApiError> + Send + 'static,
    {
        let pool = Arc::clone(&self.store);
        let _permit = self
            .store
            .permits
            .acquire()
            .await
            .map_err(|e| ApiError::Internal(format!("store pool closed: {e}")))?;
        let task = tokio::task::spawn_blocking(move || {
            let mut store = pool.take()?;
            let out = f(&mut store);
            pool.give_back(store);
            out
        });
        task.await
            .map_err(|e| ApiError::Internal(format!("store query failed: {e}")))?
    }
}

/// Idle store connections, and permits bounding how many are in use.
struct StorePool {
    path: PathBuf,
    idle: Mutex<Vec<Store>>,
    permits: Semaphore,
}

impl StorePool {
    fn new(path: &Path, size: usize) -> Result<StorePool, ApiError> {
        let first = Store::open(path)?;
        Ok(StorePool {
            path: path.to_path_buf(),
            idle: Mutex::new(vec![first]),
            permits: Semaphore::new(size),
        })
    }

    /// An idle connection, or a new one (the permit held by the caller
    /// bounds how many exist).
    fn take(&self) -> Result<Store, ApiError> {
        let idle = match self.idle.lock() {
            Ok(mut idle) => idle.pop(),
            Err(poisoned) => poisoned.into_inner().pop(),
        };
        match idle {
            Some(s) => Ok(s),
            None => Ok(Store::open(&self.path)?),
        }
    }

    fn give_back(&self, store: Store) {
        match self.idle.lock() {
            Ok(mut idle) => idle.push(store),
            Err(poisoned) => poisoned.into_inner().push(store),
        }
    }
}
