//! Paging every list the same way (ADR 0017): `limit` rows in an [`Order`], and an opaque
//! cursor that continues the list where the previous page ended.
//!
//! A cursor is `base64url(version ‖ last key ‖ tag)`, where the tag is an HMAC-SHA256 (first 16
//! bytes) keyed by a key derived from the server's key pepper, over the list's name, its order,
//! its filters (and path ids) and the key. A cursor therefore continues only the list, order and
//! filters it was issued for: one from another list, with other filters, altered or made up
//! fails the tag and is refused ([`AppError::InvalidCursor`]) before any query runs. The key
//! inside is not secret (an id or log position the page already showed); the tag is what makes
//! it unforgeable, so a client cannot steer a query with a key it chose.

use hmac::{Hmac, KeyInit, Mac};
use projections::queries::{Order, Window};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::AppError;

/// The version byte of the cursor format.
const VERSION: u8 = 1;
/// Bytes of the tag kept in a cursor (128 bits: forging one is out of reach).
const TAG_BYTES: usize = 16;
/// The longest cursor text decoded at all (a UUID key's cursor is 44 characters).
const MAX_CURSOR_CHARS: usize = 64;

/// One page of a list: the items, and the cursor of the next page (absent on the last).
#[derive(Clone, Debug)]
pub struct Listed<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Where a list starts and how long it is, as the caller asked.
#[derive(Clone, Debug, Default)]
pub struct PageRequest {
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Items per page (the front end checks the range; the reader clamps it to 1-1000).
    pub limit: i64,
    pub order: Order,
}

/// A key a list pages by: its bytes in a cursor.
pub trait CursorKey: Sized + Copy {
    /// The key's bytes.
    fn to_bytes(self) -> Vec<u8>;
    /// The key back from its bytes; `None` when they are not one.
    fn from_bytes(bytes: &[u8]) -> Option<Self>;
}

impl CursorKey for Uuid {
    fn to_bytes(self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        Uuid::from_slice(bytes).ok()
    }
}

impl CursorKey for i64 {
    fn to_bytes(self) -> Vec<u8> {
        self.to_be_bytes().to_vec()
    }
    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        Some(Self::from_be_bytes(bytes.try_into().ok()?))
    }
}

/// What a cursor is bound to: a list's name and, field by field, its filters and path ids, as
/// unambiguous text (`name=value` lines; an absent filter is absent).
#[derive(Clone, Debug)]
pub struct Scope(String);

impl Scope {
    /// The list `name` (`licenses`, `organizations`, ...).
    pub fn new(name: &str) -> Self {
        Self(format!("list={name}\n"))
    }
    /// Adds a filter or path id, when present.
    #[must_use]
    pub fn with(mut self, field: &str, value: Option<impl std::fmt::Display>) -> Self {
        if let Some(value) = value {
            // A value cannot end its line early: a newline in it is escaped.
            let value = value.to_string().replace('\\', "\\\\").replace('\n', "\\n");
            self.0.push_str(&format!("{field}={value}\n"));
        }
        self
    }
}

/// Issues and checks cursors with the server's cursor key.
#[derive(Clone)]
pub struct Cursors {
    keyed: Hmac<Sha256>,
}

impl std::fmt::Debug for Cursors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cursors(..)")
    }
}

impl Cursors {
    /// Cursors keyed by a key derived from the key pepper (never the pepper itself, which keys
    /// the hashes of license keys: one secret, two purposes, two derived keys).
    pub fn new(pepper: &[u8; 32]) -> Self {
        let mut derive = <Hmac<Sha256> as KeyInit>::new_from_slice(pepper)
            .expect("HMAC takes a key of any length");
        derive.update(b"license-ledger list cursors v1");
        let key = derive.finalize().into_bytes();
        Self {
            keyed: <Hmac<Sha256> as KeyInit>::new_from_slice(&key)
                .expect("HMAC takes a key of any length"),
        }
    }

