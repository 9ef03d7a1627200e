//! `rm_users` (migration 0010): the users of each organization, for lists. Authentication never
//! reads it: it folds the user's own stream (`commands::ledger::users`), so this table's lag
//! cannot let a deactivated user in. Times are the events' `recorded_at`, so a rebuild writes
//! identical rows.

use async_trait::async_trait;
use domain::AggregateType;
use domain::event::RecordedEvent;
use domain::user::UserEvent;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::engine::{Projection, ProjectionError, ReplaySafe};

/// A role as the `roles` column spells it: `<organization id>:<role>`.
pub fn role_entry(organization_id: Uuid, role: &str) -> String {
    format!("{organization_id}:{role}")
}

/// `rm_users`.
#[derive(Clone, Copy, Debug, Default)]
pub struct UsersProjection;

#[async_trait]
impl Projection for UsersProjection {
    fn name(&self) -> &'static str {
        "users"
    }
    fn tables(&self) -> &'static [&'static str] {
        &["rm_users"]
    }
    fn aggregate_types(&self) -> &'static [AggregateType] {
        &[AggregateType::User]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        e: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        let id = Uuid::parse_str(&e.aggregate_id).map_err(|_| {
            ProjectionError::Inconsistent(format!(
                "User stream id {:?} is not a UUID",
                e.aggregate_id
            ))
        })?;
        let (at, v) = (e.recorded_at, e.sequence);
        let result = match e.decode::<UserEvent>()? {
            UserEvent::Registered {
                email,
                organization_id,
                issuer,
                subject,
            } => {
                sqlx::query(
                    "INSERT INTO rm_users (id, email, organization_id, issuer, subject, created_at, updated_at, version) \
                     VALUES ($1, $2, $3, $4, $5, $6, $6, $7)",
                )
                .bind(id)
                .bind(email.as_str())
                .bind(Uuid::from(organization_id))
                .bind(issuer.as_str())
                .bind(subject.as_str())
                .bind(at)
                .bind(v)
                .execute(&mut *conn)
                .await?
            }
            UserEvent::Invited {
                email,
                organization_id,
                roles,
                issuer,
            } => {
                let org = Uuid::from(organization_id);
                let roles: Vec<String> = roles
                    .iter()
                    .map(|r| role_entry(org, r.as_str()))
                    .collect();
                // `issuer` of an invitation: the provider it is claimed through (`subject` null
                // until then).
                sqlx::query(
                    "INSERT INTO rm_users (id, email, organization_id, issuer, roles, created_at, updated_at, version) \
                     VALUES ($1, $2, $3, $4, $5, $6, $6, $7)",
                )
                .bind(id)
                .bind(email.as_str())
                .bind(org)
                .bind(issuer.as_ref().map(|i| i.as_str()))
                .bind(roles)
                .bind(at)
                .bind(v)
                .execute(&mut *conn)
                .await?
            }
            UserEvent::InvitationClaimed { issuer, subject } => {
                sqlx::query(
                    "UPDATE rm_users SET issuer = $2, subject = $3, updated_at = $4, version = $5 WHERE id = $1",
                )
                .bind(id)
                .bind(issuer.as_str())
                .bind(subject.as_str())
                .bind(at)
                .bind(v)
                .execute(&mut *conn)
                .await?
            }
            UserEvent::RoleGranted {
                role,
                organization_id,
            } => {
                sqlx::query(
                    "UPDATE rm_users SET roles = array_append(array_remove(roles, $2), $2), updated_at = $3, version = $4 WHERE id = $1",
                )
                .bind(id)
                .bind(role_entry(organization_id.into(), role.as_str()))
                .bind(at)
                .bind(v)
                .execute(&mut *conn)
                .await?
            }
            UserEvent::RoleRevoked {
                role,
                organization_id,
            } => {
                sqlx::query(
                    "UPDATE rm_users SET roles = array_remove(roles, $2), updated_at = $3, version = $4 WHERE id = $1",
                )
                .bind(id)
                .bind(role_entry(organization_id.into(), role.as_str()))
                .bind(at)
                .bind(v)
                .execute(&mut *conn)
                .await?
            }
            UserEvent::Reactivated {} => {
                sqlx::query(
                    "UPDATE rm_users SET deactivated = false, updated_at = $2, version = $3 WHERE id = $1",
                )
                .bind(id)
                .bind(at)
                .bind(v)
                .execute(&mut *conn)
                .await?
            }
            UserEvent::Deactivated {} => {
                sqlx::query(
                    "UPDATE rm_users SET deactivated = true, updated_at = $2, version = $3 WHERE id = $1",
                )
                .bind(id)
                .bind(at)
                .bind(v)
                .execute(&mut *conn)
                .await?
            }
        };
        if result.rows_affected() == 1 {
            Ok(())
        } else {
            Err(ProjectionError::Inconsistent(format!(
                "{} at position {} found no row for {}",
                e.event_type, e.global_position, e.aggregate_id
            )))
        }
    }
}

impl ReplaySafe for UsersProjection {}
