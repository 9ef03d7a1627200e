//! The stored-event contract: how an aggregate's events become rows and come back, forever.
//!
//! An event is stored as `(event_type, event_version, payload, metadata)`. `event_type` and
//! `event_version` are literal strings written in the event enums (never derived from Rust type
//! names, never renamed); `payload` holds only the event's own fields, so SQL, auditors and other
//! languages read it without knowing our enum layout. Reading an older version goes through the
//! aggregate's upcaster first, so every version ever written keeps loading (`tests/golden`).

use std::fmt;
use std::str::FromStr;

use cqrs_es::DomainEvent;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::Timestamp;
use crate::ids::{ApiTokenId, UserId};

/// Why an event could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum EventCodecError {
    /// The stored type is not one this aggregate has ever written.
    #[error("unknown event type {event_type:?} for {aggregate_type}")]
    UnknownEventType {
        aggregate_type: &'static str,
        event_type: String,
    },
    /// The stored version is neither current nor upcastable (written by a newer server?).
    #[error("{event_type} version {event_version:?} cannot be read by this build")]
    UnsupportedVersion {
        event_type: String,
        event_version: String,
    },
    /// The payload does not have the fields its type and version promise.
    #[error("{event_type} payload does not match its schema: {source}")]
    Payload {
        event_type: String,
        #[source]
        source: serde_json::Error,
    },
    /// An event enum variant that does not serialize as `{"Type": {..}}`: a programming error.
    #[error("event {0} does not serialize as an externally tagged struct variant")]
    Shape(String),
}

/// An aggregate's event enum, with its stored contract.
///
/// Every variant must be a struct variant (`Suspended { .. }` or `Reinstated {}`) whose serde name
/// equals its `event_type()`; the golden-fixture tests check both for every variant.
pub trait VersionedEvent: DomainEvent + DeserializeOwned {
    /// The aggregate type these events belong to (the `aggregate_type` column).
    const AGGREGATE_TYPE: &'static str;

    /// Every event type this aggregate has ever written, with its current version.
    const VERSIONS: &'static [(&'static str, &'static str)];

    /// Turns the payload of an older `event_version` into the current version's payload.
    ///
    /// # Errors
    /// The default knows no older versions and refuses them.
    /// Values this event makes unique across every stream (an App GUID, a key hash). The write
    /// side claims them in the same statement that appends the event, so a duplicate refuses the
    /// whole command.
    fn unique_claims(&self) -> Vec<UniqueClaim> {
        Vec::new()
    }

    fn upcast(
        event_type: &str,
        event_version: &str,
        payload: Value,
    ) -> Result<Value, EventCodecError> {
        let _ = payload;
        Err(EventCodecError::UnsupportedVersion {
            event_type: event_type.to_owned(),
            event_version: event_version.to_owned(),
        })
    }
}

/// A value that must be unique within its scope across all streams.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UniqueClaim {
    /// What kind of value (`app_id`, `license_key`); also the error code's subject.
    pub scope: &'static str,
    pub value: String,
}

/// The payload to store for `event`: its fields without the enum tag.
///
/// # Errors
/// Only if the event type breaks the struct-variant rule of [`VersionedEvent`].
pub fn encode_payload<E: VersionedEvent>(event: &E) -> Result<Value, EventCodecError> {
    let tagged = serde_json::to_value(event).map_err(|e| EventCodecError::Payload {
        event_type: event.event_type(),
        source: e,
    })?;
    match tagged {
        Value::Object(map) if map.len() == 1 => {
            let (tag, inner) = map.into_iter().next().expect("one entry");
            if tag == event.event_type() && inner.is_object() {
                Ok(inner)
            } else {
                Err(EventCodecError::Shape(event.event_type()))
            }
        }
        _ => Err(EventCodecError::Shape(event.event_type())),
    }
}

/// Reads a stored event back, upcasting older versions first.
///
/// # Errors
/// When the type is unknown to `E`, the version cannot be read, or the payload does not fit.
pub fn decode_payload<E: VersionedEvent>(
    event_type: &str,
    event_version: &str,
    payload: Value,
) -> Result<E, EventCodecError> {
    if is_current::<E>(event_type, event_version)? {
        read_tagged(event_type, &payload)
    } else {
        read_tagged(event_type, &E::upcast(event_type, event_version, payload)?)
    }
}

