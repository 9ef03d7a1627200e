//! The administration token: issued first, so that every administrative command of the seeded
//! history has an actor that resolves ([`Generator::admin`]).

use domain::Timestamp;
use domain::api_token::{ApiToken, ApiTokenAction, ApiTokenCommand};
use domain::event::Actor;
use domain::ids::ApiTokenId;
use domain::keys::ApiTokenSecret;
use domain::values::{Name, Role};

use super::generator::Generator;
use super::random::v7;

impl Generator {
    /// The administration token the seeded administrators act with.
    pub(super) fn admin(&self) -> Actor {
        self.token
            .as_ref()
            .map_or(Actor::Operator, |id| Actor::ApiToken(*id))
    }

    pub(super) fn token(&mut self, at: Timestamp) -> anyhow::Result<()> {
        let id = ApiTokenId::from_uuid(v7(&mut self.rng, at));
        // A real token whose secret nobody keeps: its stream exists so the actor of the seeded
        // administration resolves, but it authenticates no one.
        let secret = ApiTokenSecret::from_entropy(id, &self.rng.bytes::<30>());
        let events = ApiToken::NotIssued.decide(&ApiTokenCommand {
            token_id: id,
            at,
            action: ApiTokenAction::Issue {
                role: Role::VendorAdmin,
                label: Some(Name::parse("Seed administration")?),
                token_hash: secret.hash(),
                expires_at: None,
                organization: None,
            },
        })?;
        let mut stream = self.out.stream(id.to_string());
        // `ledger token` is run by an operator at the server's command line.
        let meta = self.metadata(Actor::Operator, at)?;
        self.out.emit(&mut stream, &events, &meta, at)?;
        self.token = Some(id);
        Ok(())
    }
}
