//! Unit tests of the rebuild that need no database.

use std::sync::Arc;
use std::time::Duration;

use super::builds::IndexBuilds;
use super::{Rebuilt, Report};

/// The report's rate is the events read over the whole rebuild's seconds, and the summary on
/// stdout, the bar's end (`figures`) and `--json` all show that one number.
#[test]
fn the_report_has_one_rate_in_its_figures_summary_and_json() {
    let report = Report::new(
        12,
        0.158,
        vec![Rebuilt {
            projection: "licenses",
            events_applied: 7,
            position: 12,
        }],
    );
    assert!((report.events_per_second - 12.0 / 0.158).abs() < 1e-9);
    assert_eq!(report.figures(), "12 events in 0.2 s (76 events/s)");
    assert_eq!(
        report.summary(),
        "rebuilt 1 projection(s) from 12 events in 0.2 s (76 events/s)"
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["events_read"], 12);
    assert_eq!(json["events_per_second"], report.events_per_second);
    // No time measured (an empty log on a fast machine): a rate of 0, not infinity or NaN.
    assert_eq!(
        Report::new(0, 0.0, Vec::new()).figures(),
        "0 events in 0.0 s (0 events/s)"
    );
}

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
