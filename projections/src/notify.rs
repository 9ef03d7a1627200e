//! Waking projectors when events are appended.
//!
//! In the process that appended, the store's append hook bumps a `watch` counter and the local
//! runners wake at once. For other processes, a background task sends `NOTIFY ledger_events` in a
//! transaction of its own, coalescing bursts of appends into one notification
//! ([`ChangeSignal::forward_to_postgres`]). Each process has one `LISTEN` connection
//! ([`ChangeSignal::listen`]), which wakes every local runner and the validation follower through
//! the same `watch` counter: a connection per listener would take as many connections as there
//! are projectors, for one piece of news.
//!
//! Two counters, because the forwarder must only forward this process's appends: were it woken
//! by the notifications it receives (its own among them), it would notify forever. And each
//! notification carries the sending process's origin (a UUID drawn at start): the listener skips
//! its own, whose appends already woke the local runners through the hook, so a write wakes each
//! runner once, not twice. (A notification without an origin, from an older node, wakes them.)
//!
//! Why not `NOTIFY` from a trigger on `events`: PostgreSQL serializes the commits of every
//! transaction that notifies (a global lock held through the commit's WAL flush), which would
//! throw away group commit and cap concurrent writers at single-writer speed (docs/adr/0003).
//! A lost notification only costs latency: runners also poll.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The `LISTEN`/`NOTIFY` channel for "new events".
pub const CHANNEL: &str = "ledger_events";

/// The in-process "events were appended" signal.
#[derive(Clone, Debug)]
pub struct ChangeSignal {
    /// Appends by this process (what the forwarder sends on).
    local: Arc<watch::Sender<u64>>,
    /// Appends by any process: this one's and those `NOTIFY` announced (what runners wait for).
    any: Arc<watch::Sender<u64>>,
    /// This process's name in its notifications' payload.
    origin: Arc<str>,
}

impl Default for ChangeSignal {
    fn default() -> Self {
        Self::new()
    }
}

impl ChangeSignal {
    /// A new signal.
    pub fn new() -> Self {
        Self {
            local: Arc::new(watch::channel(0).0),
            any: Arc::new(watch::channel(0).0),
            origin: uuid::Uuid::new_v4().to_string().into(),
        }
    }

    /// Records that this process appended events (cheap; called on every append).
    pub fn bump(&self) {
        self.local.send_modify(|n| *n = n.wrapping_add(1));
        self.announced();
    }

    /// Records that some process appended events (a notification arrived).
    fn announced(&self) {
        self.any.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver for a projector runner or the validation follower: changes on every append of
    /// this process and every notification [`ChangeSignal::listen`] receives.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.any.subscribe()
    }

    /// How many appends this process made or heard of so far (wraps): a reader that remembers
    /// it knows whether anything was appended since.
    pub fn appends(&self) -> u64 {
        *self.any.borrow()
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
        let mut changes = self.local.subscribe();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = changes.changed() => if changed.is_err() { return },
            }
            if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(&*self.origin)
                .execute(&pool)
                .await
            {
                tracing::warn!(error = %e, "NOTIFY failed; other nodes will poll");
            }
            tokio::time::sleep(coalesce).await;
        }
    }

    /// Listens for `NOTIFY ledger_events` on one connection of `pool` until cancelled, and wakes
    /// every subscriber on each that another process sent. A lost connection is taken again (after `retry`), and then
    /// everyone is woken anyway: a notification may have been missed meanwhile.
    pub async fn listen(self, pool: PgPool, retry: Duration, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            match PgListener::connect_with(&pool).await {
                Ok(mut listener) => {
                    if let Err(e) = listener.listen(CHANNEL).await {
                        tracing::warn!(error = %e, "cannot LISTEN; will retry (runners poll meanwhile)");
                    } else {
                        tracing::debug!(
                            channel = CHANNEL,
                            "listening for appends of other processes"
                        );
                        self.announced();
                        loop {
                            tokio::select! {
                                () = shutdown.cancelled() => return,
                                received = listener.try_recv() => match received {
                                    // Our own appends woke the local runners already.
                                    Ok(Some(n)) if n.payload() == &*self.origin => {}
                                    Ok(Some(_)) => self.announced(),
                                    Ok(None) => {
                                        tracing::warn!("LISTEN connection lost; reconnecting");
                                        self.announced();
                                    }
                                    Err(e) => {
                                        tracing::warn!(error = %e, "LISTEN failed; will retry");
                                        break;
                                    }
                                },
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "no connection to LISTEN on; will retry (runners poll meanwhile)");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(retry) => {}
            }
        }
    }
}
