//! Time travel: a scenario's license snapshots equal the as-of reads of their instants, through
//! the API and through `ledger-replay state`; the same log rebuilt into fresh read models (while
//! the server serves) equals what the live projectors produced; and an event stored before a
//! schema change reads back upcast.
//!
//! The rebuild check shares the as-of test because the 100-step scenario is the expensive part.

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use tests::TestApp;

use crate::support::{db_now, id, read_models};

/// Drives a lifecycle over several licenses; after each step, snapshots one license through the
/// API with the instant it was taken at.
async fn scenario(
    app: &TestApp,
    snapshots: usize,
) -> Vec<(String, chrono::DateTime<chrono::Utc>, Value)> {
    let c = app.catalogue().await;
    let other = app
        .post(
            "/v1/organizations",
            json!({"name": "Globex", "kind": "customer"}),
        )
        .await;
    let licenses: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(id(&app.issue(&c).await));
        }
        v
    };
    let pool = app.db.pool().await;
    let mut taken = Vec::new();
    for step in 0..snapshots {
        let license = &licenses[step % licenses.len()];
        let path = format!("/v1/licenses/{license}");
        let current = app.get(&path).await.body;
        // One command per step, chosen to be valid in the license's current state.
        let answer = match (current["status"].as_str().unwrap(), step % 5) {
            ("suspended", _) => app.post(&format!("{path}/reinstate"), json!({})).await,
            ("revoked", _) => app.get(&path).await,
            (_, 0) => {
                app.post(
                    &format!("{path}/suspend"),
                    json!({"reason": "unpaid invoice"}),
                )
                .await
            }
            (_, 1) => {
                let year = 2030 + step as i32;
                app.post(
                    &format!("{path}/renew"),
                    json!({"expires_at": format!("{year}-01-01T00:00:00Z")}),
                )
                .await
            }
            (_, 2) => {
                let to = if current["organization_id"] == c.organization_id.as_str() {
                    id(&other.body)
                } else {
                    c.organization_id.clone()
                };
                app.post(&format!("{path}/transfer"), json!({"organization_id": to}))
                    .await
            }
            (_, 3) => {
                app.put(&format!("{path}/seats"), json!({"seats": 1 + step % 7}))
                    .await
            }
            _ if step == snapshots - 7 => {
                app.post(
                    &format!("{path}/revoke"),
                    json!({"reason": "contract ended"}),
                )
                .await
            }
            _ => {
                let features = if step % 2 == 0 {
                    json!(["pro"])
                } else {
                    json!(["pro", "export.pdf"])
                };
                app.put(
                    &format!("{path}/entitlements"),
                    json!({"features": features}),
                )
                .await
            }
        };
        assert!(answer.status.is_success(), "step {step}: {:?}", answer.body);
        let snapshot = app.get(&path).await;
        assert_eq!(snapshot.status, StatusCode::OK);
        let at = db_now(&pool).await;
        taken.push((license.clone(), at, snapshot.body));
    }
    pool.close().await;
    taken
}

