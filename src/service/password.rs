//! Password hashing with argon2id. Hashes are PHC strings, so each carries its own parameters
//! and verification works whatever cost a server runs with today.

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, PasswordHash, Version};
use std::sync::{Arc, Condvar, Mutex};

/// Hashes and verifies passwords. Costly by design (~20 ms of CPU and 19 MiB of memory at the
/// default cost): call it on worker threads only. At most one hash per core runs at a time:
/// more would not finish sooner, and every concurrent hash holds its own 19 MiB block, which
/// the allocator keeps afterwards.
#[derive(Clone)]
pub struct Hasher {
    argon: Argon2<'static>,
    slots: Arc<Slots>,
}

/// A counting semaphore: the free hashing slots.
struct Slots {
    free: Mutex<usize>,
    released: Condvar,
}

impl Slots {
    /// Runs `f` once a slot is free.
    fn with<T>(&self, f: impl FnOnce() -> T) -> T {
        {
            let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
            while *free == 0 {
                free = self.released.wait(free).unwrap_or_else(|p| p.into_inner());
            }
            *free -= 1;
        }
        let result = f();
        *self.free.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.released.notify_one();
        result
    }
}

impl Hasher {
    /// A hasher with `memory_kib` of memory cost, 2 passes, 1 lane (OWASP: 19456 KiB).
    pub fn new(memory_kib: u32) -> Self {
        let params = Params::new(memory_kib.max(8), 2, 1, None).expect("valid argon2 parameters");
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Hasher {
            argon: Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
            slots: Arc::new(Slots {
                free: Mutex::new(cores),
                released: Condvar::new(),
            }),
        }
    }

    /// The PHC string of `password` with a fresh random salt.
    pub fn hash(&self, password: &str) -> String {
        self.slots.with(|| {
            self.argon
                .hash_password(password.as_bytes())
                .expect("argon2 hashing with valid parameters")
                .to_string()
        })
    }

    /// Whether `password` matches `phc` (false for a malformed stored hash).
    pub fn verify(&self, password: &str, phc: &str) -> bool {
        match PasswordHash::new(phc) {
            Ok(parsed) => self.slots.with(|| {
                self.argon
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            }),
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
