//! The ApiToken aggregate: administration bearer tokens as event streams, so who held which role
//! when is part of the audited history, and a revocation is effective on the very next request
//! (authentication folds the token's own stream; there is no cache to go stale).

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::Timestamp;
use crate::error::DomainError;
use crate::event::VersionedEvent;
use crate::ids::ApiTokenId;
use crate::keys::KeyHash;
use crate::stream::AggregateType;
use crate::values::{Name, Role};

/// A command to a token.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiTokenCommand {
    pub token_id: ApiTokenId,
    pub at: Timestamp,
    pub action: ApiTokenAction,
}

/// What to do to the token.
#[derive(Clone, Debug, PartialEq)]
pub enum ApiTokenAction {
    Issue {
        role: Role,
        label: Option<Name>,
        token_hash: KeyHash,
        expires_at: Option<Timestamp>,
    },
    Revoke,
}

/// Events of a token's stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ApiTokenEvent {
    #[serde(rename = "ApiTokenIssued")]
    Issued {
        role: Role,
        label: Option<Name>,
        token_hash: KeyHash,
        issued_at: Timestamp,
        expires_at: Option<Timestamp>,
    },
    #[serde(rename = "ApiTokenRevoked")]
    Revoked { revoked_at: Timestamp },
}

impl DomainEvent for ApiTokenEvent {
    fn event_type(&self) -> String {
        match self {
            Self::Issued { .. } => "ApiTokenIssued",
            Self::Revoked { .. } => "ApiTokenRevoked",
        }
        .to_owned()
    }
    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

impl VersionedEvent for ApiTokenEvent {
    const AGGREGATE_TYPE: &'static str = AggregateType::ApiToken.as_str();
    const VERSIONS: &'static [(&'static str, &'static str)] =
        &[("ApiTokenIssued", "1"), ("ApiTokenRevoked", "1")];
}

/// The state of an issued token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiTokenState {
    pub role: Role,
    pub label: Option<Name>,
    pub token_hash: KeyHash,
    pub issued_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

/// Why a presented token does not authenticate. Callers answer 401 for all of them alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejection {
    #[error("unknown token")]
    Unknown,
    #[error("token does not match")]
    Mismatch,
    #[error("token revoked")]
    Revoked,
    #[error("token expired")]
    Expired,
}

/// The ApiToken aggregate.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApiToken {
    #[default]
    NotIssued,
    Issued(ApiTokenState),
}

impl ApiToken {
    /// The state, when issued.
    pub fn state(&self) -> Option<&ApiTokenState> {
        match self {
            Self::NotIssued => None,
            Self::Issued(s) => Some(s),
        }
    }

    /// Checks a presented token's hash at `now` and returns the role it grants.
    ///
    /// # Errors
    /// Why the token does not authenticate.
    pub fn authenticate(
        &self,
        presented: &KeyHash,
        now: Timestamp,
    ) -> Result<Role, TokenRejection> {
        let state = self.state().ok_or(TokenRejection::Unknown)?;
        // Constant time: the comparison does not reveal how much of a guess was right.
        if !state.token_hash.ct_eq(presented) {
            return Err(TokenRejection::Mismatch);
        }
        if state.revoked_at.is_some() {
            return Err(TokenRejection::Revoked);
        }
        if state.expires_at.is_some_and(|e| now >= e) {
            return Err(TokenRejection::Expired);
        }
        Ok(state.role)
    }

