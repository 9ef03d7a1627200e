//! HTTP routes, one module per audience.

pub mod admin;
pub mod health;
