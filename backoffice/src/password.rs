//! Password hashing with argon2id at one of OWASP's equivalent settings, m = 9 MiB,
//! t = 4, p = 1, bounded and shared fairly between clients.
//!
//! Which setting: OWASP lists m = 46/19/12/9/7 MiB with t = 1/2/3/4/5 (p = 1) as
//! "an equal level of defense", trading memory for passes. Their cost here is
//! not equal: two hashes at once on the 2-core development machine (as a burst of
//! sign-ins runs them) took 15-16 ms a hash at 19 MiB / t = 2, 13 ms at 12 MiB /
//! t = 3, 12 ms at 9 MiB / t = 4 and 11 ms at 7 MiB / t = 5 (argon2 0.5.3, memory
//! reused; two blocks of 19 MiB do not stay in the cache). Through the server, 50
//! sign-ins at once ended after 518-520 ms at 19 MiB, 450-510 at 12 MiB and
//! 442-558 at 9 MiB (p99, `benches/login.rs`). 7 MiB was as fast as 9, but
//! jemalloc keeps freed blocks under 8 MiB for a while (its `oversize_threshold`):
//! idle RSS 36-40 MiB against 22-26. So 9 MiB: the most memory per guess of the
//! settings fast enough, and half the memory per hash of 19 MiB (peak RSS during
//! the bursts 44-49 MiB, was 64-68).
//!
//! Older settings: a stored hash is verified with the parameters it names (the
//! PHC string carries them), and a successful sign-in with another setting stores
//! a new hash at this one ([`Hasher::is_current`]). Until its owner signs in, such
//! an account's verification takes that setting's time, while an unknown email is
//! checked against a dummy at the current one: the difference (a few ms) could
//! tell a patient attacker that the account exists, within the sign-in throttle's
//! budget of attempts.
//!
//! Each hash holds 9 MiB for ten milliseconds or more on a blocking thread; without a
//! bound, a login flood would allocate without limit. [`Hasher`] admits at most
//! `permits` hashes at once and makes the rest wait their turn (a flood then costs
//! latency, not memory).
//!
//! Whose turn: a plain FIFO semaphore puts the owner's one sign-in behind every
//! queued request of a flood (64 flooding clients made it take 1.2-1.8 s instead
//! of 0.04 s). Instead the waiter of the client with the *fewest* hashes already
//! running or queued goes next ([`Fair`]), FIFO among equals: a client alone
//! in the queue with one request waits for at most the hashes now running, however
//! many a flooding client has queued. tokio's `Semaphore` is strictly FIFO and no
//! well-kept crate offers per-key fair queuing, hence the small queue below.
//!
//! Memory between hashes: `argon2`'s own entry points allocate and zero a fresh
//! block for every hash, and the allocator hands a block that large back to the
//! system when it is freed, so each hash also paid the page faults and the
//! zeroing (at 19 MiB: 4,864 faults, 26 ms a hash on the 2-core development
//! machine against 17.3 ms in memory already touched). A verification that ends
//! while others wait for their turn hands its block to the next one (`Spare`);
//! once nothing waits the blocks are freed, so an idle server holds none. Argon2
//! writes every block before reading it, so a reused block's old contents do not
//! matter (`a_reused_block_gives_the_same_answer`). New hashes (sign-up, a
//! password set) are rare and keep the crate's own entry point.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::oneshot;

/// Memory, in KiB (module docs: one of OWASP's equivalent settings).
pub const M_COST_KIB: u32 = 9_216;
/// Iterations.
pub const T_COST: u32 = 4;
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
    /// Too many hashes are already waiting (a flood): try later.
    #[error("too many sign-ins are waiting")]
    Busy,
}

/// Most hashes waiting at once; past it a request is refused at once
/// ([`HashError::Busy`]) rather than queued (each waiter is a held request).
pub const MAX_WAITING: usize = 1024;

/// Hash permits handed out least-served client first (module docs).
struct Fair {
    state: Mutex<FairState>,
}

#[derive(Default)]
struct FairState {
    /// Permits not handed out.
    free: usize,
    /// Per client: hashes running or waiting.
    outstanding: HashMap<String, usize>,
    /// Waiters: (the client's outstanding count when it asked, arrival order).
    waiting: Vec<Waiter>,
    /// Arrival counter.
    seq: u64,
}

