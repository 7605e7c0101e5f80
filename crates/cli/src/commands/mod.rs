//! The gateway-side command groups: one module each, sharing [`applied`] (waiting
//! until every running server applies a change) and [`table`] (terminal output).

pub mod admin;
pub mod alerts;
pub mod applied;
pub mod audit;
pub mod config;
pub mod keys;
pub mod serve;
pub mod table;
pub mod token;
pub mod usage;
pub mod vault;
