//! Unit and property tests of the value types: the bounds each `parse` enforces, and the JSON
//! each one writes, pinned to the plain form it used to go into (a stored contract, ADR 0009).

use super::*;
use proptest::prelude::*;

/// The hand-written `Serialize`s write what `#[serde(into = ...)]` wrote: event payloads are
/// hashed as stored, and states written before and after must be the same text. Quotes,
/// escapes and non-ASCII go through the same string serializer.
#[test]
fn values_serialize_as_the_types_they_used_to_go_into() {
    fn same<T: Serialize + Clone, U: Serialize + From<T>>(v: &T) {
        assert_eq!(
            serde_json::to_string(v).unwrap(),
            serde_json::to_string(&U::from(v.clone())).unwrap()
        );
    }
    same::<_, String>(&Name::parse("Acme \"Québec\" \\ GmbH").unwrap());
    same::<_, String>(&Reason::parse("chargeback — see ticket #42 \u{1F600}").unwrap());
    same::<_, String>(&FeatureCode::parse("export.pdf").unwrap());
    same::<_, String>(&KeyPrefix::parse("ACME").unwrap());
    same::<_, String>(&Fingerprint::parse("a1b2+/=:_-.").unwrap());
    same::<_, String>(&Label::parse("Jürgen's \"laptop\"").unwrap());
    same::<_, Vec<FeatureCode>>(&FeatureSet::parse(&["pro", "export.pdf", "FeatureX"]).unwrap());
    same::<_, Vec<FeatureCode>>(&FeatureSet::default());
    let set = FeatureSet::parse(&["b", "a"]).unwrap();
    assert_eq!(serde_json::to_string(&set).unwrap(), r#"["a","b"]"#);
    let back: FeatureSet = serde_json::from_str(&serde_json::to_string(&set).unwrap()).unwrap();
    assert_eq!(back, set);
}

#[test]
fn names_are_trimmed_and_bounded() {
    assert_eq!(Name::parse("  Acme  ").unwrap().as_str(), "Acme");
    assert!(Name::parse("   ").is_err());
    assert!(Name::parse(&"x".repeat(201)).is_err());
    assert!(Name::parse("a\u{0}b").is_err());
    assert!(Name::parse(&"é".repeat(200)).is_ok());
}

#[test]
fn seat_counts_refuse_zero_and_absurd_values() {
    assert!(SeatCount::new(0).is_err());
    assert!(SeatCount::new(SeatCount::MAX + 1).is_err());
    assert_eq!(SeatCount::new(5).unwrap().get(), 5);
    assert!(serde_json::from_str::<SeatCount>("0").is_err());
}

#[test]
fn feature_sets_are_sorted_and_deduplicated() {
    let set = FeatureSet::parse(&["pro", "export", "pro"]).unwrap();
    let codes: Vec<&str> = set.iter().map(FeatureCode::as_str).collect();
    assert_eq!(codes, ["export", "pro"]);
    assert!(FeatureSet::parse(&["bad code"]).is_err());
    let too_many: Vec<String> = (0..257).map(|i| format!("f{i}")).collect();
    assert!(FeatureSet::parse(&too_many).is_err());
}

#[test]
fn key_prefixes_derive_from_product_names() {
    let name = Name::parse("Acme Studio Pro").unwrap();
    assert_eq!(KeyPrefix::from_product_name(&name).as_str(), "ACMEST");
    let name = Name::parse("é").unwrap();
    assert_eq!(KeyPrefix::from_product_name(&name).as_str(), "LIC");
    assert!(KeyPrefix::parse("acme").is_err());
}

#[test]
fn fingerprints_accept_hashes_and_refuse_the_rest() {
    assert!(Fingerprint::parse("a1b2:c3/d4+e5==").is_ok());
    assert!(Fingerprint::parse("").is_err());
    assert!(Fingerprint::parse("has space").is_err());
    assert!(Fingerprint::parse(&"f".repeat(257)).is_err());
    assert!(Label::parse("build-server-01").is_ok());
    assert!(Label::parse("bad\nline").is_err());
}

#[test]
fn text_enums_parse_only_their_spellings() {
    assert_eq!(
        LicenseModel::parse("floating").unwrap(),
        LicenseModel::Floating
    );
    let err = LicenseModel::parse("usage").unwrap_err();
    assert!(err.message().contains("node_locked"));
    assert_eq!(
        serde_json::to_string(&ProductKind::CloudService).unwrap(),
        "\"cloud_service\""
    );
}

proptest! {
    #[test]
    fn any_accepted_feature_code_round_trips(code in "[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}") {
        let parsed = FeatureCode::parse(&code).unwrap();
        let json = serde_json::to_string(&parsed).unwrap();
        prop_assert_eq!(serde_json::from_str::<FeatureCode>(&json).unwrap(), parsed);
    }

    #[test]
    fn names_never_hold_surrounding_whitespace(raw in "\\PC{0,220}") {
        if let Ok(name) = Name::parse(&raw) {
            prop_assert_eq!(name.as_str(), name.as_str().trim());
            prop_assert!(!name.as_str().is_empty());
            prop_assert!(name.as_str().chars().count() <= 200);
        }
    }
}

#[test]
fn a_new_name_must_show_something() {
    for invisible in [
        "\u{200b}",
        "\u{200b}\u{200c}\u{200d}",
        " \u{feff} ",
        "\u{2060}\u{00ad}",
        "\u{e0041}\u{e0042}",
        "\u{3164}",
        "\u{16fe4}",
        "\u{fffe}\u{ffff}",
        "\u{e000}",
        "\u{fffc}",
        "\u{0300}",
        "\u{0378}",
    ] {
        let err = NewName::parse(invisible).unwrap_err();
        assert!(err.message().contains("visible"), "{invisible:?}: {err}");
        // A name of that kind already recorded still loads: the stored contract is `Name`'s.
        assert!(Name::parse(invisible).is_ok(), "{invisible:?}");
    }
    for shown in [
        "Acme",
        "株式会社",
        "Ünïcødé 😀",
        "#1",
        "Ω",
        "می\u{200c}خواهم",
        "👩\u{200d}💻 Lab",
    ] {
        assert!(NewName::parse(shown).is_ok(), "{shown:?}");
    }
    let json: Result<NewName, _> = serde_json::from_str("\"\\u200b\"");
    assert!(json.is_err());
}

#[test]
fn a_new_name_may_not_reorder_or_hide_text() {
    for sly in [
        "Evil\u{202e}exe.gpj",
        "\u{202d}Acme",
        "Zero\u{200b}Width",
        "A\u{2066}B\u{2069}",
        "Word\u{2060}Joiner",
        "\u{feff}Acme",
        "Left\u{200e}Mark",
        "Soft\u{00ad}Hyphen",
        "Tag\u{e0041}",
        "Invisible\u{2062}Times",
    ] {
        let err = NewName::parse(sly).unwrap_err();
        assert!(
            err.message().contains("reorders or hides"),
            "{sly:?}: {err}"
        );
        // Recorded before the rule, it still loads.
        assert!(Name::parse(sly).is_ok(), "{sly:?}");
    }
}

#[test]
fn emails_are_one_address_in_lower_case() {
    assert_eq!(
        Email::parse(" Ana@ACME.example ").unwrap().as_str(),
        "ana@acme.example"
    );
    for bad in [
        "",
        "ana",
        "@acme.example",
        "ana@",
        "a@b@c",
        "ana @acme.example",
        "ana\u{200b}@acme.example",
        "a\u{0}@b",
    ] {
        assert!(Email::parse(bad).is_err(), "{bad:?}");
    }
    // Only ASCII letters fold: the Kelvin sign is not `k`.
    assert_ne!(
        Email::parse("\u{212a}ate@corp.example").unwrap(),
        Email::parse("kate@corp.example").unwrap()
    );
    assert!(Email::parse(&format!("{}@x.example", "a".repeat(250))).is_err());
}

#[test]
fn issuers_are_urls_without_query_or_fragment_and_subjects_are_bounded() {
    assert!(Issuer::parse("https://login.example.com/tenant/v2.0").is_ok());
    assert!(Issuer::parse("http://127.0.0.1:4444").is_ok());
    for bad in [
        "",
        "login.example.com",
        "ftp://x",
        "https://x?a=1",
        "https://x#f",
        "https://x y",
    ] {
        assert!(Issuer::parse(bad).is_err(), "{bad:?}");
    }
    assert!(Subject::parse("248289761001").is_ok());
    assert!(Subject::parse("").is_err());
    assert!(Subject::parse(&"s".repeat(256)).is_err());
    assert!(Subject::parse("a\nb").is_err());
}

proptest! {
    /// What an email stores parses again to itself: its events always load.
    #[test]
    fn an_email_reads_back_as_stored(local in "[a-zA-Z0-9İıßẞΣ.+_-]{1,80}", domain in "[a-zA-Z0-9İΣ.-]{1,120}") {
        if let Ok(email) = Email::parse(&format!("{local}@{domain}")) {
            prop_assert_eq!(Email::parse(email.as_str()), Ok(email.clone()));
            prop_assert!(email.as_str().chars().count() <= 254);
        }
    }
}

#[test]
fn an_email_keeps_its_other_characters_as_they_are() {
    // Full lower-casing would make `İ` two characters and the Kelvin sign a `k`.
    let email = Email::parse("İSTANBUL@Example.COM").unwrap();
    assert_eq!(email.as_str(), "İstanbul@example.com");
    assert_eq!(Email::parse(email.as_str()), Ok(email));
}
