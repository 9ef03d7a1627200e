//! `projections::copy` against a real PostgreSQL: every value written through binary `COPY` reads
//! back exactly as the same value bound by sqlx in an `INSERT` — the form the live projectors used
//! before they copied, and still use for upserts — edge cases included (NULLs, extremes, instants
//! before 2000 and with nanoseconds, non-ASCII and escape-worthy text, empty arrays).

use domain::Timestamp;
use projections::copy::copy_all;
use serde_json::json;
use sqlx::PgPool;
use testdb::TestDb;
use uuid::Uuid;

/// One row of every type the read models copy.
#[derive(Clone)]
struct Values {
    a: i64,
    b: i32,
    c: i16,
    d: bool,
    e: Uuid,
    f: Timestamp,
    g: &'static str,
    h: Vec<u8>,
    i: serde_json::Value,
    j: Vec<&'static str>,
    l: Option<Uuid>,
    m: Option<Timestamp>,
    n: Option<&'static str>,
}

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn cases() -> Vec<Values> {
    vec![
        Values {
            a: i64::MIN,
            b: i32::MAX,
            c: i16::MIN,
            d: true,
            e: Uuid::nil(),
            f: t("1969-07-20T20:17:40.123456789Z"),
            g: "",
            h: Vec::new(),
            i: json!({}),
            j: Vec::new(),
            l: None,
            m: None,
            n: None,
        },
        Values {
            a: i64::MAX,
            b: -1,
            c: 0,
            d: false,
            e: Uuid::new_v4(),
            f: t("2026-11-23T12:34:56.789012Z"),
            g: "Zürich ✓ \t\n\\ \"quoted\" \u{1F600}",
            h: vec![0, 255, 1, b'\\'],
            i: json!({"a": [1, 2.5, "é", -0.0, 1e300], "b": null, "c": {"nested": true}, "s": "\u{1F600}\n"}),
            j: vec!["pro", "x.y:z-1"],
            l: Some(Uuid::now_v7()),
            m: Some(t("1999-12-31T23:59:59.999999Z")),
            n: Some("causation \u{0007}"),
        },
        Values {
            a: 0,
            b: i32::MIN,
            c: i16::MAX,
            d: true,
            e: Uuid::now_v7(),
            f: t("2000-01-01T00:00:00Z"),
            g: "plain",
            h: vec![7; 300],
            i: json!([{"installation_id": "x", "lease_expires_at": null}]),
            j: vec!["only"],
            l: None,
            m: Some(t("2000-01-01T00:00:00.000001Z")),
            n: Some(""),
        },
    ]
}

const COLUMNS: &str = "a, b, c, d, e, f, g, h, i, j, l, m, n";

async fn as_text(pool: &PgPool, k: i32) -> String {
    sqlx::query_scalar(&format!(
        "SELECT row({COLUMNS})::text FROM copied WHERE k = $1"
    ))
    .bind(k)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Copies `rows` (key, values) with `statement`.
async fn copy(pool: &PgPool, statement: &str, rows: &[(i32, &Values)]) {
    let mut conn = pool.acquire().await.unwrap();
    copy_all(&mut conn, statement, 14, rows, |out, (k, v)| {
        out.row()
            .i32(*k)
            .i64(v.a)
            .i32(v.b)
            .i16(v.c)
            .bool(v.d)
            .uuid(v.e)
            .timestamptz(v.f)?
            .text(v.g)
            .bytea(&v.h)
            .jsonb(&v.i)?
            .text_array(&v.j)
            .opt_uuid(v.l)
            .opt_timestamptz(v.m)?
            .opt_text(v.n);
        Ok(())
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn copied_rows_read_back_as_the_rows_sqlx_inserts() {
    let db = TestDb::create().await;
    let pool = db.pool().await;
    sqlx::query(
        "CREATE TABLE copied (k integer PRIMARY KEY, a bigint, b integer, c smallint, d boolean, e uuid, \
         f timestamptz, g text, h bytea, i jsonb, j text[], l uuid, m timestamptz, n text)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let cases = cases();
    for (k, v) in cases.iter().enumerate() {
        sqlx::query(&format!(
            "INSERT INTO copied (k, {COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        ))
        .bind(i32::try_from(k).unwrap())
        .bind(v.a)
        .bind(v.b)
        .bind(v.c)
        .bind(v.d)
        .bind(v.e)
        .bind(v.f)
        .bind(v.g)
        .bind(&v.h)
        .bind(&v.i)
        .bind(&v.j)
        .bind(v.l)
        .bind(v.m)
        .bind(v.n)
        .execute(&pool)
        .await
        .unwrap();
    }
    let statement = format!("COPY copied (k, {COLUMNS}) FROM STDIN (FORMAT binary)");
    let keyed: Vec<(i32, &Values)> = cases
        .iter()
        .enumerate()
        .map(|(k, v)| (100 + i32::try_from(k).unwrap(), v))
        .collect();
    copy(&pool, &statement, &keyed).await;
    for k in 0..cases.len() {
        let k = i32::try_from(k).unwrap();
        assert_eq!(
            as_text(&pool, 100 + k).await,
            as_text(&pool, k).await,
            "case {k}"
        );
    }
    // And one row alone, as a live projector's small batch sends it.
    copy(&pool, &statement, &[(201, &cases[1])]).await;
    assert_eq!(as_text(&pool, 201).await, as_text(&pool, 1).await);
}

#[tokio::test]
async fn a_row_that_does_not_fit_fails_the_copy_and_leaves_the_connection_usable() {
    let db = TestDb::create().await;
    let pool = db.pool().await;
    sqlx::query("CREATE TABLE narrow (a bigint, b text)")
        .execute(&pool)
        .await
        .unwrap();
    let mut conn = pool.acquire().await.unwrap();
    // An integer where a bigint belongs: PostgreSQL refuses it rather than storing anything.
    let err = copy_all(
        &mut conn,
        "COPY narrow (a, b) FROM STDIN (FORMAT binary)",
        2,
        [1_i32],
        |rows, a| {
            rows.row().i32(a).text("x");
            Ok(())
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, projections::ProjectionError::Database(_)),
        "{err}"
    );
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(one, 1);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM narrow")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(stored, 0);
}
