//! Edge timing: an unknown key and a key of another application must not be told apart by how
//! long the answer takes.

use std::time::Instant;

use serde_json::json;
use tests::TestApp;

use crate::support::{OTHER_APP, s};

/// NOT_FOUND and APP_MISMATCH cost the same: interleaved samples, compared by their medians.
#[tokio::test]
async fn not_found_and_app_mismatch_answer_alike_in_time() {
    let app = TestApp::start().await;
    let c = app.catalogue().await;
    let license = app.issue(&c).await;
    app.projected().await;
    let key = s(&license, "key");
    let unknown = key.replace(&key[7..15], "00000000");
    let time = |app_id: &'static str, key: String| {
        let app = &app;
        async move {
            let started = Instant::now();
            let answer = app
                .client_call("/v1/validate", app_id, json!({"key": key}))
                .await;
            (started.elapsed(), answer.code().to_owned())
        }
    };
    // Warm up connections and caches.
    for _ in 0..50 {
        time(OTHER_APP, key.clone()).await;
        time(OTHER_APP, unknown.clone()).await;
    }
    let mut mismatch = Vec::new();
    let mut not_found = Vec::new();
    for _ in 0..400 {
        let (t, code) = time(OTHER_APP, key.clone()).await;
        assert_eq!(code, "APP_MISMATCH");
        mismatch.push(t);
        let (t, code) = time(OTHER_APP, unknown.clone()).await;
        assert_eq!(code, "NOT_FOUND");
        not_found.push(t);
    }
    mismatch.sort();
    not_found.sort();
    let (m, n) = (mismatch[200].as_secs_f64(), not_found[200].as_secs_f64());
    let ratio = m / n;
    assert!(
        (0.8..1.25).contains(&ratio),
        "median APP_MISMATCH {m:.6}s vs NOT_FOUND {n:.6}s (ratio {ratio:.2})"
    );
    app.stop().await;
}