/// [`decode_payload`] from a borrowed payload: the current version is read in place, only an
/// older one is copied (to be upcast). A rebuild decodes every event it folds, and the copy used
/// to cost more than the decoding.
///
/// # Errors
/// See [`decode_payload`].
pub fn decode_payload_ref<E: VersionedEvent>(
    event_type: &str,
    event_version: &str,
    payload: &Value,
) -> Result<E, EventCodecError> {
    if is_current::<E>(event_type, event_version)? {
        read_tagged(event_type, payload)
    } else {
        read_tagged(
            event_type,
            &E::upcast(event_type, event_version, payload.clone())?,
        )
    }
}

/// [`decode_payload`] from the payload's JSON text as stored: the current version is read straight
/// from the text, with no [`Value`] built in between; only an older one is parsed into a
/// [`Value`] (to be upcast). A rebuild reads a million payloads this way: building and freeing
/// their `Value`s was a quarter of its own work.
///
/// Whatever the text, the result is [`decode_payload`]'s: text the direct reading refuses is
/// read again through a [`Value`]. The store's `json` columns keep the text as written, so a
/// payload may name a field twice; a `Value` keeps the last, as PostgreSQL's `->>` does, where
/// a struct read from the text refuses the duplicate.
///
/// # Errors
/// See [`decode_payload`]; also a payload that is not JSON.
pub fn decode_payload_raw<E: VersionedEvent>(
    event_type: &str,
    event_version: &str,
    payload: &serde_json::value::RawValue,
) -> Result<E, EventCodecError> {
    let as_value = || -> Result<Value, EventCodecError> {
        serde_json::from_str(payload.get()).map_err(|e| EventCodecError::Payload {
            event_type: event_type.to_owned(),
            source: e,
        })
    };
    if is_current::<E>(event_type, event_version)? {
        read_tagged(event_type, payload).or_else(|_| read_tagged(event_type, &as_value()?))
    } else {
        read_tagged(
            event_type,
            &E::upcast(event_type, event_version, as_value()?)?,
        )
    }
}

/// Whether `event_version` is the version `E` writes today for `event_type`.
fn is_current<E: VersionedEvent>(
    event_type: &str,
    event_version: &str,
) -> Result<bool, EventCodecError> {
    let (_, current) = E::VERSIONS
        .iter()
        .find(|(t, _)| *t == event_type)
        .ok_or_else(|| EventCodecError::UnknownEventType {
            aggregate_type: E::AGGREGATE_TYPE,
            event_type: event_type.to_owned(),
        })?;
    Ok(event_version == *current)
}

/// `E` from a payload of the current version. `E` is externally tagged: it reads the one-entry
/// map `{event_type: payload}`, given here without building it.
fn read_tagged<'de, E, P>(event_type: &str, payload: P) -> Result<E, EventCodecError>
where
    E: VersionedEvent,
    P: serde::de::IntoDeserializer<'de, serde_json::Error>,
{
    let tagged = serde::de::value::MapDeserializer::<_, serde_json::Error>::new(std::iter::once((
        event_type, payload,
    )));
    E::deserialize(serde::de::value::MapAccessDeserializer::new(tagged)).map_err(|e| {
        EventCodecError::Payload {
            event_type: event_type.to_owned(),
            source: e,
        }
    })
}

/// Who caused an event.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Actor {
    /// A holder of an administration bearer token.
    ApiToken(ApiTokenId),
    /// A portal user.
    User(UserId),
    /// An operator at the server's command line (`ledger token`, `ledger keys`).
    Operator,
    /// Stripe, through a verified webhook.
    Stripe,
    /// The ledger itself (lease expiry, scheduled work).
    System,
    /// A client application presenting a license key (activations, offline tokens).
    Client,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ApiToken(id) => write!(f, "api_token:{id}"),
            Self::User(id) => write!(f, "user:{id}"),
            Self::Operator => f.write_str("operator"),
            Self::Stripe => f.write_str("stripe"),
            Self::System => f.write_str("system"),
            Self::Client => f.write_str("client"),
        }
    }
}

