//! The request fingerprint (SHA-256 of method, path-and-query and body) and
//! the digest of the default principal, both from `sha2`.

use sha2::{Digest, Sha256};

use crate::idempotency::store::Fingerprint;

/// The fingerprint of a request: [`Fingerprint::of`].
#[inline]
pub(crate) fn fingerprint(method: &str, path_and_query: &str, body: &[u8]) -> Fingerprint {
    Fingerprint::of(method, path_and_query, body)
}

/// SHA-256 of `data`.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector() {
        // FIPS 180-4 example: SHA-256("abc").
        let hex: String = sha256(b"abc").iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn parts_do_not_run_together() {
        assert_ne!(
            fingerprint("POST", "/ab", b"c"),
            fingerprint("POST", "/a", b"bc")
        );
        assert_ne!(
            fingerprint("POS", "T/a", b""),
            fingerprint("POST", "/a", b"")
        );
    }
}
