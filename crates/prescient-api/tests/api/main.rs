//! The REST API end to end: a real server on loopback, a real HTTP client,
//! a temp store and a thread standing in for the agent loop.

mod fixture;

mod access;
mod audit;
mod input;
mod openapi;
mod series;
mod writes;
