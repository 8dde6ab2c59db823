//! Password hashing with argon2id. Hashes are PHC strings, so each carries its own parameters
//! and verification works whatever cost a server runs with today.

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, PasswordHash, Version};

/// Hashes and verifies passwords. Costly by design (~20 ms of CPU at the default cost): call
/// it on worker threads only.
#[derive(Clone)]
pub struct Hasher {
    argon: Argon2<'static>,
}

impl Hasher {
    /// A hasher with `memory_kib` of memory cost, 2 passes, 1 lane (OWASP: 19456 KiB).
    pub fn new(memory_kib: u32) -> Self {
        let params = Params::new(memory_kib.max(8), 2, 1, None).expect("valid argon2 parameters");
        Hasher {
            argon: Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
        }
    }

    /// The PHC string of `password` with a fresh random salt.
    pub fn hash(&self, password: &str) -> String {
        self.argon
            .hash_password(password.as_bytes())
            .expect("argon2 hashing with valid parameters")
            .to_string()
    }

    /// Whether `password` matches `phc` (false for a malformed stored hash).
    pub fn verify(&self, password: &str, phc: &str) -> bool {
        match PasswordHash::new(phc) {
            Ok(parsed) => self
                .argon
                .verify_password(password.as_bytes(), &parsed)
                .is_ok(),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Hasher;

    #[test]
    fn hashes_verify_and_never_contain_the_password() {
        let h = Hasher::new(64);
        let phc = h.hash("s3cret-密码");
        assert!(phc.starts_with("$argon2id$"));
        assert!(!phc.contains("s3cret"));
        assert!(h.verify("s3cret-密码", &phc));
        assert!(!h.verify("wrong", &phc));
        assert!(!h.verify("s3cret-密码", "not a hash"));
        assert!(Hasher::new(128).verify("s3cret-密码", &phc));
    }
}
