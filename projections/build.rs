//! Rebuilds `projections` (and its tests) when a migration is added or changed.
//!
//! Its tests embed `../migrations` at compile time (`#[sqlx::test(migrations = ...)]`), and on
//! stable Rust Cargo reruns that only when a Rust source of this crate changes: a new migration
//! alone would leave them testing the previous schema. The same script as `commands/build.rs`.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
