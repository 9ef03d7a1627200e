//! Unit tests of the rebuild that need no database.

use std::sync::Arc;
use std::time::Duration;

use super::builds::IndexBuilds;

/// A worker done early waits for the builds of one still writing, rather than leaving them
/// all to it; both take some; every build is handed out once; all stop when the last writer
/// is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_workers_wait_for_and_share_the_builds_of_those_still_writing() {
    let builds = Arc::new(IndexBuilds::new(2));
    builds.add("catalogue", vec!["c1".to_owned()]);
    assert_eq!(builds.next().await, Some(("catalogue", "c1".to_owned())));

    // The helper reports each build it takes and waits for a go before the next, so that
    // the test decides who takes what, whatever the scheduler does.
    let (took_tx, mut took) = tokio::sync::mpsc::unbounded_channel::<String>();
    let (go, mut go_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let helper = {
        let builds = Arc::clone(&builds);
        tokio::spawn(async move {
            while let Some((owner, sql)) = builds.next().await {
                took_tx.send(format!("{owner}:{sql}")).unwrap();
                if go_rx.recv().await.is_none() {
                    break;
                }
            }
        })
    };
    // Nothing queued, one writer left: the helper must wait, not stop.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!helper.is_finished(), "returned while a worker was writing");

    builds.add("audit", (1..=4).map(|i| format!("a{i}")).collect());
    let mut all = Vec::new();
    // The helper wakes and takes one; this worker takes the others.
    let first = tokio::time::timeout(Duration::from_secs(5), took.recv())
        .await
        .expect("the waiting worker takes a build once one is queued")
        .unwrap();
    all.push(first);
    let mut mine = 0;
    while let Some((owner, sql)) = builds.next().await {
        all.push(format!("{owner}:{sql}"));
        mine += 1;
    }
    assert!(mine > 0, "the owner took none of its builds");
    // Queue empty and nobody writing: the helper's next call ends it.
    go.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), helper)
        .await
        .expect("the helper stops once nothing is left")
        .unwrap();
    while let Ok(more) = took.try_recv() {
        all.push(more);
    }
    all.sort();
    assert_eq!(all, ["audit:a1", "audit:a2", "audit:a3", "audit:a4"]);
}
