//! The CertActor: keeps one domain's ACME certificate valid. On start it serves the cached
//! certificate when there is one; a background cycle then checks whether renewal is due (ARI
//! window, else `renew_before`), orders when it is, and reports back; failures are retried with
//! exponential backoff. Stopping the actor stops its timer and any order under way.

use super::acme::{
    shared_blocking, shared_cert, store_shared_cert, AcmeError, AcmeIssuer, RenewalWindow,
    ORDER_LOCK_PATIENCE,
};
use super::cache::CertCache;
use super::material::CertMaterial;
use super::store::{CertInfo, CertSource, CertStatus, CertStore};
use ractor::{Actor, ActorProcessingErr, ActorRef, MessagingErr, RpcReplyPort};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::task::JoinHandle;

/// Longest sleep between two checks: timers do not count time the machine was suspended, so
/// the actor looks at the wall clock at least this often.
const MAX_SLEEP: Duration = Duration::from_secs(3600);

/// Messages a cert actor handles.
pub enum CertMsg {
    /// Time to check whether renewal is due (or to retry after a failure).
    Check,
    /// Order a new certificate now, due or not.
    RenewNow,
    /// The domain's certificate info.
    Info(RpcReplyPort<Option<CertInfo>>),
    /// Internal: a background cycle finished.
    Finished(CycleOutcome),
}

/// How a background cycle ended.
#[derive(Debug)]
pub enum CycleOutcome {
    /// The certificate is good; look again after this long.
    NotDue {
        /// Delay before the next check.
        recheck_in: Duration,
    },
    /// A new certificate was issued.
    Issued(CertMaterial),
    /// The order failed.
    Failed(AcmeError),
}

/// What a cert actor needs.
pub struct CertArgs {
    /// The domain (lower-case, no trailing dot; a wildcard fails with a clear error).
    pub domain: String,
    /// Settings, account, challenge tokens and counters, shared by all cert actors.
    pub issuer: Arc<AcmeIssuer>,
    /// Where the certificate is served from.
    pub store: CertStore,
}

/// A cert actor's state.
pub struct CertState {
    domain: String,
    issuer: Arc<AcmeIssuer>,
    store: CertStore,
    cache: CertCache,
    current: Option<CertMaterial>,
    failures: u32,
    timer: Option<JoinHandle<Result<(), MessagingErr<CertMsg>>>>,
    cycle: Option<JoinHandle<()>>,
}

/// Obtains and renews one domain's certificate over ACME HTTP-01.
///
/// Spawn it (usually linked to a supervisor) with [`CertArgs`]; when `spawn` returns, a cached
/// certificate is already in the store. Stopping the actor leaves the store entry in place (a
/// restarted actor keeps serving it): remove it with [`CertStore::remove`] when the domain goes.
pub struct CertActor;

impl Actor for CertActor {
    type Msg = CertMsg;
    type State = CertState;
    type Arguments = CertArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<CertMsg>,
        args: CertArgs,
    ) -> Result<CertState, ActorProcessingErr> {
        let cache = CertCache::new(args.issuer.settings().cache_dir.clone());
        let domain = args.domain;
        let mut current = load_cached(&cache, &domain);
        if let Some(share) = args.issuer.share() {
            // Another instance's certificate wins over this one's cache: it is the newest.
            if let Some(m) = shared_cert(share, &domain).await {
                current = Some(m);
            }
        }
        match &current {
            Some(m) => {
                tracing::info!(
                    domain,
                    serial = m.serial(),
                    not_after = m.not_after(),
                    "serving the cached ACME certificate"
                );
                args.store.install(&domain, m, CertSource::Acme);
            }
            None if domain.starts_with("*.") => args.store.set_status(
                &domain,
                CertSource::Acme,
                CertStatus::Failed,
                Some(AcmeError::Wildcard(domain.clone()).to_string()),
            ),
            None => args
                .store
                .set_status(&domain, CertSource::Acme, CertStatus::Pending, None),
        }
        Ok(CertState {
            domain,
            issuer: args.issuer,
            store: args.store,
            cache,
            current,
            failures: 0,
            timer: None,
            cycle: None,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<CertMsg>,
        state: &mut CertState,
    ) -> Result<(), ActorProcessingErr> {
        if state.domain.starts_with("*.") && state.current.is_none() {
            tracing::warn!(
                domain = state.domain,
                "no ACME certificate for a wildcard domain"
            );
            return Ok(());
        }
        myself.send_message(CertMsg::Check)?;
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<CertMsg>,
        state: &mut CertState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(t) = state.timer.take() {
            t.abort();
        }
        if let Some(c) = state.cycle.take() {
            c.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<CertMsg>,
        msg: CertMsg,
        state: &mut CertState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            CertMsg::Check => state.start_cycle(&myself, false),
            CertMsg::RenewNow => state.start_cycle(&myself, true),
            CertMsg::Info(reply) => {
                let _ = reply.send(state.store.info(&state.domain));
            }
            CertMsg::Finished(outcome) => {
                state.cycle = None;
                state.finish_cycle(&myself, outcome);
            }
        }
        Ok(())
    }
}

impl CertState {
    fn start_cycle(&mut self, myself: &ActorRef<CertMsg>, force: bool) {
        if self.cycle.is_some() {
            return;
        }
        let me = myself.clone();
        let issuer = Arc::clone(&self.issuer);
        let store = self.store.clone();
        let domain = self.domain.clone();
        let current = self.current.clone();
        self.cycle = Some(tokio::spawn(async move {
            let outcome = run_cycle(&issuer, &store, &domain, current, force).await;
            let _ = me.send_message(CertMsg::Finished(outcome));
        }));
    }

    fn finish_cycle(&mut self, myself: &ActorRef<CertMsg>, outcome: CycleOutcome) {
        let delay = match outcome {
            CycleOutcome::NotDue { recheck_in } => recheck_in,
            CycleOutcome::Issued(material) => {
                self.failures = 0;
                // Cache first: whoever sees the new certificate served finds it on disk too.
                let cached = self.cache.save(&self.domain, &material);
                self.store
                    .install(&self.domain, &material, CertSource::Acme);
                if let Err(e) = cached {
                    let error = format!(
                        "certificate issued but not cached in {}: {e}",
                        self.cache.dir().display()
                    );
                    tracing::error!(domain = self.domain, error, "cannot cache certificate");
                    self.store.set_status(
                        &self.domain,
                        CertSource::Acme,
                        CertStatus::Valid,
                        Some(error),
                    );
                }
                let due = self.issuer.settings().renew_at(&material);
                self.current = Some(material);
                until(due).min(MAX_SLEEP)
            }
            CycleOutcome::Failed(error) => {
                self.failures += 1;
                let retry_in = self.issuer.settings().retry_delay(self.failures);
                tracing::warn!(domain = self.domain, error = %error, failures = self.failures,
                    retry_in_ms = retry_in.as_millis() as u64, "certificate order failed; will retry");
                self.store.set_status(
                    &self.domain,
                    CertSource::Acme,
                    CertStatus::Failed,
                    Some(error.to_string()),
                );
                retry_in
            }
        };
        if let Some(t) = self.timer.take() {
            t.abort();
        }
        self.timer = Some(myself.send_after(delay, || CertMsg::Check));
    }
}

/// The cached certificate when it is usable for `domain` (valid now, right names, key matches).
fn load_cached(cache: &CertCache, domain: &str) -> Option<CertMaterial> {
    match cache.load(domain) {
        Ok(Some(m)) if !m.covers(domain) => {
            tracing::warn!(domain, names = ?m.names(), "cached certificate is for other names; ignoring it");
            None
        }
        Ok(Some(m)) if m.expired_at(super::unix_now()) => {
            tracing::info!(domain, "cached certificate has expired; ordering a new one");
            None
        }
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(domain, error = %e, "cached certificate unusable; ordering a new one");
            None
        }
    }
}

