//! The Product aggregate: an application, plugin, feature or cloud service of the vendor's
//! catalogue, identified towards client software by its App GUID.
//!
//! That an App GUID belongs to one product only is a cross-stream rule: the write side claims the
//! GUID in the same statement that appends `ProductDefined` (see `commands::store`).

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::Timestamp;
use crate::error::DomainError;
use crate::event::{UniqueClaim, VersionedEvent};
use crate::ids::{AppId, ProductId};
use crate::release::{UpgradePath, Version, VersionRange};
use crate::stream::{AggregateType, ClaimScope};
use crate::values::{KeyPrefix, Name, ProductKind};

/// What the write side knows about a product a command refers to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductFacts {
    pub name: Name,
    pub kind: ProductKind,
    pub app_id: AppId,
    pub key_prefix: KeyPrefix,
}

/// A reference to a product, with its facts when it exists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductRef {
    pub id: ProductId,
    pub facts: Option<ProductFacts>,
}

impl ProductRef {
    /// The facts of a product that exists.
    ///
    /// # Errors
    /// `ProductNotFound`.
    pub fn require(&self) -> Result<&ProductFacts, DomainError> {
        self.facts
            .as_ref()
            .ok_or(DomainError::ProductNotFound(self.id))
    }
}

/// A command to a product.
#[derive(Clone, Debug, PartialEq)]
pub struct ProductCommand {
    pub product_id: ProductId,
    pub at: Timestamp,
    pub action: ProductAction,
}

/// What to do to the product.
#[derive(Clone, Debug, PartialEq)]
pub enum ProductAction {
    Define {
        name: Name,
        kind: ProductKind,
        app_id: AppId,
        parent: Option<ProductRef>,
        key_prefix: KeyPrefix,
    },
    /// Declares (or re-declares, replacing its steps) the path from `path.from` to `path.to`.
    DeclareUpgradePath { path: UpgradePath },
}

/// Events of a product's stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ProductEvent {
    #[serde(rename = "ProductDefined")]
    Defined {
        name: Name,
        kind: ProductKind,
        app_id: AppId,
        parent_product_id: Option<ProductId>,
        key_prefix: KeyPrefix,
    },
    /// Customers on a version `from` matches reach `to` only through `via`, in order (ADR 0023).
    #[serde(rename = "UpgradePathDeclared")]
    UpgradePathDeclared {
        from: VersionRange,
        to: Version,
        via: Vec<Version>,
    },
}

impl DomainEvent for ProductEvent {
    fn event_type(&self) -> String {
        match self {
            Self::Defined { .. } => "ProductDefined",
            Self::UpgradePathDeclared { .. } => "UpgradePathDeclared",
        }
        .to_owned()
    }
    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

impl VersionedEvent for ProductEvent {
    const AGGREGATE_TYPE: &'static str = AggregateType::Product.as_str();
    const VERSIONS: &'static [(&'static str, &'static str)] =
        &[("ProductDefined", "1"), ("UpgradePathDeclared", "1")];

    /// An App GUID identifies exactly one product.
    fn unique_claims(&self) -> Vec<UniqueClaim> {
        match self {
            Self::Defined { app_id, .. } => vec![UniqueClaim {
                scope: ClaimScope::AppId.as_str(),
                value: app_id.to_string(),
            }],
            Self::UpgradePathDeclared { .. } => Vec::new(),
        }
    }
}

/// The state of a defined product.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductState {
    pub name: Name,
    pub kind: ProductKind,
    pub app_id: AppId,
    pub parent_product_id: Option<ProductId>,
    pub key_prefix: KeyPrefix,
    /// Declared upgrade paths, one per `(from, to)`, in the order first declared.
    #[serde(default)]
    pub upgrade_paths: Vec<UpgradePath>,
}

impl ProductState {
    /// The facts other aggregates' commands need about this product.
    pub fn facts(&self) -> ProductFacts {
        ProductFacts {
            name: self.name.clone(),
            kind: self.kind,
            app_id: self.app_id,
            key_prefix: self.key_prefix.clone(),
        }
    }
}

/// The Product aggregate.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Product {
    #[default]
    Undefined,
    Defined(ProductState),
}

