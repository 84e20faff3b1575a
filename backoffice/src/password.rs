//! Password hashing with argon2id at OWASP's parameters (m = 19 MiB, t = 2, p = 1),
//! bounded by a semaphore.
//!
//! Each hash holds 19 MiB for tens of milliseconds on a blocking thread; without a
//! bound, a login flood would allocate without limit. [`Hasher`] admits at most
//! `permits` hashes at once and makes the rest wait their turn (a login flood then
//! costs latency, not memory).

use std::sync::Arc;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

/// OWASP's recommended argon2id memory, in KiB.
pub const M_COST_KIB: u32 = 19_456;
/// Iterations.
pub const T_COST: u32 = 2;
/// Parallelism.
pub const P_COST: u32 = 1;

/// What can go wrong hashing.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// argon2 refused (never for our fixed parameters and sane input).
    #[error("password hashing failed: {0}")]
    Argon(String),
    /// The blocking task died.
    #[error("password hashing task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// Hashes and verifies passwords, at most `permits` at a time.
#[derive(Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
    /// A hash of a random password, verified against when a login names no user,
    /// so an unknown email costs the same time as a wrong password.
    dummy: Arc<str>,
}

fn argon() -> Argon2<'static> {
    // The parameters are constants within argon2's limits; `new` cannot fail for them.
    let params = Params::new(M_COST_KIB, T_COST, P_COST, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn hash_now(password: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    argon()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError::Argon(e.to_string()))
}

fn verify_now(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| argon().verify_password(password.as_bytes(), &h).is_ok())
}

impl Hasher {
    /// A hasher admitting `permits` concurrent hashes (at 19 MiB each).
    ///
    /// # Errors
    /// Hashing the dummy password failed.
    pub fn new(permits: usize) -> Result<Self, HashError> {
        let dummy = hash_now(&uuid::Uuid::new_v4().to_string())?;
        Ok(Self { permits: Arc::new(Semaphore::new(permits.max(1))), dummy: dummy.into() })
    }

    /// The PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`) of `password`.
    ///
    /// # Errors
    /// As [`HashError`].
    pub async fn hash(&self, password: &str) -> Result<String, HashError> {
        let _permit = self.permits.acquire().await.map_err(|e| HashError::Argon(e.to_string()))?;
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || hash_now(&password)).await?
    }

    /// Whether `password` matches `phc`; with `None` (no such user, or no password
    /// set yet) it checks against a dummy hash so the time taken is the same.
    ///
    /// # Errors
    /// As [`HashError`].
    pub async fn verify(&self, password: &str, phc: Option<&str>) -> Result<bool, HashError> {
        let _permit = self.permits.acquire().await.map_err(|e| HashError::Argon(e.to_string()))?;
        let password = password.to_owned();
        let real = phc.is_some();
        let phc = phc.map(str::to_owned).unwrap_or_else(|| self.dummy.to_string());
        let ok = tokio::task::spawn_blocking(move || verify_now(&password, &phc)).await?;
        Ok(ok && real)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_with_owasp_argon2id_and_verifies() {
        let h = Hasher::new(2).expect("hasher");
        let phc = h.hash("correct horse battery staple").await.expect("hash");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(h.verify("correct horse battery staple", Some(&phc)).await.expect("verify"));
        assert!(!h.verify("wrong", Some(&phc)).await.expect("verify"));
        assert!(!h.verify("anything", None).await.expect("verify"), "no user never verifies");
        assert!(!h.verify("x", Some("not a phc string")).await.expect("verify"));
    }
}
