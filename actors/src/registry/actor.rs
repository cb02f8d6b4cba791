//! The RegistryActor: owns the [`Registry`], persists every change, is the only writer of the
//! published [`RouteTable`], and supervises one HealthProbeActor per backend.

mod effects;
mod upkeep;

use super::{Registry, RegistryError};
use crate::cert::{CertActor, CertArgs, CertInfo, CertMsg, CertProvisioning, Provision};
use crate::command::{BackendView, Command, Reply};
use crate::health::{now_ms, HealthProbeActor, HealthSettings, ProbeArgs, ProbeMsg, ProbeReport};
use crate::metrics::{MetricsMsg, RouteHandles};
use crate::model::{BackendId, DomainName, DomainRecord};
use crate::resolve::Resolutions;
use crate::rollout::Change;
use crate::routing::RouteTable;
use crate::store::{RemoteChanges, StateStore, StoreStatus};
use crate::upstream::HealthStatus;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use std::collections::HashMap;
use std::sync::Arc;

/// Messages the RegistryActor handles.
pub enum RegistryMsg {
    /// Apply a change; persisted and published before the reply.
    Apply(Command, RpcReplyPort<Result<Reply, RegistryError>>),
    /// All domains.
    ListDomains(RpcReplyPort<Vec<DomainRecord>>),
    /// One domain.
    GetDomain(String, RpcReplyPort<Result<DomainRecord, RegistryError>>),
    /// All backends with health.
    ListBackends(RpcReplyPort<Vec<BackendView>>),
    /// One backend with health.
    GetBackend(String, RpcReplyPort<Result<BackendView, RegistryError>>),
    /// A probe's outcome (ignored when the backend was deleted or re-addressed).
    ProbeResult(ProbeReport),
    /// Supervision counters.
    Supervision(RpcReplyPort<SupervisionReport>),
    /// Makes a backend's probe panic (tests of supervision).
    #[cfg(any(test, feature = "test-hooks"))]
    CrashProbe(String, RpcReplyPort<bool>),
    /// Every certificate served, with its source and status.
    ListCertificates(RpcReplyPort<Vec<CertInfo>>),
    /// A domain's routing changes, newest first.
    History(String, RpcReplyPort<Result<Vec<Change>, RegistryError>>),
    /// Time to check the canaries of splits against their rollback rules.
    CheckCanaries,
    /// Records other instances committed to the shared store.
    Remote(RemoteChanges),
    /// The state store's reachability.
    StoreStatus(RpcReplyPort<StoreStatus>),
    /// Time to try the host names that did not resolve again.
    ResolveAgain,
    /// Time to forget the rate limiters' idle clients.
    SweepLimiters,
    /// A host name that did not resolve now does.
    Resolved {
        /// The backend.
        id: BackendId,
        /// Its configured address, as it was when the lookup started.
        address: String,
        /// What it resolved to.
        addr: std::net::SocketAddr,
    },
}

/// How often canaries are checked against their rollback rules.
const CHECK_CANARIES_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// How often host names that did not resolve at start are tried again.
const RESOLVE_AGAIN_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// How often the rate limiters forget clients whose allowance is full again (their memory stays
/// bounded by the clients of the last few seconds).
const SWEEP_LIMITERS_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

impl From<ProbeReport> for RegistryMsg {
    fn from(r: ProbeReport) -> Self {
        RegistryMsg::ProbeResult(r)
    }
}

impl TryFrom<RegistryMsg> for ProbeReport {
    type Error = RegistryMsg;

    fn try_from(msg: RegistryMsg) -> Result<Self, RegistryMsg> {
        match msg {
            RegistryMsg::ProbeResult(r) => Ok(r),
            other => Err(other),
        }
    }
}

/// What the supervisor has seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SupervisionReport {
    /// Probes running now.
    pub probes: usize,
    /// Probes restarted after a crash.
    pub probe_restarts: u64,
}

/// What the RegistryActor starts from.
pub struct RegistryArgs {
    /// The registry, already published into `table`.
    pub registry: Registry,
    /// The routing view the request path reads.
    pub table: Arc<RouteTable>,
    /// Where changes are persisted.
    pub store: Arc<dyn StateStore>,
    /// Active health checks; `None` turns them off.
    pub health: Option<HealthSettings>,
    /// Route metric handles, already resolved for `registry`'s routes.
    pub handles: RouteHandles,
    /// Told which series exist.
    pub metrics: ActorRef<MetricsMsg>,
    /// Certificates for the HTTPS listener; `None` without one.
    pub certs: Option<CertProvisioning>,
}

