//! Rebuilds `testdb` when a migration is added or changed.
//!
//! `TestDb::migrated` embeds `../migrations` at compile time (`sqlx::migrate!`), and on stable
//! Rust Cargo reruns that only when a Rust source of this crate changes: a new migration alone
//! would leave every test on the previous schema. The same script as `commands/build.rs`.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
