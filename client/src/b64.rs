//! Strict base64url (RFC 4648 §5, no padding) for the parts of a compact JWS and the JWK
//! coordinates.
//!
//! Decoding also insists on the canonical encoding: a string whose unused trailing bits are not
//! zero decodes to the same bytes as the canonical one, so a lenient decoder would let a changed
//! character through unnoticed in the signature part. Re-encoding and comparing closes that gap
//! whatever the underlying decoder does.

use base64ct::{Base64UrlUnpadded, Encoding};

/// The bytes of `text`, or `None` when it is not canonical unpadded base64url.
pub(crate) fn decode(text: &str) -> Option<Vec<u8>> {
    let bytes = Base64UrlUnpadded::decode_vec(text).ok()?;
    (Base64UrlUnpadded::encode_string(&bytes) == text).then_some(bytes)
}

/// Unpadded base64url of `bytes` (the SDK only reads tokens; tests write them).
#[cfg(test)]
pub(crate) fn encode(bytes: &[u8]) -> String {
    Base64UrlUnpadded::encode_string(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_non_canonical_text() {
        let bytes = [0xffu8, 0x00, 0x7e, 0x01];
        let text = encode(&bytes);
        assert_eq!(text, "_wB-AQ");
        assert_eq!(decode(&text).as_deref(), Some(&bytes[..]));
        // "AR" has non-zero trailing bits: it would decode to the same byte as "AQ".
        assert_eq!(decode("_wB-AR"), None);
        assert_eq!(decode("_wB-AQ=="), None, "padding is not allowed");
        assert_eq!(decode("/wB+AQ"), None, "standard alphabet is not base64url");
        assert_eq!(decode("_wB-A"), None, "impossible length");
    }
}
