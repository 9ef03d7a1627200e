//! What a request's commands did with its idempotency key, told to the code that runs the
//! request (the HTTP front end's idempotency middleware) without threading flags through every
//! handler and service: whether a command **recorded** the key on a new event (the request
//! executed, for the first time: the events' index guarantees it), or **replayed** it (the key
//! was recorded by an earlier request, whose outcome the command answered instead of appending).
//! Neither: the request appended nothing (a refusal, or a command with nothing to change).
//!
//! The front end runs a request inside [`observe`]; the executor marks. A command run outside
//! `observe` (jobs, the CLI) marks nothing. The marks are task-local: a handler that ran its
//! command in another task would hide them, which the idempotency tests of every write route
//! would show (their retries would lose the first answer's bytes or its replay marker).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

const RECORDED: u8 = 1;
const REPLAYED: u8 = 2;

tokio::task_local! {
    static SEEN: Arc<AtomicU8>;
}

/// What the commands of one request did with its idempotency key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    /// A command appended an event carrying the key: the request executed.
    pub recorded: bool,
    /// A command found the key recorded by an earlier request and answered its outcome.
    pub replayed: bool,
}

/// Runs `request`; its output, and what its commands did with its key.
pub async fn observe<F: Future>(request: F) -> (F::Output, Seen) {
    let seen = Arc::new(AtomicU8::new(0));
    let output = SEEN.scope(seen.clone(), request).await;
    let bits = seen.load(Ordering::Relaxed);
    (
        output,
        Seen {
            recorded: bits & RECORDED != 0,
            replayed: bits & REPLAYED != 0,
        },
    )
}

fn mark(bit: u8) {
    let _ = SEEN.try_with(|seen| seen.fetch_or(bit, Ordering::Relaxed));
}

/// A command appended an event carrying the request's key.
pub(crate) fn mark_recorded() {
    mark(RECORDED);
}

/// A command answered the outcome of the earlier request that recorded the key.
pub(crate) fn mark_replayed() {
    mark(REPLAYED);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn marks_are_seen_by_their_own_observer_only() {
        let ((), seen) = observe(async { mark_replayed() }).await;
        assert_eq!(
            seen,
            Seen {
                recorded: false,
                replayed: true
            }
        );
        let ((), seen) = observe(async { mark_recorded() }).await;
        assert_eq!(
            seen,
            Seen {
                recorded: true,
                replayed: false
            }
        );
        let ((), seen) = observe(async {}).await;
        assert_eq!(seen, Seen::default());
        mark_replayed(); // outside any observer: nothing to tell, no panic
    }
}