impl FromStr for Actor {
    type Err = crate::values::InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || crate::values::InvalidValue::new(format!("unknown actor {s:?}"));
        match s {
            "operator" => Ok(Self::Operator),
            "stripe" => Ok(Self::Stripe),
            "system" => Ok(Self::System),
            "client" => Ok(Self::Client),
            _ => {
                if let Some(id) = s.strip_prefix("api_token:") {
                    Ok(Self::ApiToken(id.parse().map_err(|_| bad())?))
                } else if let Some(id) = s.strip_prefix("user:") {
                    Ok(Self::User(id.parse().map_err(|_| bad())?))
                } else {
                    Err(bad())
                }
            }
        }
    }
}

impl Serialize for Actor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Actor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// What the ledger records about every event besides its payload. Stored as a JSON object of
/// strings (the shape cqrs-es uses for metadata); `recorded_at` is a column of its own, set by the
/// database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    /// Who caused it.
    pub actor: Actor,
    /// The request it came from (`X-Request-Id`), so one request's events can be found together.
    pub correlation_id: String,
    /// What caused it when that is not the request itself (a Stripe event id, an earlier event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    /// When the fact took effect in the world, where that differs from when it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_at: Option<Timestamp>,
    /// The client's `Idempotency-Key`, on the first event of the command that carried it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// A digest of the request the idempotency key was first used with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_hash: Option<String>,
    /// The vendor staff member acting as `actor` through an impersonation (issue #15): the
    /// audit trail names both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impersonated_by: Option<Actor>,
}

impl EventMetadata {
    /// Metadata for an event caused by `actor` within request `correlation_id`.
    pub fn new(actor: Actor, correlation_id: impl Into<String>) -> Self {
        Self {
            actor,
            correlation_id: correlation_id.into(),
            causation_id: None,
            effective_at: None,
            idempotency_key: None,
            request_hash: None,
            impersonated_by: None,
        }
    }
}

/// An event as it stands in the log, with everything the store adds to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent {
    /// Position in the whole log (identity; gaps where transactions rolled back).
    pub global_position: i64,
    /// The writing transaction (`xid8`); readers follow `(tx_id, global_position)`.
    pub tx_id: i64,
    /// The event's own id (UUID v7).
    pub event_id: Uuid,
    /// The aggregate type of the stream.
    pub aggregate_type: String,
    /// The aggregate id of the stream.
    pub aggregate_id: String,
    /// Position within the stream, from 1, contiguous.
    pub sequence: i64,
    /// Literal event type.
    pub event_type: String,
    /// Literal event version.
    pub event_version: String,
    /// The event's fields.
    pub payload: Value,
    /// The event's metadata object.
    pub metadata: Value,
    /// When the database recorded it.
    pub recorded_at: Timestamp,
    /// sha256(previous hash in the stream || canonical bytes of this event).
    pub hash: Vec<u8>,
}

impl RecordedEvent {
    /// The payload decoded as `E`, upcast when older.
    ///
    /// # Errors
    /// See [`decode_payload`].
    pub fn decode<E: VersionedEvent>(&self) -> Result<E, EventCodecError> {
        decode_payload_ref(&self.event_type, &self.event_version, &self.payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_round_trip_as_text() {
        let token = Actor::ApiToken(ApiTokenId::from_uuid(Uuid::now_v7()));
        for actor in [
            token,
            Actor::Operator,
            Actor::Stripe,
            Actor::System,
            Actor::Client,
        ] {
            let text = actor.to_string();
            assert_eq!(text.parse::<Actor>().unwrap(), actor);
        }
        assert!("api_token:nope".parse::<Actor>().is_err());
        assert!("root".parse::<Actor>().is_err());
    }

    #[test]
    fn metadata_is_an_object_of_strings_without_empty_fields() {
        let mut meta = EventMetadata::new(Actor::System, "req-1");
        meta.causation_id = Some("evt_123".into());
        let value = serde_json::to_value(&meta).unwrap();
        let object = value.as_object().unwrap();
        assert!(object.values().all(Value::is_string));
        assert!(!object.contains_key("effective_at"));
        // cqrs-es reads metadata as a map of strings: ours must fit.
        let as_map: std::collections::HashMap<String, String> =
            serde_json::from_value(value).unwrap();
        assert_eq!(as_map["actor"], "system");
    }
}
