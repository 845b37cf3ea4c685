//! One module per subcommand.

pub mod agent;
pub mod api;
pub mod backtest;
pub mod config;
pub mod demo;
pub mod import;
pub mod kube;
pub mod loadgen;
pub mod plan;
pub mod replay;
pub mod status;
