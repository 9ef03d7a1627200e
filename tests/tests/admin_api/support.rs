//! Helpers the administration API tests share.

use serde_json::Value;

/// The `id` of a resource as the API answered it.
pub(crate) fn id(v: &Value) -> String {
    v["id"].as_str().expect("an id").to_owned()
}
