//! The OpenAPI document against the running server (ADR 0015), in both directions:
//! - every operation the document describes reaches a handler (no `ROUTE_NOT_FOUND`, no
//!   `METHOD_NOT_ALLOWED`);
//! - every path the server's router holds is in the document, and every method the document
//!   does not name for it answers 405: a route added with a plain `.route(...)` (or a method
//!   added to a documented path) fails here.
//!
//! And the reference page: `/docs` and the assets it loads are served by the binary itself.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use tests::TestApp;

/// The methods probed on every path (HEAD and OPTIONS are axum's, derived from GET).
const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

async fn document(app: &TestApp) -> Value {
    let response = app
        .client
        .get(format!("{}/v1/openapi.json", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    response.json().await.unwrap()
}

/// Documented path template → documented methods.
fn documented(doc: &Value) -> BTreeMap<String, BTreeSet<String>> {
    doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .map(|(path, item)| {
            let methods = item
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| METHODS.contains(&k.as_str()))
                .cloned()
                .collect();
            (path.clone(), methods)
        })
        .collect()
}

/// The path templates the router holds, read from its `Debug` form (axum prints each route as
/// `RouteId(n): "/path"`; its fallback router, printed after `fallback_router:`, is not a route).
/// Nothing else lists them. If axum changes that form this finds nothing, and the caller fails
/// rather than passes.
fn router_paths(router: &impl std::fmt::Debug) -> BTreeSet<String> {
    let text = format!("{router:?}");
    let routes = text.split("fallback_router:").next().unwrap_or_default();
    let mut paths = BTreeSet::new();
    for part in routes.split("RouteId(").skip(1) {
        let digits = part.bytes().take_while(u8::is_ascii_digit).count();
        if let Some(rest) = part[digits..].strip_prefix("): \"")
            && let Some(end) = rest.find('"')
        {
            paths.insert(rest[..end].to_owned());
        }
    }
    paths
}

/// A concrete URL path for a template: every `{param}` a fresh UUID.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                uuid::Uuid::now_v7().to_string()
            } else {
                segment.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_and_the_router_describe_the_same_routes() {
    let app = TestApp::start().await;
    let doc = document(&app).await;
    assert_eq!(doc["openapi"].as_str().unwrap().get(..3), Some("3.1"));
    let documented = documented(&doc);
    assert!(documented.len() >= 30, "{documented:?}");

    // Every documented operation reaches a handler.
    for (path, methods) in &documented {
        for method in methods {
            let answer = app
                .call(
                    Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(),
                    &concrete(path),
                    None,
                )
                .await;
            assert!(
                !matches!(answer.code(), "ROUTE_NOT_FOUND" | "METHOD_NOT_ALLOWED"),
                "{method} {path} is documented but not served: {answer:?}"
            );
        }
    }

    // Every path the router holds is documented, with exactly the methods it answers.
    let limits = std::sync::Arc::new(api::limits::PrincipalLimits::new(
        &[],
        api::limits::Rate::new(0, 0),
    ));
    let router = api::server::app_router(
        app.server.state.clone(),
        limits,
        None,
        Duration::from_secs(5),
    );
    let served = router_paths(&router);
    assert!(
        served.len() >= documented.len(),
        "the router's paths could not be read: {served:?}"
    );
    for path in &served {
        if api::openapi::REFERENCE_PAGE_PATHS.contains(&path.as_str())
            || api::ui::PATHS.contains(&path.as_str())
        {
            continue;
        }
        let methods = documented
            .get(path)
            .unwrap_or_else(|| panic!("{path} is served but not in /v1/openapi.json: register it with routes!(...) and a #[utoipa::path] (ADR 0015)"));
        for method in METHODS {
            if methods.contains(method) {
                continue;
            }
            let answer = app
                .call(
                    Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(),
                    &concrete(path),
                    None,
                )
                .await;
            assert_eq!(
                answer.code(),
                "METHOD_NOT_ALLOWED",
                "{} {path} is served but not in /v1/openapi.json (ADR 0015): {answer:?}",
                method.to_uppercase()
            );
        }
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_states_security_problems_and_idempotency() {
    let app = TestApp::start().await;
    let doc = document(&app).await;
    // Served without authentication.
    let anonymous = app
        .client
        .get(format!("{}/v1/openapi.json", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 200);

    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["app_id"]["in"], "header");
    assert_eq!(schemes["app_id"]["name"], "X-App-Id");
    let licenses = &doc["paths"]["/v1/licenses"]["post"];
    assert_eq!(licenses["security"][0]["bearer"], serde_json::json!([]));
    assert!(
        licenses["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "Idempotency-Key" && p["in"] == "header")
    );
    for status in ["400", "401", "403", "404", "413", "415", "422", "429"] {
        assert!(
            licenses["responses"][status].is_object(),
            "POST /v1/licenses lacks {status}"
        );
    }
    let validate = &doc["paths"]["/v1/validate"]["post"];
    assert_eq!(validate["security"][0]["app_id"], serde_json::json!([]));

    // Every write takes an Idempotency-Key, client writes included, and may answer 409 and 422
    // for it; validation appends nothing and takes none (ADR 0016).
    let takes_key = |op: &serde_json::Value| {
        op["parameters"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["name"] == "Idempotency-Key"))
    };
    assert!(!takes_key(validate), "POST /v1/validate takes no key");
    // Stripe's webhook is deduplicated by the event's own id and signed, not authenticated.
    let webhook = &doc["paths"]["/v1/webhooks/stripe"]["post"];
    assert!(!takes_key(webhook), "the webhook takes no key");
    assert_eq!(webhook["security"], serde_json::json!([]));
    let mut keyed = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if !["post", "put", "patch", "delete"].contains(&method.as_str())
                || api::openapi::KEYLESS_WRITES.contains(&path.as_str())
            {
                continue;
            }
            assert!(
                takes_key(op),
                "{method} {path} does not document Idempotency-Key"
            );
            for status in ["409", "422"] {
                assert!(
                    op["responses"][status].is_object(),
                    "{method} {path} lacks {status}"
                );
            }
            keyed += 1;
        }
    }
    assert!(keyed > 20, "only {keyed} writes found");
    let activate = &doc["paths"]["/v1/activations"]["post"];
    assert!(takes_key(activate));
    let created = &activate["responses"]["201"]["headers"];
    for header in [
        "Idempotent-Replayed",
        "RateLimit-Limit",
        "RateLimit-Remaining",
        "RateLimit-Reset",
    ] {
        assert!(
            created[header].is_object(),
            "POST /v1/activations' 201 lacks {header}"
        );
    }

    // The problem's code enumerates every code the server answers.
    let codes: BTreeSet<&str> =
        doc["components"]["schemas"]["Problem"]["properties"]["code"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
    for code in [
        "ROUTE_NOT_FOUND",
        "LICENSE_NOT_FOUND",
        "IDEMPOTENCY_KEY_REUSED",
        "APP_MISMATCH",
    ] {
        assert!(codes.contains(code), "{code}");
    }
    // Domain bounds are the domain's.
    let seats = &doc["components"]["schemas"]["SeatCount"];
    assert_eq!(seats["minimum"], 1);
    assert_eq!(seats["maximum"], 1_000_000);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_page_is_served_by_the_binary_with_its_assets() {
    let app = TestApp::start().await;
    let get = |path: String| {
        let client = app.client.clone();
        let url = format!("{}{path}", app.base);
        async move {
            let response = client.get(url).send().await.unwrap();
            let status = response.status().as_u16();
            let ctype = response
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            (status, ctype, response.text().await.unwrap())
        }
    };
    let (status, ctype, page) = get("/docs/".into()).await;
    assert_eq!(status, 200, "{page}");
    assert!(ctype.starts_with("text/html"), "{ctype}");
    // Every script and stylesheet the page loads is relative: served by us, no CDN.
    let mut assets = Vec::new();
    for attr in ["src=\"", "href=\""] {
        for part in page.split(attr).skip(1) {
            let target = &part[..part.find('"').unwrap()];
            assert!(
                !target.contains("://") && !target.starts_with("//"),
                "the page loads {target} from elsewhere"
            );
            assets.push(target.trim_start_matches("./").to_owned());
        }
    }
    assert!(
        assets.iter().any(|a| a.ends_with(".js")) && assets.iter().any(|a| a.ends_with(".css")),
        "{assets:?}"
    );
    for asset in &assets {
        let (status, _, body) = get(format!("/docs/{asset}")).await;
        assert_eq!(status, 200, "/docs/{asset}");
        assert!(!body.is_empty(), "/docs/{asset}");
    }
    // The configuration points the page at our document, on this server.
    let (status, _, config) = get("/docs/swagger-initializer.js".into()).await;
    assert_eq!(status, 200);
    assert!(config.contains("/v1/openapi.json"), "{config}");
    app.stop().await;
}