/// One background cycle: is renewal due (unless forced)? If so, order.
async fn run_cycle(
    issuer: &AcmeIssuer,
    store: &CertStore,
    domain: &str,
    current: Option<CertMaterial>,
    force: bool,
) -> CycleOutcome {
    if let (Some(cert), false) = (&current, force) {
        let (renew_at, recheck) = match issuer.renewal_window(cert).await {
            Ok(Some(window)) => (
                pick_in_window(&window),
                window
                    .recheck_after
                    .clamp(Duration::from_secs(60), MAX_SLEEP),
            ),
            Ok(None) => (issuer.settings().renew_at(cert), MAX_SLEEP),
            Err(e) => {
                tracing::debug!(domain, error = %e, "no ARI window; using renew_before");
                (issuer.settings().renew_at(cert), MAX_SLEEP)
            }
        };
        let wait = until(renew_at);
        if !wait.is_zero() {
            return CycleOutcome::NotDue {
                recheck_in: wait.min(recheck),
            };
        }
    }
    let serving = current
        .as_ref()
        .is_some_and(|c| !c.expired_at(super::unix_now()));
    let status = if serving {
        CertStatus::Renewing
    } else {
        CertStatus::Pending
    };
    let last_error = store.info(domain).and_then(|i| i.last_error);
    store.set_status(domain, CertSource::Acme, status, last_error);
    // With instances sharing ACME, one orders at a time; the others then find its certificate.
    let share = issuer.share().cloned();
    let _order_lock = match &share {
        Some(s) => {
            let name = format!("order/{domain}");
            match shared_blocking(s, move |s| s.lock(&name, ORDER_LOCK_PATIENCE)).await {
                Ok(guard) => Some(guard),
                Err(e) => return CycleOutcome::Failed(AcmeError::Shared(e)),
            }
        }
        None => None,
    };
    if let Some(s) = &share {
        if let Some(m) = shared_cert(s, domain).await {
            let newer = current.as_ref().is_none_or(|c| c.serial() != m.serial());
            if newer && !until(issuer.settings().renew_at(&m)).is_zero() {
                tracing::info!(
                    domain,
                    serial = m.serial(),
                    "using the certificate another instance ordered"
                );
                return CycleOutcome::Issued(m);
            }
        }
    }
    match issuer.issue(domain, current.as_ref()).await {
        Ok(m) => {
            if let Some(s) = &share {
                store_shared_cert(s, domain, &m).await;
            }
            CycleOutcome::Issued(m)
        }
        Err(e) => CycleOutcome::Failed(e),
    }
}

/// Time from now until `t` (zero when `t` has passed).
fn until(t: SystemTime) -> Duration {
    t.duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO)
}

/// A uniformly random point of the window, as RFC 9773 asks, so that many clients do not renew
/// at the same instant.
fn pick_in_window(w: &RenewalWindow) -> SystemTime {
    let span = w.end.duration_since(w.start).unwrap_or(Duration::ZERO);
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let fraction = (random >> 11) as f64 / (1u64 << 53) as f64;
    w.start + span.mul_f64(fraction)
}
