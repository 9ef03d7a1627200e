//! Issue #3: offline-token minting against the raw p256 signing rate.
//!
//! - **raw**: `p256::ecdsa::SigningKey::sign` (RFC 6979, SHA-256) over a message as long as a
//!   token's signing input;
//! - **ours**: what the server does per token besides recording `OfflineTokenIssued`: build the
//!   claims (`client::verify::Claims`, the type the endpoint serializes), encode header and
//!   claims, sign, encode the signature (`application::signing::KeyPair::sign_jwt`, the code the
//!   endpoint runs).
//!
//! Recording the token is an event append like any command and is measured by the command and
//! activation benchmarks; it is deliberately not in this ratio, which isolates the token's own
//! cost from the disk's.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use client::verify::{Claims, LicenseModel, PolicyRef, TokenKind};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};

use crate::harness::{median, ratio_cell, ratios};

fn rate(threads: usize, duration: Duration, f: Arc<dyn Fn() + Send + Sync>) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (stop, done, f) = (stop.clone(), done.clone(), f.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    f();
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().expect("bench thread");
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// Runs the benchmark and prints a Markdown table.
///
/// # Errors
/// When the signing keys cannot be created.
pub fn run(slice: Duration, cycles: usize, threads: &[usize]) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("ledger-bench-keys-{}", uuid::Uuid::now_v7()));
    let keys = application::signing::SigningKeys::open(&dir)?;
    let pair = keys.current();
    let license_id = uuid::Uuid::now_v7();
    let app_id = uuid::Uuid::new_v4();
    let claims = move || {
        let now = chrono::Utc::now().timestamp();
        Claims {
            iss: "license-ledger".to_owned(),
            sub: license_id,
            aud: app_id.into(),
            iat: now,
            nbf: now,
            exp: now + 14 * 86_400,
            jti: uuid::Uuid::now_v7(),
            features: vec!["pro".to_owned(), "export.pdf".to_owned()],
            fingerprint: Some("9f86d081884c7d65".to_owned()),
            installation_id: Some(license_id),
            policy: Some(PolicyRef {
                id: license_id,
                version: 3,
                model: LicenseModel::NodeLocked,
            }),
            status: Some("active".to_owned()),
            kind: TokenKind::Offline,
        }
    };
    let sample = pair.sign_jwt(&claims())?;
    let input_len = sample.rfind('.').unwrap_or(sample.len());
    let message = vec![b'a'; input_len];
    let raw_key = SigningKey::from_slice(&[7u8; 32]).map_err(|e| anyhow::anyhow!("{e}"))?;
    let raw: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
        let s: Signature = raw_key.sign(&message);
        std::hint::black_box(s);
    });
    let ours: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
        std::hint::black_box(pair.sign_jwt(&claims()).ok());
    });
    println!("\n(token signing input: {input_len} bytes)\n");
    println!(
        "| threads | raw p256 sign /s | token minting /s | ours / raw (median, min-max) | target |"
    );
    println!("|---:|---:|---:|---:|---:|");
    for &t in threads {
        let (mut r, mut o) = (Vec::new(), Vec::new());
        for cycle in 0..cycles {
            if cycle % 2 == 0 {
                r.push(rate(t, slice, raw.clone()));
                o.push(rate(t, slice, ours.clone()));
            } else {
                o.push(rate(t, slice, ours.clone()));
                r.push(rate(t, slice, raw.clone()));
            }
            eprintln!(
                "threads {t} cycle {}: raw {:.0}/s ours {:.0}/s",
                cycle + 1,
                r[cycle],
                o[cycle]
            );
        }
        println!(
            "| {t} | {:.0} | {:.0} | {} | ≥ 0.80 |",
            median(&r),
            median(&o),
            ratio_cell(&ratios(&o, &r))
        );
    }
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