struct Waiter {
    rank: usize,
    seq: u64,
    key: String,
    tx: oneshot::Sender<Permit>,
}

/// One running hash; dropping it passes the permit on.
struct Permit {
    fair: Arc<Fair>,
    key: String,
}

impl Fair {
    fn new(permits: usize) -> Arc<Self> {
        Arc::new(Self { state: Mutex::new(FairState { free: permits.max(1), ..FairState::default() }) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FairState> {
        // A panic while holding this lock leaves consistent counts (no await
        // inside, plain integer updates): keep going with them.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn acquire(self: &Arc<Self>, key: &str) -> Result<Permit, HashError> {
        let rx = {
            let mut s = self.lock();
            let rank = s.outstanding.get(key).copied().unwrap_or(0);
            if s.free > 0 && s.waiting.is_empty() {
                *s.outstanding.entry(key.to_owned()).or_insert(0) += 1;
                s.free -= 1;
                return Ok(Permit { fair: self.clone(), key: key.to_owned() });
            }
            if s.waiting.len() >= MAX_WAITING {
                return Err(HashError::Busy);
            }
            *s.outstanding.entry(key.to_owned()).or_insert(0) += 1;
            let (tx, rx) = oneshot::channel();
            s.seq += 1;
            let seq = s.seq;
            s.waiting.push(Waiter { rank, seq, key: key.to_owned(), tx });
            rx
        };
        // A dropped sender means the queue itself went away: never while `self` lives.
        rx.await.map_err(|_| HashError::Busy)
    }

    /// Whether some request waits for a permit.
    fn has_waiters(&self) -> bool {
        !self.lock().waiting.is_empty()
    }

    /// Passes a permit held by `key` to the best waiter, or frees it.
    fn release(self: &Arc<Self>, key: &str) {
        let next = {
            let mut s = self.lock();
            if let Some(n) = s.outstanding.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    s.outstanding.remove(key);
                }
            }
            let best = s.waiting.iter().enumerate().min_by_key(|(_, w)| (w.rank, w.seq)).map(|(i, _)| i);
            match best {
                Some(i) => s.waiting.swap_remove(i),
                None => {
                    s.free += 1;
                    return;
                }
            }
        };
        // A waiter that gave up (its request was dropped) hands the permit
        // back through `Permit::drop`, which picks the next one.
        let _ = next.tx.send(Permit { fair: self.clone(), key: next.key });
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.fair.release(&self.key);
    }
}

/// Argon2 memory blocks handed from a finished verification to a waiting one
/// (module docs); empty whenever nothing waits.
#[derive(Default)]
struct Spare {
    blocks: Mutex<Vec<Vec<Block>>>,
    /// Verifications that found no spare block and allocated one.
    allocated: std::sync::atomic::AtomicU64,
}

impl Spare {
    fn take(&self) -> Vec<Block> {
        let spare = self.blocks.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop();
        spare.unwrap_or_else(|| {
            self.allocated.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Vec::new()
        })
    }

    /// Keeps `blocks` for the next verification if `wanted`, else frees them and
    /// every spare one.
    fn give_back(&self, blocks: Vec<Block>, wanted: bool) {
        let mut spare = self.blocks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if wanted {
            spare.push(blocks);
        } else {
            spare.clear();
        }
    }
}

/// Hashes and verifies passwords, at most `permits` at a time, shared fairly.
#[derive(Clone)]
pub struct Hasher {
    permits: Arc<Fair>,
    spare: Arc<Spare>,
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

/// Whether `password` matches the PHC string `phc` (false for a malformed one),
/// computed in `memory` (resized to the string's memory cost): the parameters
/// are the string's own, as `argon2`'s `verify_password` takes them.
fn verify_now(password: &str, phc: &str, memory: &mut Vec<Block>) -> bool {
    let Ok(h) = PasswordHash::new(phc) else { return false };
    let (Some(salt), Some(expected)) = (h.salt, h.hash) else { return false };
    let Ok(algorithm) = Algorithm::try_from(h.algorithm) else { return false };
    let Ok(version) = h.version.map_or(Ok(Version::default()), Version::try_from) else { return false };
    let Ok(params) = Params::try_from(&h) else { return false };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else { return false };
    memory.resize(params.block_count(), Block::default());
    let mut out = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, memory.as_mut_slice())
        .is_ok()
        // `Output`'s equality is constant-time.
        && Output::new(&out).is_ok_and(|out| out == expected)
}

impl Hasher {
    /// A hasher admitting `permits` concurrent hashes (at 9 MiB each).
    ///
    /// # Errors
    /// Hashing the dummy password failed.
    pub fn new(permits: usize) -> Result<Self, HashError> {
        let dummy = hash_now(&uuid::Uuid::new_v4().to_string())?;
        Ok(Self { permits: Fair::new(permits), spare: Arc::default(), dummy: dummy.into() })
    }

