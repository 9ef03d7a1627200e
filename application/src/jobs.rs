//! The one place the server's background jobs start: [`Jobs::start`]. A job started anywhere
//! else is a job some way of running the server forgets — round 1 shipped a checkpoint signer
//! that `ledger serve` never started. Every job the server needs is a variant of [`Job`];
//! [`Jobs::start`] starts every variant (`Job::iter()`, which the compiler keeps complete, and a
//! `match` that must name each), records what it spawned, and the end-to-end tests hold a server
//! started as `ledger serve` starts it to having started them all.
//!
//! Jobs run until the shared cancellation token is cancelled; [`Jobs::stop`] cancels it and
//! waits for every job (and for what the front end spawned with [`Jobs::spawn`]) to end.
//!
//! Every job's connections come from the jobs pool ([`App::jobs_pool`], sized by
//! [`crate::app::background_connections`]), never from the request pool: an active projector
//! keeps one connection for its session, the [`Job::NotifyListener`] keeps the process's one
//! `LISTEN` connection, and the other jobs (the idempotency pruner among them) take one for a
//! moment. Round 2's projectors and
//! validation follower each held a `LISTEN` connection of the request pool, seven in all, and a
//! server started with `--db-max-connections 5` answered every request 503 (issue #13).

use std::future::Future;
use std::time::Duration;

use domain::event::Actor;
use projections::{ProjectorRunner, RunnerConfig};
use strum::IntoEnumIterator;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::App;

/// Every background job of a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::EnumIter)]
pub enum Job {
    /// One runner per projection keeps its read model current.
    Projectors,
    /// Forwards in-process append signals to `NOTIFY`, for the other nodes.
    NotifyForwarder,
    /// The process's one `LISTEN` connection: wakes the projectors and the validation follower
    /// when another node appends.
    NotifyListener,
    /// Keeps the in-memory validation model following the log.
    ValidationFollower,
    /// Records lapsed floating leases.
    LeaseExpiry,
    /// Picks up `ledger keys rotate|retire` without a restart.
    KeyReload,
    /// Signs checkpoints of the log.
    CheckpointSigner,
    /// Deletes the idempotent answers older than their retention (ADR 0016).
    IdempotencyPruner,
    /// Processes the billing inbox: Stripe events into license facts (ADR 0022). Not a
    /// projection, and never replayed: it causes events, once per Stripe event.
    BillingConsumer,
    /// Writes the validations answered per day and code (`usage`), for the dashboard.
    UsageFlusher,
}

/// How often the jobs run.
#[derive(Clone, Debug)]
pub struct JobsConfig {
    /// How often projectors and the validation follower look for events when no notification
    /// arrives.
    pub projector_poll_interval: Duration,
    /// How often lapsed floating leases are looked for.
    pub lease_check_interval: Duration,
    /// How often the signing keys' list is re-read.
    pub key_reload_interval: Duration,
    /// Sign a checkpoint of the log every this many events…
    pub checkpoint_every_events: usize,
    /// …or this often, when any event is pending.
    pub checkpoint_every: Duration,
    /// How often idempotent answers past their retention are deleted.
    pub idempotency_prune_every: Duration,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            projector_poll_interval: Duration::from_secs(1),
            lease_check_interval: Duration::from_secs(5),
            key_reload_interval: Duration::from_secs(5),
            checkpoint_every_events: 1000,
            checkpoint_every: Duration::from_secs(60),
            idempotency_prune_every: Duration::from_secs(60),
        }
    }
}

/// A chore of the front end run every `every` (e.g. forgetting idle rate-limit buckets): started
/// with the jobs, stopped with them.
pub struct Periodic {
    pub name: &'static str,
    pub every: Duration,
    pub run: Box<dyn Fn() + Send + Sync>,
}

/// The running jobs.
pub struct Jobs {
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
    started: Vec<Job>,
}

impl Jobs {
    /// Starts every [`Job`] for `app`, and the front end's `chores`.
    pub fn start(app: &App, config: &JobsConfig, chores: Vec<Periodic>) -> Self {
        let mut jobs = Self {
            shutdown: CancellationToken::new(),
            tasks: JoinSet::new(),
            started: Vec::new(),
        };
        for job in Job::iter() {
            jobs.start_one(job, app, config);
        }
        for chore in chores {
            tracing::debug!(chore = chore.name, every = ?chore.every, "periodic chore started");
            jobs.every(chore.every, move || (chore.run)());
        }
        jobs
    }

