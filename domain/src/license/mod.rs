//! The License aggregate: the *right* to use a product — who, what, until when, how many seats,
//! which features — and its lifecycle (issue, suspend, reinstate, renew, transfer, revoke,
//! entitlements, seats, key rotation, maintenance).
//!
//! Status is never stored: [`crate::status::status_at`] derives it from the state and the clock.
//! The *use* of the right (installations, floating leases) lives in the same stream, so seat limits
//! are decided against one consistent state: two activations racing for the last seat append at
//! the same sequence and the database lets only one of them through.
//!
//! Billing facts (subscription linked, payment failed, paused, canceled) are recorded by the
//! Stripe integration; the validation decision reads them through
//! [`LicenseFacts`](crate::validation::LicenseFacts).
//!
//! # Layout
//! This module is the aggregate itself ([`License`] and its cqrs-es `Aggregate` impl); the rest
//! is split by concern, and every public item is re-exported here, so `domain::license::X` is the
//! one path to use:
//! - `command`: what can be asked of a license ([`LicenseCommand`], [`LicenseAction`],
//!   [`IssueLicense`]).
//! - `event`: the stored contract ([`LicenseEvent`], [`LicenseIssued`], event types, versions and
//!   the upcaster). Read it apart from the decisions: what serializes here is hashed and kept.
//! - `state`: what the events fold into ([`LicenseState`], [`Activation`], [`Billing`]) and
//!   [`License::fold`], the one fold every reader of a license stream goes through.
//! - `decide`: [`License::decide`], the rule behind each command.

mod command;
mod decide;
mod event;
mod state;
#[cfg(test)]
pub(crate) mod tests;

use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use serde::{Deserialize, Serialize};

use crate::error::DomainError;
use crate::stream::AggregateType;

pub use command::{Assignee, IssueLicense, LicenseAction, LicenseCommand};
pub use event::{LicenseEvent, LicenseIssued};
pub use state::{Activation, Billing, LicenseState};

/// The License aggregate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum License {
    /// No `LicenseIssued` yet.
    #[default]
    NotIssued,
    Issued(Box<LicenseState>),
}

impl License {
    /// The state, when issued.
    pub fn state(&self) -> Option<&LicenseState> {
        match self {
            Self::NotIssued => None,
            Self::Issued(s) => Some(s),
        }
    }
}

impl Aggregate for License {
    const TYPE: &'static str = AggregateType::License.as_str();
    type Command = LicenseCommand;
    type Event = LicenseEvent;
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
        self.fold(event);
    }
}
