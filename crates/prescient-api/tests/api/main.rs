//! The REST API end to end: a real server on loopback, a real HTTP client,
//! a temp store and a thread standing in for the agent loop.

mod fixture;

// A real agent replaying a sample trace behind the server (config.rs).
#[path = "../dashboard_support/mod.rs"]
mod dashboard_support;

mod access;
mod audit;
mod config;
mod input;
mod openapi;
mod series;
mod writes;
