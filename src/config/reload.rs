//! Hot reload: re-read the config file, and swap it in only if it is valid.
//!
//! The file is polled (every `reload_interval`, and at once on SIGHUP) by content rather than
//! watched with inotify: a Kubernetes ConfigMap volume updates by swapping the `..data` symlink,
//! so the watched inode never changes; reading through the path always sees the new content.

use std::path::PathBuf;
use std::sync::Arc;

use super::{Config, ConfigErrors};

/// What one check found.
#[derive(Debug)]
pub enum ReloadOutcome {
    /// Same effective configuration as the one in force (or the same invalid file as last time).
    Unchanged,
    /// A valid, different configuration: apply it. `restart_needed` lists keys that changed but
    /// only take effect on restart (listen address, sources, state directory, clock).
    Changed { config: Arc<Config>, restart_needed: Vec<&'static str> },
    /// The file changed but does not validate; the old configuration stays in force.
    Rejected(ConfigErrors),
}

/// Checks beyond the YAML that a new configuration must pass too (`run` adds its own: receivers
/// that need `state_dir`), as `(key path, problem)`.
pub type ExtraCheck = Box<dyn Fn(&Config) -> Vec<(String, String)> + Send>;

pub struct Reloader {
    path: PathBuf,
    current: Arc<Config>,
    /// The error text of the last rejected file, so one bad edit is reported (and counted) once.
    last_rejected: Option<String>,
    extra: Option<ExtraCheck>,
}

impl Reloader {
    pub fn new(path: PathBuf, current: Arc<Config>) -> Self {
        Reloader { path, current, last_rejected: None, extra: None }
    }

    /// A reload must also pass `check`.
    pub fn with_check(mut self, check: ExtraCheck) -> Self {
        self.extra = Some(check);
        self
    }

    fn reject(&mut self, e: ConfigErrors) -> ReloadOutcome {
        let text = e.to_string();
        if self.last_rejected.as_deref() == Some(text.as_str()) {
            return ReloadOutcome::Unchanged;
        }
        self.last_rejected = Some(text);
        ReloadOutcome::Rejected(e)
    }

    pub fn current(&self) -> &Arc<Config> {
        &self.current
    }

    /// Whether the file on disk is the one in force (or a valid change of it): false from a
    /// rejection until the file is valid again, however many checks find it unchanged.
    pub fn file_ok(&self) -> bool {
        self.last_rejected.is_none()
    }

