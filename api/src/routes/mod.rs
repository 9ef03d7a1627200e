//! HTTP routes, one module per audience.

pub mod admin;
pub mod audit;
pub mod client;
pub mod health;
pub mod offline;