/// The RegistryActor's state.
pub struct RegistryState {
    registry: Registry,
    table: Arc<RouteTable>,
    store: Arc<dyn StateStore>,
    health: Option<Arc<HealthSettings>>,
    handles: RouteHandles,
    metrics: ActorRef<MetricsMsg>,
    probes: HashMap<BackendId, ActorRef<ProbeMsg>>,
    certs: Option<CertProvisioning>,
    cert_actors: HashMap<DomainName, ActorRef<CertMsg>>,
    children: HashMap<ActorId, Child>,
    probe_restarts: u64,
}

/// A supervised child and what it looks after.
#[derive(Clone, Debug)]
enum Child {
    Probe(BackendId),
    Cert(DomainName),
}

/// Owner of domains, backends and tags; supervisor of the probes.
pub struct RegistryActor;

impl Actor for RegistryActor {
    type Msg = RegistryMsg;
    type State = RegistryState;
    type Arguments = RegistryArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: RegistryArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut state = RegistryState {
            registry: args.registry,
            table: args.table,
            store: args.store,
            health: args.health.map(Arc::new),
            handles: args.handles,
            metrics: args.metrics,
            probes: HashMap::new(),
            certs: args.certs,
            cert_actors: HashMap::new(),
            children: HashMap::new(),
            probe_restarts: 0,
        };
        state.send_metric_updates();
        let up = state.store.status().up;
        state.handles.metrics().set_store_up(up);
        Ok(state)
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut RegistryState,
    ) -> Result<(), ActorProcessingErr> {
        let ids: Vec<BackendId> = state.registry.backend_ids().cloned().collect();
        for id in ids {
            state.start_probe(&myself, &id).await;
        }
        let domains: Vec<DomainName> = state.registry.domains().map(|d| d.domain.clone()).collect();
        for d in domains {
            state.provision_cert(&myself, &d).await;
        }
        myself.send_interval(RESOLVE_AGAIN_EVERY, || RegistryMsg::ResolveAgain);
        myself.send_interval(CHECK_CANARIES_EVERY, || RegistryMsg::CheckCanaries);
        myself.send_interval(SWEEP_LIMITERS_EVERY, || RegistryMsg::SweepLimiters);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: RegistryMsg,
        state: &mut RegistryState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RegistryMsg::Apply(cmd, reply) => {
                let _ = reply.send(state.apply(&myself, cmd).await);
            }
            RegistryMsg::ListDomains(reply) => {
                let _ = reply.send(state.registry.domains().cloned().collect());
            }
            RegistryMsg::GetDomain(name, reply) => {
                let _ = reply.send(state.registry.domain(&name).cloned());
            }
            RegistryMsg::ListBackends(reply) => {
                let _ = reply.send(state.registry.backends().collect());
            }
            RegistryMsg::GetBackend(id, reply) => {
                let _ = reply.send(state.registry.backend(&id));
            }
            RegistryMsg::ProbeResult(report) => state.record_probe(report),
            RegistryMsg::ResolveAgain => state.resolve_again(&myself),
            RegistryMsg::SweepLimiters => state.sweep_limiters(),
            RegistryMsg::History(name, reply) => {
                let _ = reply.send(state.registry.history(&name));
            }
            RegistryMsg::CheckCanaries => {
                state.check_canaries(&myself).await;
                let up = state.store.status().up;
                state.handles.metrics().set_store_up(up);
            }
            RegistryMsg::Remote(changes) => state.apply_remote(&myself, changes).await,
            RegistryMsg::StoreStatus(reply) => {
                let _ = reply.send(state.store.status());
            }
            RegistryMsg::Resolved { id, address, addr } => {
                if let Some(effects) = state.registry.resolve_later(&id, &address, addr) {
                    tracing::info!(backend = %id, address = %address, addr = %addr,
                        "backend host name resolves now; it is probed and takes traffic when healthy");
                    state
                        .registry
                        .publish(&effects, &state.table, &mut state.handles);
                    state.send_metric_updates();
                    state.start_probe(&myself, &id).await;
                }
            }
            RegistryMsg::Supervision(reply) => {
                let _ = reply.send(SupervisionReport {
                    probes: state.probes.len(),
                    probe_restarts: state.probe_restarts,
                });
            }
            RegistryMsg::ListCertificates(reply) => {
                let list = state
                    .certs
                    .as_ref()
                    .map(|c| c.store.list())
                    .unwrap_or_default();
                let _ = reply.send(list);
            }
            #[cfg(any(test, feature = "test-hooks"))]
            RegistryMsg::CrashProbe(id, reply) => {
                let probe = BackendId::parse(&id)
                    .ok()
                    .and_then(|id| state.probes.get(&id));
                let sent = probe.is_some_and(|p| p.send_message(ProbeMsg::Crash).is_ok());
                let _ = reply.send(sent);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        evt: SupervisionEvent,
        state: &mut RegistryState,
    ) -> Result<(), ActorProcessingErr> {
        match evt {
            SupervisionEvent::ActorFailed(cell, err) => match state.children.remove(&cell.get_id())
            {
                Some(Child::Probe(id)) => {
                    state.probes.remove(&id);
                    state.probe_restarts += 1;
                    tracing::warn!(backend = %id, error = %err, restarts = state.probe_restarts,
                        "health probe crashed; restarting it");
                    state.start_probe(&myself, &id).await;
                }
                Some(Child::Cert(domain)) => {
                    state.cert_actors.remove(&domain);
                    tracing::warn!(domain = %domain, error = %err, "certificate actor crashed; restarting it");
                    state.provision_cert(&myself, &domain).await;
                }
                None => {}
            },
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                state.children.remove(&cell.get_id());
            }
            _ => {}
        }
        Ok(())
    }
}