fn without_as_of(mut v: Value) -> Value {
    v.as_object_mut().unwrap().remove("as_of");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn as_of_reads_equal_snapshots_and_a_rebuild_equals_the_live_read_models() {
    let app = TestApp::start().await;
    let taken = scenario(&app, 100).await;
    let pool = app.db.pool().await;

    // As-of correctness: 100/100, through the API and through `ledger-replay state` (library).
    let mut equal = 0;
    for (license, at, snapshot) in &taken {
        let t = at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let answer = app
            .get(&format!(
                "/v1/licenses/{license}?as_of={}",
                t.replace('+', "%2B")
            ))
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
        assert_eq!(
            answer.body["as_of"]
                .as_str()
                .map(|s| s.parse::<chrono::DateTime<chrono::Utc>>().unwrap()),
            Some(*at)
        );
        let cli = replay_tool::state::license(&pool, license.parse().unwrap(), *at)
            .await
            .unwrap();
        assert_eq!(
            serde_json::to_value(&cli.license).unwrap(),
            answer.body,
            "CLI and API differ at {t}"
        );
        assert_eq!(
            cli.events.last().unwrap().sequence,
            answer.body["version"].as_i64().unwrap()
        );
        if without_as_of(answer.body) == without_as_of(snapshot.clone()) {
            equal += 1;
        } else {
            panic!("as-of read at {t} differs from the snapshot taken then");
        }
    }
    assert_eq!(equal, 100);
    // Before the license existed: 404, and `state` says so.
    let (license, _, _) = &taken[0];
    let before = app
        .get(&format!(
            "/v1/licenses/{license}?as_of=2000-01-01T00:00:00Z"
        ))
        .await;
    assert_eq!(before.status, StatusCode::NOT_FOUND);
    assert!(matches!(
        replay_tool::state::license(
            &pool,
            license.parse().unwrap(),
            "2000-01-01T00:00:00Z".parse().unwrap()
        )
        .await,
        Err(replay_tool::state::StateError::NotFound(_))
    ));
    let bad = app
        .get(&format!("/v1/licenses/{license}?as_of=yesterday"))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.body["field"], "as_of");

    // Organization state: its licenses then.
    let org = taken[0].2["organization_id"].as_str().unwrap().to_owned();
    let org_state =
        replay_tool::state::organization(&pool, org.parse().unwrap(), db_now(&pool).await)
            .await
            .unwrap();
    let listed = app.get(&format!("/v1/organizations/{org}/licenses")).await;
    app.projected().await;
    let listed = if listed.status == StatusCode::OK {
        app.get(&format!("/v1/organizations/{org}/licenses")).await
    } else {
        listed
    };
    let mut api_ids: Vec<String> = listed.body["licenses"]
        .as_array()
        .unwrap()
        .iter()
        .map(id)
        .collect();
    api_ids.sort();
    let mut cli_ids: Vec<String> = org_state
        .licenses
        .iter()
        .map(|l| l.id.to_string())
        .collect();
    cli_ids.sort();
    assert_eq!(cli_ids, api_ids);

    // Replay equivalence, while the server serves.
    app.projected().await;
    let live = read_models(&pool).await;
    assert!(live.iter().any(|(t, n, _)| t == "rm_audit" && *n > 100));
    // Storage parameters, the migrations' and an operator's, must survive the swap — also one
    // the catalog keeps in a form that does not parse back unquoted (`fillfactor=0x5A`).
    sqlx::query("ALTER TABLE rm_audit SET (fillfactor = '0x5A', toast.autovacuum_enabled = false)")
        .execute(&pool)
        .await
        .unwrap();
    let parameters = storage_parameters(&pool).await;
    assert!(parameters.contains(&(
        "rm_licenses".to_owned(),
        Some(vec!["toast_tuple_target=8160".to_owned()]),
        None
    )));
    assert!(parameters.contains(&(
        "rm_audit".to_owned(),
        Some(vec!["fillfactor=0x5A".to_owned()]),
        Some(vec!["autovacuum_enabled=false".to_owned()])
    )));
    let report = replay_tool::rebuild::rebuild(
        &app.db.url,
        projections::replayable(),
        &replay_tool::progress::Progress::quiet("rebuild", 0),
    )
    .await
    .unwrap();
    assert_eq!(report.projections.len(), projections::replayable().len());
    let rebuilt = read_models(&pool).await;
    assert_eq!(
        rebuilt, live,
        "the rebuilt read models differ from the live ones"
    );
    assert_eq!(storage_parameters(&pool).await, parameters);
    // The swapped-in tables kept their index names and serve the server (as ledger_app).
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE tablename = 'rm_licenses' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        names,
        [
            "rm_licenses_cancel_at",
            "rm_licenses_expires_at",
            "rm_licenses_key_hash",
            "rm_licenses_key_prefix",
            "rm_licenses_lifecycle",
            "rm_licenses_organization",
            "rm_licenses_pkey",
            "rm_licenses_policy",
            "rm_licenses_policy_lifecycle",
            "rm_licenses_product",
            "rm_licenses_product_lifecycle",
            "rm_licenses_trial_ends_at"
        ]
    );
    let schema: Option<String> = sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace WHERE nspname = 'ledger_rebuild'",
    )
    .fetch_optional(&pool)
    .await
    .unwrap();
    assert_eq!(schema, None, "the shadow schema is dropped");
    let c = app.catalogue().await;
    let fresh = id(&app.issue(&c).await);
    app.projected().await;
    let listed = app
        .get(&format!("/v1/organizations/{}/licenses", c.organization_id))
        .await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.body["licenses"][0]["id"], fresh.as_str());
    let audit = app.get(&format!("/v1/audit?license_id={fresh}")).await;
    assert_eq!(audit.status, StatusCode::OK, "{:?}", audit.body);
    assert_eq!(audit.body["entries"].as_array().unwrap().len(), 1);

    pool.close().await;
    app.stop().await;
}

/// Per read-model table: its storage parameters and its TOAST table's.
type StorageParameters = Vec<(String, Option<Vec<String>>, Option<Vec<String>>)>;

async fn storage_parameters(pool: &PgPool) -> StorageParameters {
    sqlx::query_as(
        "SELECT c.relname::text, c.reloptions::text[], t.reloptions::text[] FROM pg_class c \
         LEFT JOIN pg_class t ON t.oid = c.reltoastrelid \
         WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' \
           AND c.relname LIKE 'rm\\_%' ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn state_before_a_schema_change_shows_the_upcast_values() {
    let app = TestApp::start().await;
    let c = app.catalogue().await;
    let license = id(&app.issue(&c).await);
    let pool = app.db.pool().await;
    // A revocation as the first release wrote it: LicenseRevoked v1, no `category`.
    sqlx::query(
        "INSERT INTO events (event_id, aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         SELECT $2, 'License', aggregate_id, 2, 'LicenseRevoked', '1', '{\"reason\":\"contract ended\"}'::json, metadata \
         FROM events WHERE aggregate_type = 'License' AND aggregate_id = $1 AND sequence = 1",
    )
    .bind(&license)
    .bind(uuid::Uuid::now_v7())
    .execute(&pool)
    .await
    .unwrap();
    let at = db_now(&pool).await;
    let state = replay_tool::state::license(&pool, license.parse().unwrap(), at)
        .await
        .unwrap();
    assert_eq!(state.license.status, "revoked");
    assert_eq!(
        state.license.revocation_reason.as_deref(),
        Some("contract ended")
    );
    assert_eq!(state.license.revocation_category, Some("unspecified"));
    assert_eq!(
        state.events[1].version, "1",
        "the stored event keeps its version"
    );
    let t = at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let api = app.get(&format!("/v1/licenses/{license}?as_of={t}")).await;
    assert_eq!(api.body, serde_json::to_value(&state.license).unwrap());
    let table = replay_tool::state::license_table(&state);
    assert!(table.contains("unspecified: contract ended"), "{table}");
    assert!(table.contains("LicenseRevoked v1"), "{table}");
    pool.close().await;
    app.stop().await;
}
