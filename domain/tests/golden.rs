//! Golden fixtures: history written today must load forever.
//!
//! `domain/tests/golden/<AggregateType>/<EventType>.v<version>.json` holds one stored event per
//! event type and version ever written; `<EventType>.v<version>.<shape>.json` another shape of
//! that version that is written too (an optional field present: `SubscriptionSynced.v1.
//! payment_only` is an invoice's fact). This test:
//! - decodes every fixture (through upcasters for old versions) — a fixture that stops loading is a
//!   broken promise to every database in the field;
//! - checks that every current `(event_type, event_version)` has a fixture, and that a current
//!   fixture re-encodes to exactly its stored payload;
//! - checks that each event enum's serde tags, `event_type()`s and `VERSIONS` agree.
//!
//! A new event type or version: run `LEDGER_WRITE_MISSING_GOLDEN=1 cargo test -p domain --test
//! golden`, review the new file, commit it. Existing fixtures are never rewritten by the test; they
//! are edited by hand never.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use domain::api_token::ApiTokenEvent;
use domain::download::DownloadEvent;
use domain::event::{
    RecordedEvent, VersionedEvent, decode_payload, decode_payload_raw, encode_payload,
};
use domain::ids::*;
use domain::keys::KeyHash;
use domain::license::{LicenseEvent, LicenseIssued};
use domain::organization::OrganizationEvent;
use domain::policy::{PolicyEvent, PolicyTerms, PolicyTermsInput};
use domain::product::ProductEvent;
use domain::release::{
    Artifact, Filename, Notes, ReleaseEvent, Sha256Digest, Version, VersionRange,
};
use domain::user::UserEvent;
use domain::values::*;
use serde_json::{Value, json};
use uuid::Uuid;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn t(s: &str) -> domain::Timestamp {
    s.parse().unwrap()
}

fn uuid(n: u128) -> Uuid {
    Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0000 | n)
}

fn terms() -> PolicyTerms {
    PolicyTerms::new(PolicyTermsInput {
        model: LicenseModel::Floating,
        seats: SeatCount::new(5).unwrap(),
        duration_days: Some(365),
        trial_days: Some(14),
        features: FeatureSet::parse(&["export.pdf", "pro"]).unwrap(),
        offline_allowed: true,
        offline_grace_days: 14,
        payment_grace_days: 7,
        maintenance_months: Some(12),
        lease_seconds: Some(600),
    })
    .unwrap()
}

fn organization_samples() -> Vec<OrganizationEvent> {
    let partner = OrganizationId::from_uuid(uuid(2));
    vec![
        OrganizationEvent::Registered {
            name: Name::parse("Acme Corporation").unwrap(),
            kind: OrganizationKind::Customer,
            parent_id: Some(OrganizationId::from_uuid(uuid(1))),
        },
        OrganizationEvent::Renamed {
            name: Name::parse("Acme AG").unwrap(),
        },
        OrganizationEvent::Moved {
            new_parent_id: None,
        },
        OrganizationEvent::PartnerDelegationGranted {
            partner_id: partner,
        },
        OrganizationEvent::PartnerDelegationRevoked {
            partner_id: partner,
        },
        OrganizationEvent::Closed {},
        OrganizationEvent::CustomerLinked {
            gateway: "stripe".into(),
            customer_id: "cus_QXg1o8vcGmoR32".into(),
        },
    ]
}

fn product_samples() -> Vec<ProductEvent> {
    vec![
        ProductEvent::Defined {
            name: Name::parse("Acme Studio").unwrap(),
            kind: ProductKind::Plugin,
            app_id: AppId::parse(uuid(10)).unwrap(),
            parent_product_id: Some(ProductId::from_uuid(uuid(11))),
            key_prefix: KeyPrefix::parse("ACME").unwrap(),
        },
        ProductEvent::UpgradePathDeclared {
            from: VersionRange::parse("7.2").unwrap(),
            to: Version::parse("7.6.0").unwrap(),
            via: vec![Version::parse("7.4.0").unwrap()],
        },
    ]
}

fn download_samples() -> Vec<DownloadEvent> {
    vec![
        DownloadEvent::Granted {
            artifact_id: ArtifactId::from_uuid(uuid(40)),
            release_id: ReleaseId::from_uuid(uuid(41)),
            license_id: LicenseId::from_uuid(uuid(3)),
            organization_id: OrganizationId::from_uuid(uuid(1)),
            user_id: Some(UserId::from_uuid(uuid(50))),
            expires_at: t("2026-12-05T09:05:00Z"),
        },
        DownloadEvent::Served { bytes: 73_400_320 },
    ]
}