impl Product {
    /// The state, when defined.
    pub fn state(&self) -> Option<&ProductState> {
        match self {
            Self::Undefined => None,
            Self::Defined(s) => Some(s),
        }
    }

    /// Decides a command.
    ///
    /// # Errors
    /// The [`DomainError`] naming the refused rule.
    pub fn decide(&self, cmd: &ProductCommand) -> Result<Vec<ProductEvent>, DomainError> {
        match (&cmd.action, self) {
            (ProductAction::DeclareUpgradePath { .. }, Self::Undefined) => {
                Err(DomainError::ProductNotFound(cmd.product_id))
            }
            (ProductAction::DeclareUpgradePath { path }, Self::Defined(state)) => {
                // The same declaration again changes nothing and records nothing (a retry).
                if state.upgrade_paths.contains(path) {
                    return Ok(Vec::new());
                }
                Ok(vec![ProductEvent::UpgradePathDeclared {
                    from: path.from.clone(),
                    to: path.to.clone(),
                    via: path.via.clone(),
                }])
            }
            (ProductAction::Define { .. }, Self::Defined(_)) => {
                Err(DomainError::ProductAlreadyDefined(cmd.product_id))
            }
            (
                ProductAction::Define {
                    name,
                    kind,
                    app_id,
                    parent,
                    key_prefix,
                },
                Self::Undefined,
            ) => {
                let parent_product_id = match parent {
                    None if kind.requires_parent() => {
                        return Err(DomainError::ParentProductRequired(kind.as_str()));
                    }
                    None => None,
                    Some(_) if !kind.requires_parent() => {
                        return Err(DomainError::InvalidParentProduct(format!(
                            "an {} product has no parent product",
                            kind.as_str()
                        )));
                    }
                    Some(parent) => {
                        let facts = parent.require()?;
                        if !facts.kind.can_be_parent() {
                            return Err(DomainError::InvalidParentProduct(format!(
                                "product {} is a {}; only applications and cloud services can be parents",
                                parent.id,
                                facts.kind.as_str()
                            )));
                        }
                        Some(parent.id)
                    }
                };
                Ok(vec![ProductEvent::Defined {
                    name: name.clone(),
                    kind: *kind,
                    app_id: *app_id,
                    parent_product_id,
                    key_prefix: key_prefix.clone(),
                }])
            }
        }
    }
}

