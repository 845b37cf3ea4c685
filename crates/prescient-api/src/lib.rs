//! Prescient's HTTP server: the REST API under `/api/v1`, the web
//! dashboard at `/`, and Prometheus metrics at `/metrics`, served from a
//! running agent's [`ControlHandle`](prescient_agent::control::ControlHandle)
//! and its store.

pub mod dashboard;
pub mod metrics;
