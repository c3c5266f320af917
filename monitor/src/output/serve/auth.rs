//! Basic authentication of `kvmtop serve`, as the exporter toolkit does it: user names and bcrypt
//! hashes come from the web config; a password is checked with bcrypt on its first use and the
//! success remembered, so that a regular scrape costs a lookup rather than a bcrypt run
//! (~50-100 ms at cost 10).

use std::{
    collections::{BTreeMap, HashSet},
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use base64::Engine as _;
use hyper::header::HeaderValue;
use ring::{hmac, rand::SystemRandom};
use tokio::sync::Semaphore;

use super::web_config::Secret;

/// Successful logins remembered at most; a new one past this forgets the others.
const CACHE_CAPACITY: usize = 100;

pub struct Authenticator {
    /// Keys the remembered logins, so the cache holds neither a password nor anything from
    /// which one could be found without this per-process key.
    key: hmac::Key,
    /// MACs of (user, hash, password) that bcrypt accepted. Only successes are kept: a flood
    /// of wrong guesses then cannot push the scraper's entry out.
    verified: Mutex<HashSet<Vec<u8>>>,
    /// One bcrypt run at a time: it is slow on purpose, and queued guesses must not take
    /// every core.
    gate: Semaphore,
    runs: AtomicU64,
}

impl Authenticator {
    pub fn new() -> anyhow::Result<Self> {
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new())
            .map_err(|_| anyhow::anyhow!("no randomness for the login cache key"))?;
        Ok(Self {
            key,
            verified: Mutex::new(HashSet::new()),
            gate: Semaphore::new(1),
            runs: AtomicU64::new(0),
        })
    }

    /// Whether the `Authorization` header carries the name and password of one of `users`.
    pub async fn admits(
        &self,
        users: &BTreeMap<String, Secret>,
        authorization: Option<&HeaderValue>,
    ) -> bool {
        let Some((user, password)) = authorization.and_then(basic_credentials) else {
            return false;
        };
        let (hash, known) = match users.get(&user) {
            Some(hash) => (hash.expose().to_owned(), true),
            // An unknown user costs the same bcrypt run as a known one (against another
            // user's hash, its result ignored), so timing does not tell which names exist.
            None => match users.values().next() {
                Some(hash) => (hash.expose().to_owned(), false),
                None => return false,
            },
        };
        let mac = self.mac(&user, &hash, &password);
        if known && self.remembers(&mac) {
            return true;
        }
        let Ok(_permit) = self.gate.acquire().await else {
            return false;
        };
        // Another request may have checked the same login while this one waited.
        if known && self.remembers(&mac) {
            return true;
        }
        self.runs.fetch_add(1, Ordering::Relaxed);
        // bcrypt compares the hashes in constant time.
        let accepted =
            tokio::task::spawn_blocking(move || bcrypt::verify(&password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
        if accepted && known {
            let mut verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
            if verified.len() >= CACHE_CAPACITY {
                verified.clear();
            }
            verified.insert(mac);
        }
        accepted && known
    }

    /// How many times bcrypt has run.
    #[cfg(test)]
    pub fn bcrypt_runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    fn remembers(&self, mac: &[u8]) -> bool {
        self.verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(mac)
    }

    fn mac(&self, user: &str, hash: &str, password: &[u8]) -> Vec<u8> {
        let mut context = hmac::Context::with_key(&self.key);
        // Length prefixes keep ("ab", "c") and ("a", "bc") apart.
        for part in [user.as_bytes(), hash.as_bytes(), password] {
            context.update(&(part.len() as u64).to_le_bytes());
            context.update(part);
        }
        context.sign().as_ref().to_vec()
    }
}

/// User name and password of an `Authorization: Basic` header (RFC 7617).
fn basic_credentials(header: &HeaderValue) -> Option<(String, Vec<u8>)> {
    let (scheme, encoded) = header.to_str().ok()?.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user: &str, password: &str) -> HeaderValue {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        HeaderValue::from_str(&format!("Basic {encoded}")).unwrap()
    }

    fn users_with(hash: &str) -> BTreeMap<String, Secret> {
        let text = format!("basic_auth_users:\n  prometheus: '{hash}'\n");
        super::super::web_config::WebConfig::parse(&text, std::path::Path::new("."))
            .unwrap()
            .users
    }

    #[test]
    fn parses_basic_credentials_and_nothing_else() {
        let (user, password) = basic_credentials(&header("u", "p:w d")).unwrap();
        assert_eq!(
            (user.as_str(), password.as_slice()),
            ("u", b"p:w d".as_slice())
        );
        let lower = HeaderValue::from_static("basic dTpw");
        assert_eq!(basic_credentials(&lower).unwrap().0, "u");
        for bad in ["Bearer dTpw", "Basic", "Basic !!!", "Basic dXNlcg=="] {
            assert!(
                basic_credentials(&HeaderValue::from_static(bad)).is_none(),
                "{bad}"
            );
        }
    }

    /// A hash made with `htpasswd -nbBC 10 "" kvmtop-test` (Apache's `$2y$` flavour), so the
    /// command the README gives is known to make hashes kvmtop accepts.
    const HTPASSWD_HASH: &str = "$2y$10$FulOxTVXtErM4ksi65zzVeROiY9RocZCZsMsNhmCbQKXzAYRQGZ6K";

    #[tokio::test]
    async fn checks_each_login_with_bcrypt_once() {
        let auth = Authenticator::new().unwrap();
        let users = users_with(HTPASSWD_HASH);
        let good = header("prometheus", "kvmtop-test");
        for _ in 0..5 {
            assert!(auth.admits(&users, Some(&good)).await);
        }
        assert_eq!(auth.bcrypt_runs(), 1, "the login was not remembered");
        assert!(
            !auth
                .admits(&users, Some(&header("prometheus", "wrong")))
                .await
        );
        assert!(
            !auth
                .admits(&users, Some(&header("nobody", "kvmtop-test")))
                .await
        );
        assert!(!auth.admits(&users, None).await);
        // Wrong logins are not remembered: each costs a bcrypt run.
        assert!(
            !auth
                .admits(&users, Some(&header("prometheus", "wrong")))
                .await
        );
        assert_eq!(auth.bcrypt_runs(), 4);
        // A new hash for the same user (a changed file) is checked afresh.
        let rehashed = users_with(&bcrypt::hash("kvmtop-test", 4).unwrap());
        assert!(auth.admits(&rehashed, Some(&good)).await);
        assert_eq!(auth.bcrypt_runs(), 5);
        // The old password no longer opens once the hash has changed.
        let changed = users_with(&bcrypt::hash("other", 4).unwrap());
        assert!(!auth.admits(&changed, Some(&good)).await);
    }
}