    /// Spawns `job` and records it as started.
    fn start_one(&mut self, job: Job, app: &App, config: &JobsConfig) {
        let token = self.shutdown.clone();
        let pool = app.jobs_pool().clone();
        match job {
            Job::Projectors => {
                for projection in app.projections() {
                    let runner = ProjectorRunner::new(
                        pool.clone(),
                        projection.clone(),
                        app.signal().subscribe(),
                        RunnerConfig {
                            poll_interval: config.projector_poll_interval,
                            ..RunnerConfig::default()
                        },
                    );
                    self.tasks.spawn(runner.run(token.clone()));
                }
            }
            Job::NotifyForwarder => {
                self.tasks.spawn(app.signal().clone().forward_to_postgres(
                    pool,
                    Duration::from_millis(5),
                    token,
                ));
            }
            Job::NotifyListener => {
                self.tasks.spawn(app.signal().clone().listen(
                    pool,
                    config.projector_poll_interval,
                    token,
                ));
            }
            Job::ValidationFollower => {
                self.tasks.spawn(app.validation().clone().follow(
                    pool,
                    app.signal().subscribe(),
                    config.projector_poll_interval,
                    token,
                ));
            }
            Job::LeaseExpiry => {
                self.tasks.spawn(expire_leases(
                    app.clone(),
                    config.lease_check_interval,
                    token,
                ));
            }
            Job::KeyReload => {
                let signing = app.signing().clone();
                self.every(config.key_reload_interval, move || {
                    signing.reload_if_changed();
                });
            }
            Job::CheckpointSigner => {
                self.tasks.spawn(crate::checkpoints::run(
                    app.clone(),
                    config.checkpoint_every_events,
                    config.checkpoint_every,
                    token,
                ));
            }
            Job::BillingConsumer => {
                self.tasks.spawn(consume_billing(
                    app.clone(),
                    config.projector_poll_interval,
                    token,
                ));
            }
            Job::UsageFlusher => {
                self.tasks.spawn(flush_usage(app.clone(), token));
            }
            Job::IdempotencyPruner => {
                self.tasks.spawn(prune_idempotency(
                    pool,
                    app.idempotency().retention(),
                    config.idempotency_prune_every,
                    token,
                ));
            }
        }
        self.started.push(job);
    }

    /// Runs `f` every `interval` until shutdown.
    fn every(&mut self, interval: Duration, f: impl Fn() + Send + 'static) {
        let token = self.shutdown.clone();
        self.tasks.spawn(async move {
            loop {
                tokio::select! {
                    () = token.cancelled() => return,
                    () = tokio::time::sleep(interval) => f(),
                }
            }
        });
    }

    /// The jobs started, in the order they started.
    pub fn started(&self) -> &[Job] {
        &self.started
    }

    /// Runs a task of the front end (its listener) alongside the jobs, stopped with them.
    pub fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }

    /// A token cancelled when the jobs begin to stop.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Cancels every job and waits for all of them.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
    }

    /// Waits until every job has ended (after [`Jobs::shutdown_token`] was cancelled).
    pub async fn wait(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Writes the validation counts every [`crate::usage::FLUSH_EVERY`], and once more when the
/// server stops (the counts of its last seconds are kept on a graceful stop).
async fn flush_usage(app: App, shutdown: CancellationToken) {
    loop {
        let stopping = tokio::select! {
            () = shutdown.cancelled() => true,
            () = tokio::time::sleep(crate::usage::FLUSH_EVERY) => false,
        };
        let day = app.now().date_naive();
        if let Err(e) = app.tally().flush(app.jobs_pool(), day).await {
            tracing::warn!(error = %e, "the validation counts could not be written; the next flush retries");
        }
        if stopping {
            return;
        }
    }
}

/// Deletes idempotent answers older than `retention` every `interval`. Several nodes may prune at
/// once: each deletes what is old, whoever gets there first.
async fn prune_idempotency(
    pool: sqlx::PgPool,
    retention: Duration,
    interval: Duration,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        match crate::idempotency::prune(&pool, retention).await {
            Ok(0) => {}
            Ok(deleted) => {
                tracing::debug!(deleted, "idempotent answers past their retention pruned")
            }
            Err(e) => tracing::warn!(error = %e, "could not prune idempotent answers; will retry"),
        }
    }
}

/// Processes the billing inbox: at once when this process stored an event, every `interval`
/// otherwise (events stored by other nodes, failures whose back-off ran out).
async fn consume_billing(app: App, interval: Duration, shutdown: CancellationToken) {
    const BATCH: i64 = 100;
    loop {
        let taken = match app.process_billing_inbox(BATCH).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "billing inbox unreadable; will retry");
                0
            }
        };
        // A full batch: more are due, taken at once, unless the server is stopping (a backlog
        // must not hold a stop until it is drained; the next start takes it).
        if shutdown.is_cancelled() {
            return;
        }
        if taken >= usize::try_from(BATCH).unwrap_or(usize::MAX) {
            continue;
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = app.billing_wake().notified() => {
                // Woken by one stored event, take the others arriving with it in the same batch:
                // a burst costs a few statements, not three commits per event.
                tokio::time::sleep(BILLING_GATHER).await;
            }
            () = tokio::time::sleep(interval) => {}
        }
    }
}

/// How long the billing consumer, woken by a stored event, waits for others before it takes a
/// batch: well within the lag the consumer is held to (p99 < 1 s, BENCHMARKS.md).
const BILLING_GATHER: Duration = Duration::from_millis(20);

/// Records lapsed floating leases every `interval`. Safe on several nodes at once: a lease one
/// node expired is no longer lapsed for the others, whose commands then record nothing.
async fn expire_leases(app: App, interval: Duration, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        for license_id in app.validation().lapsed_leases(app.now()) {
            let ctx = commands::CommandContext::new(
                Actor::System,
                format!("lease-expiry-{}", uuid::Uuid::now_v7()),
            );
            if let Err(e) = app
                .licenses_for_jobs()
                .expire_leases(&ctx, license_id)
                .await
            {
                tracing::warn!(%license_id, error = %e, "could not record lapsed leases; will retry");
            }
        }
    }
}