    /// Decides a command.
    ///
    /// # Errors
    /// The [`DomainError`] naming the refused rule.
    pub fn decide(&self, cmd: &ApiTokenCommand) -> Result<Vec<ApiTokenEvent>, DomainError> {
        match (self, &cmd.action) {
            (
                Self::NotIssued,
                ApiTokenAction::Issue {
                    role,
                    label,
                    token_hash,
                    expires_at,
                },
            ) => Ok(vec![ApiTokenEvent::Issued {
                role: *role,
                label: label.clone(),
                token_hash: *token_hash,
                issued_at: cmd.at,
                expires_at: *expires_at,
            }]),
            (Self::Issued(_), ApiTokenAction::Issue { .. }) => {
                Err(DomainError::ApiTokenAlreadyIssued(cmd.token_id))
            }
            (Self::NotIssued, ApiTokenAction::Revoke) => {
                Err(DomainError::ApiTokenNotFound(cmd.token_id))
            }
            (Self::Issued(state), ApiTokenAction::Revoke) => {
                if state.revoked_at.is_some() {
                    return Err(DomainError::ApiTokenAlreadyRevoked(cmd.token_id));
                }
                Ok(vec![ApiTokenEvent::Revoked { revoked_at: cmd.at }])
            }
        }
    }
}

impl Aggregate for ApiToken {
    const TYPE: &'static str = AggregateType::ApiToken.as_str();
    type Command = ApiTokenCommand;
    type Event = ApiTokenEvent;
    type Error = DomainError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(&command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            ApiTokenEvent::Issued {
                role,
                label,
                token_hash,
                issued_at,
                expires_at,
            } => {
                *self = Self::Issued(ApiTokenState {
                    role,
                    label,
                    token_hash,
                    issued_at,
                    expires_at,
                    revoked_at: None,
                });
            }
            ApiTokenEvent::Revoked { revoked_at } => {
                if let Self::Issued(state) = self {
                    state.revoked_at = Some(revoked_at);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;
    use uuid::Uuid;

    fn tid() -> ApiTokenId {
        ApiTokenId::from_uuid(Uuid::from_u128(1))
    }
    fn now() -> Timestamp {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }
    fn issued(expires_at: Option<Timestamp>) -> ApiTokenEvent {
        ApiTokenEvent::Issued {
            role: Role::VendorAdmin,
            label: None,
            token_hash: KeyHash::from_bytes([1; 32]),
            issued_at: now(),
            expires_at,
        }
    }
    fn token(events: Vec<ApiTokenEvent>) -> ApiToken {
        let mut t = ApiToken::default();
        for e in events {
            t.apply(e);
        }
        t
    }

    #[test]
    fn a_matching_live_token_grants_its_role() {
        let t = token(vec![issued(None)]);
        assert_eq!(
            t.authenticate(&KeyHash::from_bytes([1; 32]), now()),
            Ok(Role::VendorAdmin)
        );
    }

    #[test]
    fn wrong_revoked_expired_and_unknown_tokens_are_refused() {
        let hash = KeyHash::from_bytes([1; 32]);
        assert_eq!(
            token(vec![issued(None)]).authenticate(&KeyHash::from_bytes([2; 32]), now()),
            Err(TokenRejection::Mismatch)
        );
        assert_eq!(
            token(vec![
                issued(None),
                ApiTokenEvent::Revoked { revoked_at: now() }
            ])
            .authenticate(&hash, now()),
            Err(TokenRejection::Revoked)
        );
        assert_eq!(
            token(vec![issued(Some(now()))]).authenticate(&hash, now()),
            Err(TokenRejection::Expired)
        );
        assert_eq!(
            ApiToken::default().authenticate(&hash, now()),
            Err(TokenRejection::Unknown)
        );
    }

    #[test]
    fn revoking_twice_or_an_unknown_token_is_refused() {
        let revoke = ApiTokenCommand {
            token_id: tid(),
            at: now(),
            action: ApiTokenAction::Revoke,
        };
        TestFramework::<ApiToken>::with(())
            .given(vec![
                issued(None),
                ApiTokenEvent::Revoked { revoked_at: now() },
            ])
            .when(revoke.clone())
            .then_expect_error(DomainError::ApiTokenAlreadyRevoked(tid()));
        TestFramework::<ApiToken>::with(())
            .given_no_previous_events()
            .when(revoke.clone())
            .then_expect_error(DomainError::ApiTokenNotFound(tid()));
        TestFramework::<ApiToken>::with(())
            .given(vec![issued(None)])
            .when(revoke)
            .then_expect_events(vec![ApiTokenEvent::Revoked { revoked_at: now() }]);
    }
}