    fn tag(&self, scope: &Scope, order: Order, key: &[u8]) -> [u8; TAG_BYTES] {
        let mut mac = self.keyed.clone();
        mac.update(&[VERSION]);
        mac.update(scope.0.as_bytes());
        mac.update(b"order=");
        mac.update(order.as_str().as_bytes());
        mac.update(b"\nkey=");
        mac.update(key);
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; TAG_BYTES];
        tag.copy_from_slice(&full[..TAG_BYTES]);
        tag
    }

    /// The cursor that continues `scope` in `order` after `key`.
    pub fn issue<K: CursorKey>(&self, scope: &Scope, order: Order, key: K) -> String {
        use base64ct::{Base64UrlUnpadded, Encoding};
        let key = key.to_bytes();
        let mut bytes = Vec::with_capacity(1 + key.len() + TAG_BYTES);
        bytes.push(VERSION);
        bytes.extend_from_slice(&key);
        bytes.extend_from_slice(&self.tag(scope, order, &key));
        Base64UrlUnpadded::encode_string(&bytes)
    }

    /// The key a cursor continues after, when it was issued for `scope` in `order`.
    ///
    /// # Errors
    /// [`AppError::InvalidCursor`] for anything else: another list, other filters or order,
    /// altered, or not a cursor at all.
    pub fn check<K: CursorKey>(
        &self,
        scope: &Scope,
        order: Order,
        cursor: &str,
    ) -> Result<K, AppError> {
        use base64ct::{Base64UrlUnpadded, Encoding};
        if cursor.len() > MAX_CURSOR_CHARS {
            return Err(AppError::InvalidCursor);
        }
        let bytes = Base64UrlUnpadded::decode_vec(cursor).map_err(|_| AppError::InvalidCursor)?;
        if bytes.len() < 1 + TAG_BYTES || bytes[0] != VERSION {
            return Err(AppError::InvalidCursor);
        }
        let (key, tag) = bytes[1..].split_at(bytes.len() - 1 - TAG_BYTES);
        let expected = self.tag(scope, order, key);
        if !bool::from(expected.ct_eq(tag)) {
            return Err(AppError::InvalidCursor);
        }
        K::from_bytes(key).ok_or(AppError::InvalidCursor)
    }

    /// The window a page request asks for in `scope`.
    ///
    /// # Errors
    /// [`AppError::InvalidCursor`].
    pub fn window<K: CursorKey>(
        &self,
        scope: &Scope,
        page: &PageRequest,
    ) -> Result<Window<K>, AppError> {
        let after = page
            .cursor
            .as_deref()
            .map(|c| self.check(scope, page.order, c))
            .transpose()?;
        Ok(Window {
            after,
            order: page.order,
            limit: page.limit,
        })
    }

    /// The page of `rows` read for `window` (which fetches one row more than it shows): the
    /// first `limit` as views, and a cursor after the last shown when more rows follow.
    pub fn page<R, T, K: CursorKey>(
        &self,
        scope: &Scope,
        window: &Window<K>,
        mut rows: Vec<R>,
        key: impl Fn(&R) -> K,
        view: impl FnMut(R) -> T,
    ) -> Listed<T> {
        let shown = usize::try_from(window.limit.clamp(1, projections::queries::MAX_PAGE))
            .unwrap_or(usize::MAX);
        let more = rows.len() > shown;
        rows.truncate(shown);
        let next_cursor = more
            .then(|| rows.last().map(|r| self.issue(scope, window.order, key(r))))
            .flatten();
        Listed {
            items: rows.into_iter().map(view).collect(),
            next_cursor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursors() -> Cursors {
        Cursors::new(&[7; 32])
    }

    #[test]
    fn a_cursor_continues_only_its_own_list_order_and_filters() {
        let c = cursors();
        let scope = Scope::new("licenses").with("status", Some("active"));
        let id = Uuid::now_v7();
        let cursor = c.issue(&scope, Order::Asc, id);
        assert_eq!(c.check::<Uuid>(&scope, Order::Asc, &cursor).unwrap(), id);
        let refused = |s: &Scope, o: Order, text: &str| {
            matches!(c.check::<Uuid>(s, o, text), Err(AppError::InvalidCursor))
        };
        assert!(refused(&scope, Order::Desc, &cursor), "other order");
        assert!(refused(&Scope::new("organizations"), Order::Asc, &cursor));
        assert!(refused(
            &Scope::new("licenses").with("status", Some("revoked")),
            Order::Asc,
            &cursor
        ));
        assert!(refused(&Scope::new("licenses"), Order::Asc, &cursor));
        assert!(
            refused(
                &scope,
                Order::Asc,
                &Cursors::new(&[8; 32]).issue(&scope, Order::Asc, id)
            ),
            "another server's key"
        );
        // Every single changed character is caught.
        for i in 0..cursor.len() {
            let mut altered: Vec<char> = cursor.chars().collect();
            altered[i] = if altered[i] == 'A' { 'B' } else { 'A' };
            let altered: String = altered.into_iter().collect();
            assert!(refused(&scope, Order::Asc, &altered), "{altered}");
        }
        for garbage in ["", "x", "%%%", "AAAA", &"A".repeat(65), "not a cursor\0"] {
            assert!(refused(&scope, Order::Asc, garbage), "{garbage:?}");
        }
    }

    #[test]
    fn a_position_cursor_is_not_an_id_cursor() {
        let c = cursors();
        let scope = Scope::new("audit");
        let cursor = c.issue(&scope, Order::Asc, 42_i64);
        assert_eq!(c.check::<i64>(&scope, Order::Asc, &cursor).unwrap(), 42);
        assert!(c.check::<Uuid>(&scope, Order::Asc, &cursor).is_err());
    }

    #[test]
    fn a_scope_value_cannot_pose_as_another_field() {
        let a = Scope::new("organizations").with("q", Some("x\nkind=vendor"));
        let b = Scope::new("organizations")
            .with("q", Some("x"))
            .with("kind", Some("vendor"));
        assert_ne!(a.0, b.0);
    }
}