    pub fn check(&mut self) -> ReloadOutcome {
        match Config::load(&self.path) {
            Ok(new) if new.condition_count() == 0 && self.current.condition_count() > 0 => {
                // E.g. a reload that lost `profiles_dir`: every condition would stop being checked.
                let e = ConfigErrors(vec![super::ConfigError::new(
                    "profiles",
                    format!(
                        "the new configuration has no conditions (the one in force has {}); refusing to stop monitoring",
                        self.current.condition_count()
                    ),
                )]);
                let text = e.to_string();
                if self.last_rejected.as_deref() == Some(text.as_str()) {
                    return ReloadOutcome::Unchanged;
                }
                self.last_rejected = Some(text);
                ReloadOutcome::Rejected(e)
            }
            Ok(new) if self.extra.as_ref().is_some_and(|f| !f(&new).is_empty()) => {
                let problems = self.extra.as_ref().map(|f| f(&new)).unwrap_or_default();
                self.reject(ConfigErrors(problems.into_iter().map(|(p, m)| super::ConfigError::new(p, m)).collect()))
            }
            Ok(new) => {
                self.last_rejected = None;
                if new.hash == self.current.hash {
                    return ReloadOutcome::Unchanged;
                }
                let (old, newr) = (&self.current.raw, &new.raw);
                let mut restart_needed = Vec::new();
                if old.http.listen != newr.http.listen {
                    restart_needed.push("http.listen");
                }
                if serde_json::to_value(&old.sources).ok() != serde_json::to_value(&newr.sources).ok() {
                    restart_needed.push("sources");
                }
                if old.state_dir != newr.state_dir {
                    restart_needed.push("state_dir");
                }
                if old.clock != newr.clock {
                    restart_needed.push("clock");
                }
                let config = Arc::new(new);
                self.current = config.clone();
                ReloadOutcome::Changed { config, restart_needed }
            }
            Err(e) => {
                let text = e.to_string();
                if self.last_rejected.as_deref() == Some(text.as_str()) {
                    return ReloadOutcome::Unchanged;
                }
                self.last_rejected = Some(text);
                ReloadOutcome::Rejected(e)
            }
        }
    }
}

/// The hot-reload loop of `run`: checks the config every `every` and at once on SIGHUP. A valid
/// change goes to `applied(new config, old hash)`, an invalid one to `rejected(errors, old hash)`
/// (the old config stays in force); both are logged here. After every check `file_ok` says
/// whether the file on disk is valid ([`Reloader::file_ok`]). Runs until dropped.
pub async fn watch(
    mut reloader: Reloader,
    every: crate::time::Dur,
    mut applied: impl FnMut(Arc<Config>, &str) + Send,
    mut rejected: impl FnMut(&ConfigErrors, &str) + Send,
    mut file_ok: impl FnMut(bool) + Send,
    task: crate::health::TaskGuard,
) {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(every.ms().max(100) as u64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        task.beat();
        match hup.as_mut() {
            Some(h) => tokio::select! {
                _ = tick.tick() => {}
                _ = h.recv() => tracing::info!("SIGHUP: checking the config"),
            },
            None => {
                tick.tick().await;
            }
        }
        let old = reloader.current().hash.clone();
        // Reading files and hashing: off the async workers.
        let (r, outcome) = match tokio::task::spawn_blocking(move || {
            let o = reloader.check();
            (reloader, o)
        })
        .await
        {
            Ok(x) => x,
            Err(_) => {
                task.fail("the config check panicked");
                return;
            }
        };
        reloader = r;
        file_ok(reloader.file_ok());
        match outcome {
            ReloadOutcome::Unchanged => {}
            ReloadOutcome::Changed { config, restart_needed } => {
                let new = config.hash.clone();
                applied(config, &old);
                tracing::info!(old_hash = %old, new_hash = %new, "config reloaded");
                if !restart_needed.is_empty() {
                    tracing::warn!(keys = ?restart_needed, "these config changes take effect only after a restart");
                }
            }
            ReloadOutcome::Rejected(errors) => {
                rejected(&errors, &old);
                tracing::error!(config_hash = %old, errors = %errors, "config reload rejected; the previous config stays in force");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "groups: {sex: [female, male, unknown]}\nprofiles:\n  lfr:\n    conditions:\n      - {id: far, kind: rate, numerator: false_alerts, denominator: detections, max: 0.001}\n";

    #[test]
    fn valid_change_invalid_change_and_symlink_swap() {
        let dir = tempfile::tempdir().unwrap();
        // ConfigMap layout: ddtwatch.yaml -> ..data/ddtwatch.yaml, ..data -> ..2026_1
        let v1 = dir.path().join("..2026_1");
        std::fs::create_dir(&v1).unwrap();
        std::fs::write(v1.join("ddtwatch.yaml"), BASE).unwrap();
        std::os::unix::fs::symlink("..2026_1", dir.path().join("..data")).unwrap();
        let path = dir.path().join("ddtwatch.yaml");
        std::os::unix::fs::symlink("..data/ddtwatch.yaml", &path).unwrap();
        let first = Arc::new(Config::load(&path).unwrap());
        let mut r = Reloader::new(path.clone(), first.clone());
        assert!(matches!(r.check(), ReloadOutcome::Unchanged));

        // Swap the symlink to a new directory, as the kubelet does.
        let v2 = dir.path().join("..2026_2");
        std::fs::create_dir(&v2).unwrap();
        std::fs::write(v2.join("ddtwatch.yaml"), BASE.replace("0.001", "0.002")).unwrap();
        std::os::unix::fs::symlink("..2026_2", dir.path().join("..data_tmp")).unwrap();
        std::fs::rename(dir.path().join("..data_tmp"), dir.path().join("..data")).unwrap();
        match r.check() {
            ReloadOutcome::Changed { config, restart_needed } => {
                assert_ne!(config.hash, first.hash);
                assert!(restart_needed.is_empty());
            }
            other => panic!("expected a change, got {other:?}"),
        }
        assert!(matches!(r.check(), ReloadOutcome::Unchanged));

        // An invalid edit is rejected once, and the valid config stays current.
        let good = r.current().hash.clone();
        std::fs::write(v2.join("ddtwatch.yaml"), BASE.replace("max:", "maxx:")).unwrap();
        match r.check() {
            ReloadOutcome::Rejected(e) => assert!(e.to_string().contains("maxx"), "{e}"),
            other => panic!("expected rejection, got {other:?}"),
        }
        assert!(matches!(r.check(), ReloadOutcome::Unchanged), "the same bad file is reported once");
        assert_eq!(r.current().hash, good);

        // A change to a restart-only key is applied and flagged.
        std::fs::write(v2.join("ddtwatch.yaml"), format!("http: {{listen: \"127.0.0.1:9999\"}}\n{BASE}")).unwrap();
        match r.check() {
            ReloadOutcome::Changed { restart_needed, .. } => assert_eq!(restart_needed, vec!["http.listen"]),
            other => panic!("expected a change, got {other:?}"),
        }

        // A reload that would leave no condition at all (profiles emptied) is refused, once.
        let before = r.current().hash.clone();
        std::fs::write(
            v2.join("ddtwatch.yaml"),
            "groups: {sex: [female, male, unknown]}\nprofiles: {lfr: {conditions: []}}\n",
        )
        .unwrap();
        match r.check() {
            ReloadOutcome::Rejected(e) => assert!(e.to_string().contains("no conditions"), "{e}"),
            other => panic!("expected rejection, got {other:?}"),
        }
        assert!(matches!(r.check(), ReloadOutcome::Unchanged));
        assert_eq!(r.current().hash, before);
    }

    #[test]
    fn an_extra_check_rejects_a_reload_the_yaml_allows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ddtwatch.yaml");
        std::fs::write(&path, BASE).unwrap();
        let first = Arc::new(Config::load(&path).unwrap());
        let mut r = Reloader::new(path.clone(), first.clone()).with_check(Box::new(|c| {
            c.raw.receivers.keys().map(|k| (format!("receivers.{k}"), "needs state_dir".to_string())).collect()
        }));
        std::fs::write(&path, format!("{BASE}receivers: {{ops: {{kind: log}}}}\n")).unwrap();
        match r.check() {
            ReloadOutcome::Rejected(e) => assert!(e.to_string().contains("receivers.ops: needs state_dir"), "{e}"),
            other => panic!("expected rejection, got {other:?}"),
        }
        assert_eq!(r.current().hash, first.hash);
    }
}