fn release_samples() -> Vec<ReleaseEvent> {
    vec![
        ReleaseEvent::Drafted {
            product_id: ProductId::from_uuid(uuid(11)),
            version: Version::parse("7.4.0+build.15").unwrap(),
            channel: Channel::Lts,
            notes: Some(Notes::parse("Faster exports.\n\nFixes the PDF margins.").unwrap()),
            entitlements: FeatureSet::parse(&["pro"]).unwrap(),
        },
        ReleaseEvent::ArtifactAdded(Artifact {
            artifact_id: ArtifactId::from_uuid(uuid(40)),
            filename: Filename::parse("studio-7.4.0-x86_64.msi").unwrap(),
            platform: Platform::Windows,
            arch: Arch::X86_64,
            size: 73_400_320,
            sha256: Sha256Digest::parse(
                "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            )
            .unwrap(),
            signature: "W8MbBWcpDNTb22xcnEQUgOJBLY8e3XhC2fCNLR3I4GwvzGDjX5cQhLOTznrjWOzV6KSkbjv6zw1T_UVqOrmN7g".to_owned(),
            kid: "3xXf8GdQ0yY2m8sLwq4b6zR1tV9nK5cP7aH2jE0uW4o".to_owned(),
        }),
        ReleaseEvent::Published {
            published_at: t("2026-12-05T09:00:00Z"),
        },
        ReleaseEvent::Yanked {
            reason: Reason::parse("installer breaks on Windows Server 2019").unwrap(),
        },
    ]
}

fn policy_samples() -> Vec<PolicyEvent> {
    vec![
        PolicyEvent::Defined {
            product_id: ProductId::from_uuid(uuid(11)),
            name: Name::parse("Pro").unwrap(),
            version: 1,
            terms: terms(),
        },
        PolicyEvent::Revised {
            version: 2,
            name: Name::parse("Pro 2026").unwrap(),
            terms: terms(),
        },
        PolicyEvent::Retired {},
        PolicyEvent::PricesLinked {
            gateway: "stripe".into(),
            price_ids: [
                "price_1MoBy5LkdIwHu7ixZhnattbh",
                "price_1MoBy5LkdIwHu7ixgRw4qIz1",
            ]
            .into_iter()
            .map(|p| domain::billing::PriceId::parse(p).unwrap())
            .collect(),
        },
    ]
}

fn license_samples() -> Vec<LicenseEvent> {
    vec![
        LicenseEvent::Issued(Box::new(LicenseIssued {
            product_id: ProductId::from_uuid(uuid(11)),
            app_id: AppId::parse(uuid(10)).unwrap(),
            policy_id: PolicyId::from_uuid(uuid(20)),
            policy_version: 2,
            organization_id: OrganizationId::from_uuid(uuid(1)),
            key_hash: KeyHash::from_bytes([0xA5; 32]),
            key_prefix: "ACME-7K3Q".into(),
            seats: SeatCount::new(5).unwrap(),
            features: FeatureSet::parse(&["pro"]).unwrap(),
            starts_at: t("2026-03-01T10:00:00Z"),
            expires_at: Some(t("2027-03-01T10:00:00Z")),
            trial_ends_at: Some(t("2026-03-15T10:00:00Z")),
            maintenance_until: Some(t("2027-03-01T10:00:00Z")),
            source: LicenseSource::Admin,
            terms: terms(),
        })),
        LicenseEvent::Suspended {
            reason: Reason::parse("chargeback under review").unwrap(),
        },
        LicenseEvent::Reinstated {},
        LicenseEvent::Renewed {
            expires_at: t("2028-03-01T10:00:00Z"),
        },
        LicenseEvent::Transferred {
            organization_id: OrganizationId::from_uuid(uuid(3)),
        },
        LicenseEvent::EntitlementsChanged {
            features: FeatureSet::parse(&["pro", "export.pdf"]).unwrap(),
        },
        LicenseEvent::SeatsChanged {
            seats: SeatCount::new(10).unwrap(),
        },
        LicenseEvent::MaintenanceExtended {
            until: t("2028-03-01T10:00:00Z"),
        },
        LicenseEvent::KeyRotated {
            key_hash: KeyHash::from_bytes([0x5A; 32]),
            key_prefix: "ACME-M2X8".into(),
        },
        LicenseEvent::Revoked {
            reason: Reason::parse("contract terminated").unwrap(),
            category: RevocationCategory::ContractEnded,
        },
        LicenseEvent::InstallationActivated {
            installation_id: InstallationId::from_uuid(uuid(40)),
            fingerprint: Fingerprint::parse("9f86d081884c7d65").unwrap(),
            hostname: Some(Label::parse("build-01").unwrap()),
            platform: Some(Label::parse("linux-x86_64").unwrap()),
            environment: Environment::Production,
            activated_at: t("2026-03-02T08:00:00Z"),
        },
        LicenseEvent::InstallationDeactivated {
            installation_id: InstallationId::from_uuid(uuid(40)),
            reason: DeactivationReason::Client,
        },
        LicenseEvent::FloatingLeaseGranted {
            installation_id: InstallationId::from_uuid(uuid(41)),
            expires_at: t("2026-03-02T08:10:00Z"),
        },
        LicenseEvent::FloatingLeaseReleased {
            installation_id: InstallationId::from_uuid(uuid(41)),
        },
        LicenseEvent::FloatingLeaseExpired {
            installation_id: InstallationId::from_uuid(uuid(42)),
        },
        LicenseEvent::OfflineTokenIssued {
            jti: uuid(50),
            kind: OfflineTokenKind::Offline,
            installation_id: Some(InstallationId::from_uuid(uuid(40))),
            fingerprint: Some(Fingerprint::parse("9f86d081884c7d65").unwrap()),
            issued_at: t("2026-03-02T08:00:00Z"),
            expires_at: t("2026-03-16T08:00:00Z"),
        },
        LicenseEvent::SubscriptionLinked {
            gateway: "stripe".into(),
            subscription_id: "sub_1MowQVLkdIwHu7ixeRlqHVzs".into(),
            customer_id: "cus_NffrFeUfNV2Hib".into(),
        },
        LicenseEvent::PaymentFailed {
            grace_until: t("2026-04-08T00:00:00Z"),
        },
        LicenseEvent::PaymentRecovered {},
        LicenseEvent::SubscriptionPaused {},
        LicenseEvent::SubscriptionResumed {},
        LicenseEvent::CancellationScheduled {
            at: t("2026-05-01T00:00:00Z"),
        },
        LicenseEvent::SubscriptionCanceled {},
        LicenseEvent::TrialStarted {
            ends_at: t("2026-03-15T10:00:00Z"),
        },
        LicenseEvent::TrialEnded {},
        LicenseEvent::SubscriptionReactivated {},
        LicenseEvent::CancellationWithdrawn {},
        LicenseEvent::SubscriptionSynced {
            fact: domain::billing::BillingFact {
                observed: domain::billing::Observation {
                    created: t("2026-03-01T10:00:05Z"),
                    event_id: "evt_1Pgc76B7WZ01zgkWwyRHS12y".into(),
                },
                target: domain::billing::BillingTarget {
                    gateway: "stripe".into(),
                    subscription_id: "sub_1Pgc6rB7WZ01zgkWNy0Cn5nw".into(),
                    customer_id: "cus_QXg1o8vcGmoR32".into(),
                    standing: domain::billing::Standing::PastDue,
                    trial_ends_at: None,
                    paid_until: Some(t("2026-04-01T10:00:00Z")),
                    cancel_at: None,
                    quantity: Some(3),
                    payment_only: false,
                },
            },
        },
        LicenseEvent::Assigned {
            user_id: UserId::from_uuid(uuid(50)),
        },
        LicenseEvent::Unassigned {
            user_id: UserId::from_uuid(uuid(50)),
        },
    ]
}

fn api_token_samples() -> Vec<ApiTokenEvent> {
    vec![
        ApiTokenEvent::Issued {
            role: Role::LicenseManager,
            label: Some(Name::parse("helpdesk").unwrap()),
            token_hash: KeyHash::from_bytes([0x11; 32]),
            issued_at: t("2026-03-01T10:00:00Z"),
            expires_at: Some(t("2026-03-02T10:00:00Z")),
            organization_id: Some(OrganizationId::from_uuid(uuid(3))),
        },
        ApiTokenEvent::ImpersonationStarted {
            user_id: UserId::from_uuid(uuid(50)),
            reason: Reason::parse("ticket 4711: cannot see her licenses").unwrap(),
            started_by: domain::event::Actor::ApiToken(ApiTokenId::from_uuid(uuid(60))),
            token_hash: KeyHash::from_bytes([0x22; 32]),
            issued_at: t("2026-03-01T11:00:00Z"),
            expires_at: t("2026-03-01T11:15:00Z"),
        },
        ApiTokenEvent::Revoked {
            revoked_at: t("2026-03-01T12:00:00Z"),
        },
    ]
}

fn user_samples() -> Vec<UserEvent> {
    let organization_id = OrganizationId::from_uuid(uuid(5));
    let issuer = Issuer::parse("https://login.acme.example/realms/acme").unwrap();
    vec![
        UserEvent::Registered {
            email: Email::parse("ana@acme.example").unwrap(),
            organization_id,
            issuer: issuer.clone(),
            subject: Subject::parse("248289761001").unwrap(),
        },
        UserEvent::Invited {
            email: Email::parse("ben@acme.example").unwrap(),
            organization_id,
            roles: vec![Role::CustomerAdmin, Role::LicenseManager],
            issuer: Some(Issuer::parse("https://login.acme.example/realms/acme").unwrap()),
        },
        UserEvent::InvitationClaimed {
            issuer,
            subject: Subject::parse("00u1ab2cd3EF4gh5ij6k").unwrap(),
        },
        UserEvent::RoleGranted {
            role: Role::DownloadManager,
            organization_id,
        },
        UserEvent::RoleRevoked {
            role: Role::LicenseManager,
            organization_id,
        },
        UserEvent::Deactivated {},
        UserEvent::Reactivated {},
    ]
}

/// One aggregate's contract under test.
struct Contract {
    aggregate_type: &'static str,
    versions: &'static [(&'static str, &'static str)],
    /// (event_type, event_version, payload) of each sample.
    samples: Vec<(String, String, Value)>,
    decode: fn(&str, &str, Value) -> Result<Value, String>,
}

fn contract<E: VersionedEvent>(samples: Vec<E>) -> Contract {
    /// Decodes through the three readers — `decode_payload` (owned payload),
    /// `RecordedEvent::decode` (borrows the payload when it is the current version) and
    /// `decode_payload_raw` (the payload's JSON text, as a rebuild reads it) — which must agree
    /// on every fixture.
    fn decode_as<E: VersionedEvent>(ty: &str, ver: &str, payload: Value) -> Result<Value, String> {
        let recorded = RecordedEvent {
            global_position: 1,
            tx_id: 1,
            event_id: uuid::Uuid::nil(),
            aggregate_type: E::AGGREGATE_TYPE.to_owned(),
            aggregate_id: "fixture".to_owned(),
            sequence: 1,
            event_type: ty.to_owned(),
            event_version: ver.to_owned(),
            payload: payload.clone(),
            metadata: Value::Null,
            recorded_at: chrono::DateTime::UNIX_EPOCH,
            hash: Vec::new(),
        };
        // The store's `json` keeps text as written: compact, pretty-printed, or with a field
        // given twice (the last counts). The text reader must read each as the `Value` reader
        // does.
        let compact = payload.to_string();
        let mut variants = vec![
            compact.clone(),
            serde_json::to_string_pretty(&payload).map_err(|e| e.to_string())?,
        ];
        if let Some(first) = payload.as_object().and_then(|o| o.keys().next()) {
            variants.push(format!(
                "{{{}: null, {}",
                serde_json::to_string(first).map_err(|e| e.to_string())?,
                &compact[1..]
            ));
        }
        for variant in variants {
            let raw = serde_json::value::RawValue::from_string(variant.clone())
                .map_err(|e| e.to_string())?;
            let as_value: Value = serde_json::from_str(&variant).map_err(|e| e.to_string())?;
            let expected: E = decode_payload(ty, ver, as_value).map_err(|e| e.to_string())?;
            let got: E = decode_payload_raw(ty, ver, &raw).map_err(|e| e.to_string())?;
            let (expected, got) = (
                encode_payload(&expected).map_err(|e| e.to_string())?,
                encode_payload(&got).map_err(|e| e.to_string())?,
            );
            if expected != got {
                return Err(format!(
                    "decode_payload_raw reads {variant} as {got}, decode_payload as {expected}"
                ));
            }
        }
        let event: E = decode_payload(ty, ver, payload).map_err(|e| e.to_string())?;
        let borrowed: E = recorded.decode().map_err(|e| e.to_string())?;
        let encoded = encode_payload(&event).map_err(|e| e.to_string())?;
        let encoded_borrowed = encode_payload(&borrowed).map_err(|e| e.to_string())?;
        if encoded != encoded_borrowed {
            return Err(format!(
                "RecordedEvent::decode disagrees with decode_payload: {encoded_borrowed} vs {encoded}"
            ));
        }
        Ok(encoded)
    }
    Contract {
        aggregate_type: E::AGGREGATE_TYPE,
        versions: E::VERSIONS,
        samples: samples
            .iter()
            .map(|e| {
                let payload = encode_payload(e).unwrap_or_else(|err| panic!("{err}"));
                (e.event_type(), e.event_version(), payload)
            })
            .collect(),
        decode: decode_as::<E>,
    }
}

fn contracts() -> Vec<Contract> {
    vec![
        contract(organization_samples()),
        contract(product_samples()),
        contract(policy_samples()),
        contract(license_samples()),
        contract(api_token_samples()),
        contract(user_samples()),
        contract(release_samples()),
        contract(download_samples()),
    ]
}

fn fixture_path(aggregate_type: &str, event_type: &str, version: &str) -> PathBuf {
    golden_dir()
        .join(aggregate_type)
        .join(format!("{event_type}.v{version}.json"))
}

#[test]
fn samples_cover_every_event_type_exactly_at_its_current_version() {
    for c in contracts() {
        let declared: BTreeMap<&str, &str> = c.versions.iter().copied().collect();
        assert_eq!(
            declared.len(),
            c.versions.len(),
            "{}: duplicate VERSIONS entry",
            c.aggregate_type
        );
        let sampled: BTreeSet<&str> = c.samples.iter().map(|(t, _, _)| t.as_str()).collect();
        let declared_types: BTreeSet<&str> = declared.keys().copied().collect();
        assert_eq!(
            sampled, declared_types,
            "{}: samples and VERSIONS disagree",
            c.aggregate_type
        );
        for (ty, ver, _) in &c.samples {
            assert_eq!(
                declared[ty.as_str()],
                ver,
                "{}: {ty} version",
                c.aggregate_type
            );
        }
    }
}

#[test]
fn every_current_event_version_has_a_golden_fixture() {
    let write_missing = std::env::var_os("LEDGER_WRITE_MISSING_GOLDEN").is_some();
    let mut missing = Vec::new();
    for c in contracts() {
        for (ty, ver, payload) in &c.samples {
            let path = fixture_path(c.aggregate_type, ty, ver);
            if path.exists() {
                continue;
            }
            if write_missing {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                let fixture = json!({
                    "aggregate_type": c.aggregate_type,
                    "event_type": ty,
                    "event_version": ver,
                    "payload": payload,
                });
                let text = serde_json::to_string_pretty(&fixture).unwrap() + "\n";
                std::fs::write(&path, text).unwrap();
            } else {
                missing.push(path.display().to_string());
            }
        }
    }
    assert!(
        missing.is_empty(),
        "missing golden fixtures (write them with LEDGER_WRITE_MISSING_GOLDEN=1, review, commit):\n{}",
        missing.join("\n")
    );
}

#[test]
fn every_golden_fixture_ever_written_still_loads() {
    let contracts = contracts();
    let mut loaded = 0;
    for entry in walk(&golden_dir()) {
        let text = std::fs::read_to_string(&entry).unwrap();
        let fixture: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: not JSON: {e}", entry.display()));
        let aggregate_type = fixture["aggregate_type"].as_str().unwrap();
        let event_type = fixture["event_type"].as_str().unwrap();
        let event_version = fixture["event_version"].as_str().unwrap();
        let payload = fixture["payload"].clone();
        let c = contracts
            .iter()
            .find(|c| c.aggregate_type == aggregate_type)
            .unwrap_or_else(|| panic!("{}: unknown aggregate {aggregate_type}", entry.display()));
        let reencoded = (c.decode)(event_type, event_version, payload.clone())
            .unwrap_or_else(|e| panic!("{} no longer loads: {e}", entry.display()));
        let is_current = c
            .versions
            .iter()
            .any(|(t, v)| *t == event_type && *v == event_version);
        if is_current {
            assert_eq!(
                reencoded,
                payload,
                "{}: a current event must re-encode to exactly its stored payload",
                entry.display()
            );
        }
        loaded += 1;
    }
    assert!(loaded >= contracts.iter().map(|c| c.versions.len()).sum::<usize>());
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else if path.extension().is_some_and(|e| e == "json") {
            files.push(path);
        }
    }
    files.sort();
    files
}