impl Aggregate for Product {
    const TYPE: &'static str = AggregateType::Product.as_str();
    type Command = ProductCommand;
    type Event = ProductEvent;
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
            ProductEvent::Defined {
                name,
                kind,
                app_id,
                parent_product_id,
                key_prefix,
            } => {
                *self = Self::Defined(ProductState {
                    name,
                    kind,
                    app_id,
                    parent_product_id,
                    key_prefix,
                    upgrade_paths: Vec::new(),
                });
            }
            ProductEvent::UpgradePathDeclared { from, to, via } => {
                if let Self::Defined(state) = self {
                    let path = UpgradePath { from, to, via };
                    match state
                        .upgrade_paths
                        .iter_mut()
                        .find(|p| p.from == path.from && p.to == path.to)
                    {
                        Some(declared) => *declared = path,
                        None => state.upgrade_paths.push(path),
                    }
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

    type Fw = TestFramework<Product>;

    fn pid(n: u128) -> ProductId {
        ProductId::from_uuid(Uuid::from_u128(n))
    }
    fn app(n: u128) -> AppId {
        AppId::parse(Uuid::from_u128(n)).unwrap()
    }
    fn define(kind: ProductKind, parent: Option<ProductRef>) -> ProductCommand {
        ProductCommand {
            product_id: pid(1),
            at: "2026-01-01T00:00:00Z".parse().unwrap(),
            action: ProductAction::Define {
                name: Name::parse("Acme Studio").unwrap(),
                kind,
                app_id: app(100),
                parent,
                key_prefix: KeyPrefix::parse("ACME").unwrap(),
            },
        }
    }
    fn parent(kind: ProductKind) -> ProductRef {
        ProductRef {
            id: pid(2),
            facts: Some(ProductFacts {
                name: Name::parse("Host").unwrap(),
                kind,
                app_id: app(200),
                key_prefix: KeyPrefix::parse("HOST").unwrap(),
            }),
        }
    }
    fn defined(kind: ProductKind, parent_product_id: Option<ProductId>) -> ProductEvent {
        ProductEvent::Defined {
            name: Name::parse("Acme Studio").unwrap(),
            kind,
            app_id: app(100),
            parent_product_id,
            key_prefix: KeyPrefix::parse("ACME").unwrap(),
        }
    }

    #[test]
    fn an_application_is_defined_without_a_parent() {
        Fw::with(())
            .given_no_previous_events()
            .when(define(ProductKind::Application, None))
            .then_expect_events(vec![defined(ProductKind::Application, None)]);
    }

    #[test]
    fn a_plugin_needs_an_application_parent() {
        Fw::with(())
            .given_no_previous_events()
            .when(define(ProductKind::Plugin, None))
            .then_expect_error(DomainError::ParentProductRequired("plugin"));
        Fw::with(())
            .given_no_previous_events()
            .when(define(
                ProductKind::Plugin,
                Some(parent(ProductKind::Application)),
            ))
            .then_expect_events(vec![defined(ProductKind::Plugin, Some(pid(2)))]);
        let refused = Fw::with(())
            .given_no_previous_events()
            .when(define(
                ProductKind::Feature,
                Some(parent(ProductKind::Plugin)),
            ))
            .inspect_result();
        assert_eq!(refused.unwrap_err().code(), "INVALID_PARENT_PRODUCT");
    }

    #[test]
    fn a_missing_parent_is_not_found() {
        Fw::with(())
            .given_no_previous_events()
            .when(define(
                ProductKind::Feature,
                Some(ProductRef {
                    id: pid(9),
                    facts: None,
                }),
            ))
            .then_expect_error(DomainError::ProductNotFound(pid(9)));
    }

    #[test]
    fn an_application_with_a_parent_is_refused() {
        let refused = Fw::with(())
            .given_no_previous_events()
            .when(define(
                ProductKind::Application,
                Some(parent(ProductKind::Application)),
            ))
            .inspect_result();
        assert_eq!(refused.unwrap_err().code(), "INVALID_PARENT_PRODUCT");
    }

    #[test]
    fn upgrade_paths_are_declared_on_a_defined_product_and_a_repeat_records_nothing() {
        let path = |via: &[&str]| {
            UpgradePath::new(
                VersionRange::parse("7.2").unwrap(),
                Version::parse("7.6.0").unwrap(),
                via.iter().map(|v| Version::parse(v).unwrap()).collect(),
            )
            .unwrap()
        };
        let declare = |p: UpgradePath| ProductCommand {
            product_id: pid(1),
            at: "2026-01-01T00:00:00Z".parse().unwrap(),
            action: ProductAction::DeclareUpgradePath { path: p },
        };
        let declared = |p: UpgradePath| ProductEvent::UpgradePathDeclared {
            from: p.from,
            to: p.to,
            via: p.via,
        };
        Fw::with(())
            .given_no_previous_events()
            .when(declare(path(&["7.4.0"])))
            .then_expect_error(DomainError::ProductNotFound(pid(1)));
        let defined = defined(ProductKind::Application, None);
        Fw::with(())
            .given(vec![defined.clone()])
            .when(declare(path(&["7.4.0"])))
            .then_expect_events(vec![declared(path(&["7.4.0"]))]);
        Fw::with(())
            .given(vec![defined.clone(), declared(path(&["7.4.0"]))])
            .when(declare(path(&["7.4.0"])))
            .then_expect_events(vec![]);
        // Another `via` for the same (from, to) replaces the first.
        let mut product = Product::default();
        for e in [
            defined,
            declared(path(&["7.4.0"])),
            declared(path(&["7.3.0", "7.4.0"])),
        ] {
            product.apply(e);
        }
        assert_eq!(
            product.state().unwrap().upgrade_paths,
            vec![path(&["7.3.0", "7.4.0"])]
        );
    }

    #[test]
    fn defining_twice_is_a_conflict() {
        Fw::with(())
            .given(vec![defined(ProductKind::Application, None)])
            .when(define(ProductKind::Application, None))
            .then_expect_error(DomainError::ProductAlreadyDefined(pid(1)));
    }
}
