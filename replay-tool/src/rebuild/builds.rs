//! The index builds the shadow copies were made without, queued for whichever worker is free.

/// The index builds [`prepare_shadow`] left out, shared by the workers. A worker adds its
/// projection's once its rows are written, then builds from here — its own or another
/// projection's — until nothing is queued and no worker is still writing.
///
/// Why shared: the builds are the end of a rebuild, and they are not even. Audit's three
/// (1M rows each) take longer than every other projection's final write and builds together;
/// built one after the other by audit's own worker, they left a core idle for the last second
/// of a rebuild on two cores once the licenses' final write got shorter (ADR 0009). Idle
/// workers now take them, each on its own session, as serial builds (see
/// [`shadow_connection`]).
///
/// [`prepare_shadow`]: super::shadow::prepare_shadow
/// [`shadow_connection`]: super::shadow::shadow_connection
pub(super) struct IndexBuilds {
    queue: std::sync::Mutex<BuildQueue>,
    changed: tokio::sync::Notify,
}

/// What [`IndexBuilds`] guards.
struct BuildQueue {
    /// Builds waiting for a worker: owning projection, statement.
    pending: std::collections::VecDeque<(&'static str, String)>,
    /// Workers whose rows are not all written yet: their builds are still to come.
    writing: usize,
}

impl IndexBuilds {
    pub(super) fn new(workers: usize) -> Self {
        Self {
            queue: std::sync::Mutex::new(BuildQueue {
                pending: std::collections::VecDeque::new(),
                writing: workers,
            }),
            changed: tokio::sync::Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BuildQueue> {
        // Nothing panics while holding it; a poisoned queue is still consistent.
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `projection`'s rows are written: its builds may start.
    pub(super) fn add(&self, projection: &'static str, builds: Vec<String>) {
        {
            let mut queue = self.lock();
            queue.writing -= 1;
            queue
                .pending
                .extend(builds.into_iter().map(|sql| (projection, sql)));
        }
        self.changed.notify_waiters();
    }

    /// The next build to run; `None` once every worker has written its rows and nothing is
    /// queued. Waits while nothing is queued but some worker is still writing.
    pub(super) async fn next(&self) -> Option<(&'static str, String)> {
        loop {
            // Registered before looking, so that an `add` in between is not missed.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let mut queue = self.lock();
                if let Some(build) = queue.pending.pop_front() {
                    return Some(build);
                }
                if queue.writing == 0 {
                    return None;
                }
            }
            changed.await;
        }
    }
}
