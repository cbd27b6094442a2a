//! [`UserStore`]: the in-memory, concurrent table of SCRAM credentials (salted keys only),
//! with a per-user *generation* that changes whenever a user's credentials change, and a
//! [`tokio::sync::watch`] channel that ticks on every change — the gateway closes the sessions
//! of a user whose generation moved (deleted, or a new password).
//!
//! Durability is [`crate::PolicyStore`]'s job; this type is the applied state.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::watch;

use crate::sasl::Mechanism;
use crate::scram::{CredentialError, ScramCredential};

#[derive(Default)]
struct UserEntry {
    credentials: BTreeMap<Mechanism, ScramCredential>,
    generation: u64,
}

struct Inner {
    users: RwLock<HashMap<String, UserEntry>>,
    tick: watch::Sender<u64>,
}

/// SCRAM credentials by user and mechanism. Cloning is cheap; clones share the table.
#[derive(Clone)]
pub struct UserStore {
    inner: Arc<Inner>,
}

impl Default for UserStore {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for UserStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserStore")
            .field("users", &self.read().len())
            .finish()
    }
}

impl UserStore {
    /// An empty store.
    pub fn new() -> Self {
        let (tick, _) = watch::channel(0);
        Self {
            inner: Arc::new(Inner {
                users: RwLock::new(HashMap::new()),
                tick,
            }),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, HashMap<String, UserEntry>> {
        self.inner.users.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<String, UserEntry>> {
        self.inner.users.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Bumps the global counter and returns the new value (the changed user's generation).
    fn bump(&self) -> u64 {
        let mut next = 0;
        self.inner.tick.send_modify(|g| {
            *g += 1;
            next = *g;
        });
        next
    }

    /// Sets `user`'s credential for its mechanism. Storing an identical credential again is a
    /// no-op (no generation change), so replaying a log does not disturb sessions.
    pub fn upsert(&self, user: &str, credential: ScramCredential) -> Result<(), CredentialError> {
        if user.is_empty() {
            return Err(CredentialError::EmptyUser);
        }
        credential.validate()?;
        let mut users = self.write();
        let entry = users.entry(user.to_string()).or_default();
        if entry.credentials.get(&credential.mechanism) == Some(&credential) {
            return Ok(());
        }
        entry.credentials.insert(credential.mechanism, credential);
        entry.generation = self.bump();
        tracing::info!(user, "SCRAM credential updated");
        Ok(())
    }

    /// Derives a credential from `password` with a random salt, stores it and returns it
    /// (so the caller can persist it). Runs PBKDF2: call from a blocking context if hot.
    pub fn set_password(
        &self,
        user: &str,
        mechanism: Mechanism,
        password: &str,
        iterations: u32,
    ) -> Result<ScramCredential, CredentialError> {
        let credential = ScramCredential::from_password(mechanism, password, iterations)?;
        self.upsert(user, credential.clone())?;
        Ok(credential)
    }

    /// Removes `user`'s credential for `mechanism`, or all of them with `None`. Returns
    /// whether anything was removed.
    pub fn delete(&self, user: &str, mechanism: Option<Mechanism>) -> bool {
        let mut users = self.write();
        let Some(entry) = users.get_mut(user) else {
            return false;
        };
        let removed = match mechanism {
            Some(m) => entry.credentials.remove(&m).is_some(),
            None => {
                let any = !entry.credentials.is_empty();
                entry.credentials.clear();
                any
            }
        };
        if removed {
            // The entry stays (empty) so the user's generation keeps increasing.
            entry.generation = self.bump();
            tracing::info!(user, "SCRAM credential deleted");
        }
        removed
    }

    /// `user`'s credential for `mechanism`.
    pub fn get(&self, user: &str, mechanism: Mechanism) -> Option<ScramCredential> {
        self.read()
            .get(user)
            .and_then(|e| e.credentials.get(&mechanism).cloned())
    }

    /// Whether `user` has any credential.
    pub fn exists(&self, user: &str) -> bool {
        self.read()
            .get(user)
            .is_some_and(|e| !e.credentials.is_empty())
    }

    /// Users (all, or the named ones that exist) with their mechanisms and iteration counts,
    /// sorted by name (`DescribeUserScramCredentials`).
    pub fn describe(&self, users: Option<&[String]>) -> Vec<(String, Vec<(Mechanism, u32)>)> {
        let table = self.read();
        let row = |name: &str, e: &UserEntry| {
            (
                name.to_string(),
                e.credentials
                    .values()
                    .map(|c| (c.mechanism, c.iterations))
                    .collect::<Vec<_>>(),
            )
        };
        let mut out: Vec<_> = match users {
            Some(names) => names
                .iter()
                .filter_map(|n| table.get(n).map(|e| (n, e)))
                .filter(|(_, e)| !e.credentials.is_empty())
                .map(|(n, e)| row(n, e))
                .collect(),
            None => table
                .iter()
                .filter(|(_, e)| !e.credentials.is_empty())
                .map(|(n, e)| row(n, e))
                .collect(),
        };
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.dedup_by(|a, b| a.0 == b.0);
        out
    }

    /// The generation of `user`'s credentials: changes on every update or deletion; 0 for a
    /// user never seen.
    pub fn generation(&self, user: &str) -> u64 {
        self.read().get(user).map_or(0, |e| e.generation)
    }

    /// A receiver of the global change counter (ticks on every credential change).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.tick.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsert_get_delete_generation() {
        let s = UserStore::new();
        let mut rx = s.subscribe();
        assert_eq!(s.generation("alice"), 0);
        let c = s
            .set_password("alice", Mechanism::ScramSha256, "pw", 4096)
            .expect("set");
        let g1 = s.generation("alice");
        assert!(g1 > 0);
        assert!(rx.has_changed().expect("open"));
        rx.mark_unchanged();
        assert_eq!(s.get("alice", Mechanism::ScramSha256), Some(c.clone()));
        assert_eq!(s.get("alice", Mechanism::ScramSha512), None);
        // Identical upsert: no change.
        s.upsert("alice", c).expect("same");
        assert_eq!(s.generation("alice"), g1);
        assert!(!rx.has_changed().expect("open"));

        s.set_password("alice", Mechanism::ScramSha512, "pw", 8192)
            .expect("set");
        s.set_password("bob", Mechanism::ScramSha256, "pw", 4096)
            .expect("set");
        let g2 = s.generation("alice");
        assert!(g2 > g1);
        assert_eq!(
            s.describe(None),
            vec![
                (
                    "alice".to_string(),
                    vec![
                        (Mechanism::ScramSha256, 4096),
                        (Mechanism::ScramSha512, 8192)
                    ]
                ),
                ("bob".to_string(), vec![(Mechanism::ScramSha256, 4096)]),
            ]
        );
        assert_eq!(
            s.describe(Some(&["bob".to_string(), "nobody".to_string()])),
            vec![("bob".to_string(), vec![(Mechanism::ScramSha256, 4096)])]
        );
        assert!(s.delete("alice", Some(Mechanism::ScramSha256)));
        assert!(!s.delete("alice", Some(Mechanism::ScramSha256)));
        assert!(s.delete("alice", None));
        assert!(!s.exists("alice"));
        assert!(s.generation("alice") > g2);
        assert!(!s.delete("nobody", None));
        assert!(rx.has_changed().expect("open"));
    }

    #[test]
    fn refuses_bad_credentials() {
        let s = UserStore::new();
        assert!(
            s.set_password("", Mechanism::ScramSha256, "pw", 4096)
                .is_err()
        );
        assert!(
            s.set_password("a", Mechanism::ScramSha256, "pw", 1000)
                .is_err()
        );
        assert!(s.set_password("a", Mechanism::Plain, "pw", 4096).is_err());
    }
}
