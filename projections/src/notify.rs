//! Waking projectors when events are appended.
//!
//! In the process that appended, the store's append hook bumps a `watch` counter and the local
//! runners wake at once. For other processes, a background task sends `NOTIFY ledger_events` in a
//! transaction of its own, coalescing bursts of appends into one notification.
//!
//! Why not `NOTIFY` from a trigger on `events`: PostgreSQL serializes the commits of every
//! transaction that notifies (a global lock held through the commit's WAL flush), which would
//! throw away group commit and cap concurrent writers at single-writer speed (docs/adr/0003).
//! A lost notification only costs latency: runners also poll.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgPool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The `LISTEN`/`NOTIFY` channel for "new events".
pub const CHANNEL: &str = "ledger_events";

/// The in-process "events were appended" signal.
#[derive(Clone, Debug)]
pub struct ChangeSignal {
    sender: Arc<watch::Sender<u64>>,
}

impl Default for ChangeSignal {
    fn default() -> Self {
        Self::new()
    }
}

impl ChangeSignal {
    /// A new signal.
    pub fn new() -> Self {
        let (sender, _) = watch::channel(0);
        Self {
            sender: Arc::new(sender),
        }
    }

    /// Records that events were appended (cheap; called on every append).
    pub fn bump(&self) {
        self.sender.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver for a projector runner.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.sender.subscribe()
    }

    /// The hook to give `commands::EventStore::with_append_hook`.
    pub fn hook(&self) -> Arc<dyn Fn() + Send + Sync> {
        let signal = self.clone();
        Arc::new(move || signal.bump())
    }

    /// Forwards local appends to other processes as `NOTIFY`, at most one per `coalesce` window,
    /// until cancelled.
    pub async fn forward_to_postgres(
        self,
        pool: PgPool,
        coalesce: Duration,
        shutdown: CancellationToken,
    ) {
        let mut changes = self.subscribe();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = changes.changed() => if changed.is_err() { return },
            }
            if let Err(e) = sqlx::query("SELECT pg_notify($1, '')")
                .bind(CHANNEL)
                .execute(&pool)
                .await
            {
                tracing::warn!(error = %e, "NOTIFY failed; other nodes will poll");
            }
            tokio::time::sleep(coalesce).await;
        }
    }
}