impl RegistryState {
    /// Validates and applies, persists (undoing the change when that fails), then publishes
    /// and adjusts the probes and certificates.
    async fn apply(
        &mut self,
        myself: &ActorRef<RegistryMsg>,
        cmd: Command,
    ) -> Result<Reply, RegistryError> {
        let resolved = Resolutions::of(&cmd).await;
        let (reply, effects) = self.registry.apply_at(cmd, &resolved, now_ms())?;
        if let Err(e) = self.persist().await {
            self.registry.revert();
            return Err(RegistryError::Persist(e));
        }
        self.realize(myself, effects).await;
        Ok(reply)
    }

    async fn start_probe(&mut self, myself: &ActorRef<RegistryMsg>, id: &BackendId) {
        let Some(settings) = &self.health else {
            return;
        };
        let (Some(target), Some(host)) = (
            self.registry.upstream(id).cloned(),
            self.registry.backend_address(id).map(str::to_string),
        ) else {
            return;
        };
        if !target.is_resolved() {
            return; // Probed once its host name resolves.
        }
        let args = ProbeArgs {
            target,
            host,
            settings: Arc::clone(settings),
            report_to: myself.get_derived(),
        };
        match Actor::spawn_linked(None, HealthProbeActor, args, myself.get_cell()).await {
            Ok((probe, _)) => {
                self.children
                    .insert(probe.get_id(), Child::Probe(id.clone()));
                self.probes.insert(id.clone(), probe);
            }
            Err(e) => tracing::error!(backend = %id, error = %e, "cannot start health probe"),
        }
    }

    /// Gives a domain its certificate: file, ACME actor, or self-signed.
    async fn provision_cert(&mut self, myself: &ActorRef<RegistryMsg>, domain: &DomainName) {
        let Some(certs) = &self.certs else {
            return;
        };
        if certs.provision(domain) != Provision::Acme {
            return;
        }
        let Some(issuer) = certs.issuer.clone() else {
            return;
        };
        let args = CertArgs {
            domain: domain.to_string(),
            issuer,
            store: certs.store.clone(),
        };
        match Actor::spawn_linked(None, CertActor, args, myself.get_cell()).await {
            Ok((actor, _)) => {
                self.children
                    .insert(actor.get_id(), Child::Cert(domain.clone()));
                self.cert_actors.insert(domain.clone(), actor);
            }
            Err(e) => {
                tracing::error!(domain = %domain, error = %e, "cannot start certificate actor")
            }
        }
    }

    fn release_cert(&mut self, domain: &DomainName) {
        if let Some(a) = self.cert_actors.remove(domain) {
            a.stop(None);
        }
        if let Some(certs) = &self.certs {
            certs.release(domain);
        }
    }

    fn stop_probe(&mut self, id: &BackendId) {
        if let Some(p) = self.probes.remove(id) {
            p.stop(None);
        }
    }

    fn record_probe(&mut self, ProbeReport { target, result }: ProbeReport) {
        let current = BackendId::parse(&target.id)
            .ok()
            .and_then(|id| self.registry.upstream(&id));
        let (Some(settings), Some(current)) = (&self.health, current) else {
            return;
        };
        if !Arc::ptr_eq(current, &target) {
            return; // A result for an address the backend no longer has.
        }
        let change = target
            .health
            .record_probe(result.is_ok(), settings.thresholds(), now_ms());
        self.handles
            .metrics()
            .record_health_check(&target.id, result.is_ok());
        match (change, &result) {
            (Some((_, HealthStatus::Unhealthy)), Err(e)) => {
                tracing::warn!(backend = %target.id, addr = %target.addr, error = %e, "backend unhealthy");
            }
            (Some((_, to)), _) => {
                tracing::info!(backend = %target.id, addr = %target.addr, status = to.as_str(), "backend health changed");
            }
            (None, Err(e)) => {
                tracing::debug!(backend = %target.id, error = %e, "health probe failed");
            }
            (None, Ok(())) => {}
        }
    }
}