    /// The PHC string (`$argon2id$v=19$m=9216,t=4,p=1$...`) of `password`.
    ///
    /// # Errors
    /// As [`HashError`].
    pub async fn hash(&self, password: &str) -> Result<String, HashError> {
        let _permit = self.permits.acquire("").await?;
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || hash_now(&password)).await?
    }

    /// Whether `phc` was made with this hasher's algorithm and parameters; a
    /// password verified against one that was not is worth hashing again.
    pub fn is_current(phc: &str) -> bool {
        let Ok(h) = PasswordHash::new(phc) else { return false };
        h.algorithm == Algorithm::Argon2id.ident()
            && h.version == Some(Version::V0x13.into())
            && Params::try_from(&h).is_ok_and(|p| (p.m_cost(), p.t_cost(), p.p_cost()) == (M_COST_KIB, T_COST, P_COST))
    }

    /// Whether `password` matches `phc`; with `None` (no such user, or no password
    /// set yet) it checks against a dummy hash so the time taken is the same.
    ///
    /// # Errors
    /// As [`HashError`].
    pub async fn verify(&self, password: &str, phc: Option<&str>) -> Result<bool, HashError> {
        self.verify_as("", password, phc).await
    }

    /// As [`Hasher::verify`], queued as the client `client` (module docs: the
    /// client with the fewest hashes outstanding goes first).
    ///
    /// # Errors
    /// As [`HashError`].
    pub async fn verify_as(&self, client: &str, password: &str, phc: Option<&str>) -> Result<bool, HashError> {
        let _permit = self.permits.acquire(client).await?;
        let password = password.to_owned();
        let real = phc.is_some();
        let phc = phc.map(str::to_owned).unwrap_or_else(|| self.dummy.to_string());
        let mut memory = self.spare.take();
        let (ok, memory) = tokio::task::spawn_blocking(move || {
            let ok = verify_now(&password, &phc, &mut memory);
            (ok, memory)
        })
        .await?;
        // Decided while this permit is still held: a waiter then gets it next.
        self.spare.give_back(memory, self.permits.has_waiters());
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
        assert!(phc.starts_with("$argon2id$v=19$m=9216,t=4,p=1$"), "{phc}");
        assert!(Hasher::is_current(&phc));
        assert!(h.verify("correct horse battery staple", Some(&phc)).await.expect("verify"));
        assert!(!h.verify("wrong", Some(&phc)).await.expect("verify"));
        assert!(!h.verify("anything", None).await.expect("verify"), "no user never verifies");
        assert!(!h.verify("x", Some("not a phc string")).await.expect("verify"));
        assert!(h.spare.blocks.lock().expect("spare").is_empty(), "nothing waited, no block kept");
    }

    /// Only a string at this hasher's algorithm and parameters is current; one at
    /// the earlier setting (m = 19 MiB, t = 2) still verifies.
    #[tokio::test]
    async fn older_settings_verify_and_are_not_current() {
        let h = Hasher::new(2).expect("hasher");
        let with = |alg, m, t| {
            Argon2::new(alg, Version::V0x13, Params::new(m, t, 1, None).expect("params"))
                .hash_password(b"pw", &SaltString::generate(&mut OsRng))
                .expect("hash")
                .to_string()
        };
        let earlier = with(Algorithm::Argon2id, 19_456, 2);
        assert!(!Hasher::is_current(&earlier));
        assert!(h.verify("pw", Some(&earlier)).await.expect("verify"), "an earlier setting still verifies");
        assert!(Hasher::is_current(&with(Algorithm::Argon2id, M_COST_KIB, T_COST)));
        assert!(!Hasher::is_current(&with(Algorithm::Argon2i, M_COST_KIB, T_COST)), "another variant");
        assert!(!Hasher::is_current(&with(Algorithm::Argon2id, M_COST_KIB, T_COST + 1)));
        assert!(!Hasher::is_current("not a phc string"));
    }

