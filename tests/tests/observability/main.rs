//! Observability and fair use, against the real server (ADR 0018): rate limits per token and per
//! address with their headers, `GET /metrics` read by a Prometheus text parser, and request logs
//! that carry the route template and never a secret.

mod logs;
mod metrics;
mod rate_limits;
