//! One module per subcommand.

pub mod backtest;
pub mod import;
pub mod plan;
pub mod replay;