    /// Verification in a block left by an earlier hash answers as in a fresh
    /// one, for a string made by `argon2`'s own entry point and for other costs.
    #[tokio::test]
    async fn a_reused_block_gives_the_same_answer() {
        let phc = hash_now("correct horse battery staple").expect("hash");
        let other = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(8192, 3, 1, None).expect("params"))
            .hash_password(b"pw", &SaltString::generate(&mut OsRng))
            .expect("hash")
            .to_string();
        let mut memory = Vec::new();
        for _ in 0..2 {
            assert!(verify_now("correct horse battery staple", &phc, &mut memory));
            assert!(!verify_now("correct horse battery stapler", &phc, &mut memory));
            assert!(verify_now("pw", &other, &mut memory), "the string's own costs");
            assert!(!verify_now("pw!", &other, &mut memory));
            assert!(verify_now("correct horse battery staple", &phc, &mut memory), "after a smaller block");
        }
        assert!(!verify_now("pw", "$argon2id$v=19$m=8192,t=3,p=1$c2FsdHNhbHQ", &mut memory), "no hash part");
    }

    /// While verifications wait, a finished one's block goes to the next; once
    /// the queue is empty, none is kept.
    #[tokio::test]
    async fn blocks_pass_along_a_queue_and_are_freed_after() {
        let h = Hasher::new(1).expect("hasher");
        let phc = h.hash("pw").await.expect("hash");
        let running = h.permits.acquire("").await.expect("permit");
        let waiting: Vec<_> = (0..3)
            .map(|_| {
                let (h, phc) = (h.clone(), phc.clone());
                tokio::spawn(async move { h.verify("pw", Some(&phc)).await.expect("verify") })
            })
            .collect();
        while h.permits.lock().waiting.len() < 3 {
            tokio::task::yield_now().await;
        }
        // A block left over from an earlier burst, still spare when the last
        // verification ends: freed with the rest.
        h.spare.give_back(vec![Block::default(); 4], true);
        h.spare.give_back(vec![Block::default(); 4], true);
        drop(running);
        for w in waiting {
            assert!(w.await.expect("task"));
        }
        assert_eq!(h.spare.allocated.load(std::sync::atomic::Ordering::Relaxed), 0, "each took a passed-on block");
        assert!(h.spare.blocks.lock().expect("spare").is_empty(), "the last verification freed every block");
    }

    #[tokio::test]
    async fn the_least_served_client_goes_first() {
        let fair = Fair::new(1);
        let running = fair.acquire("flood").await.expect("permit");
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
        let mut tasks = Vec::new();
        for who in ["flood", "flood", "flood", "owner"] {
            let (fair, done) = (fair.clone(), done_tx.clone());
            tasks.push(tokio::spawn(async move {
                let p = fair.acquire(who).await.expect("permit");
                done.send(who).expect("send");
                drop(p);
            }));
            tokio::task::yield_now().await;
        }
        // Let every waiter enqueue before the running hash ends.
        while fair.lock().waiting.len() < 4 {
            tokio::task::yield_now().await;
        }
        drop(running);
        for t in tasks {
            t.await.expect("task");
        }
        assert_eq!(done_rx.recv().await, Some("owner"), "queued last, served first");
        assert_eq!(fair.lock().free, 1);
        assert!(fair.lock().outstanding.is_empty());
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_passes_its_turn_on() {
        let fair = Fair::new(1);
        let running = fair.acquire("a").await.expect("permit");
        let gone = tokio::spawn({
            let fair = fair.clone();
            async move { fair.acquire("b").await.map(drop) }
        });
        while fair.lock().waiting.is_empty() {
            tokio::task::yield_now().await;
        }
        gone.abort();
        let _ = gone.await;
        drop(running);
        let p = tokio::time::timeout(std::time::Duration::from_secs(5), fair.acquire("c")).await;
        assert!(p.is_ok(), "the abandoned turn was passed on");
    }
}
