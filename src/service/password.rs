//! Password hashing with argon2id. Hashes are PHC strings, so each carries its own parameters
//! and verification works whatever cost a server runs with today.
//!
//! Each hash needs a large working memory (19 MiB at the default cost). Allocating it per
//! hash either bloats the process (the allocator keeps freed blocks: measured 1.6 GiB after a
//! few hundred logins) or costs a fresh, zeroed mapping each time (a third slower). So the
//! hasher keeps one working buffer per core and lends them out: at most one hash per core runs
//! at once — more would not finish sooner — and memory stays at cores × one buffer.

use argon2::password_hash::generate_salt;
use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use std::sync::{Arc, Condvar, Mutex};

/// Hashes and verifies passwords. Costly by design (~15–20 ms of CPU at the default cost):
/// call it on worker threads only.
#[derive(Clone)]
pub(crate) struct Hasher {
    params: Params,
    buffers: Arc<Buffers>,
}

/// The working buffers, lent one per running hash.
struct Buffers {
    free: Mutex<Vec<Vec<Block>>>,
    returned: Condvar,
}

impl Buffers {
    /// Runs `f` with a buffer of at least `blocks` blocks once one is free.
    fn with<T>(&self, blocks: usize, f: impl FnOnce(&mut [Block]) -> T) -> T {
        let mut buffer = {
            let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if let Some(b) = free.pop() {
                    break b;
                }
                free = self.returned.wait(free).unwrap_or_else(|p| p.into_inner());
            }
        };
        if buffer.len() < blocks {
            buffer.resize(blocks, Block::default());
        }
        let result = f(&mut buffer[..blocks]);
        self.free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(buffer);
        self.returned.notify_one();
        result
    }
}

impl Hasher {
    /// How many hashes run at once: one per core.
    pub(crate) fn parallelism() -> usize {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    }

    /// A hasher with `memory_kib` of memory cost, 2 passes, 1 lane (OWASP: 19456 KiB).
    pub(crate) fn new(memory_kib: u32) -> Self {
        let params = Params::new(memory_kib.max(8), 2, 1, None).expect("valid argon2 parameters");
        let cores = Self::parallelism();
        Hasher {
            params,
            buffers: Arc::new(Buffers {
                free: Mutex::new((0..cores).map(|_| Vec::new()).collect()),
                returned: Condvar::new(),
            }),
        }
    }

    /// The PHC string of `password` with a fresh random salt.
    pub(crate) fn hash(&self, password: &str) -> String {
        let salt = generate_salt();
        let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone());
        self.buffers.with(self.params.block_count(), |blocks| {
            argon
                .hash_password_into_with_memory(password.as_bytes(), &salt, &mut out, blocks)
                .expect("argon2 hashing with valid parameters")
        });
        PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&self.params).expect("parameters encode"),
            salt: Some(Salt::new(&salt).expect("a generated salt is valid")),
            hash: Some(Output::new(&out).expect("a 32-byte output is valid")),
        }
        .to_string()
    }

    /// Whether `password` matches `phc` (false for a malformed stored hash). The comparison
    /// takes constant time.
    pub(crate) fn verify(&self, password: &str, phc: &str) -> bool {
        self.try_verify(password, phc).unwrap_or(false)
    }

    fn try_verify(&self, password: &str, phc: &str) -> Option<bool> {
        let parsed = PasswordHash::new(phc).ok()?;
        let algorithm = Algorithm::try_from(parsed.algorithm.as_ref()).ok()?;
        let version = match parsed.version {
            Some(v) => Version::try_from(v).ok()?,
            None => Version::default(),
        };
        let params = Params::try_from(&parsed).ok()?;
        let salt = parsed.salt.as_ref()?;
        let expected = parsed.hash.as_ref()?;
        let mut out = vec![0u8; expected.len()];
        let argon = Argon2::new(algorithm, version, params.clone());
        self.buffers
            .with(params.block_count(), |blocks| {
                argon.hash_password_into_with_memory(password.as_bytes(), salt, &mut out, blocks)
            })
            .ok()?;
        Some(Output::new(&out).ok()? == *expected)
    }
}

#[cfg(test)]
mod tests {
    use super::Hasher;
    use argon2::password_hash::{PasswordHasher, PasswordVerifier};
    use argon2::{Algorithm, Argon2, Params, PasswordHash, Version};

    #[test]
    fn hashes_verify_and_never_contain_the_password() {
        let h = Hasher::new(64);
        let phc = h.hash("s3cret-密码");
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=2,p=1$"), "{phc}");
        assert!(!phc.contains("s3cret"));
        assert!(h.verify("s3cret-密码", &phc));
        assert!(!h.verify("wrong", &phc));
        assert!(!h.verify("s3cret-密码", "not a hash"));
        assert!(Hasher::new(128).verify("s3cret-密码", &phc));
    }

    #[test]
    fn agrees_with_the_argon2_crate_both_ways() {
        let ours = Hasher::new(256);
        let theirs = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(256, 2, 1, None).unwrap(),
        );
        let phc = ours.hash("pw");
        assert!(theirs
            .verify_password(b"pw", &PasswordHash::new(&phc).unwrap())
            .is_ok());
        let theirs_phc = theirs.hash_password(b"pw").unwrap().to_string();
        assert!(ours.verify("pw", &theirs_phc));
        assert!(!ours.verify("pw2", &theirs_phc));
    }
}
