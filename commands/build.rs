//! Rebuilds `commands` when a migration is added or changed.
//!
//! `sqlx::migrate!` (in `db.rs`) embeds `../migrations` at compile time, and on stable Rust
//! Cargo reruns it only when a Rust source of this crate changes: a new migration alone would
//! leave every binary and test migrating to the schema of the previous build. sqlx's own
//! documentation recommends this script.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
