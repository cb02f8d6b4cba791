//! The RegistryActor: owns the [`Registry`], persists every change, and is the only writer of
//! the published [`RouteTable`].

use super::{Registry, RegistryError};
use crate::command::{BackendView, Command, Reply};
use crate::model::DomainRecord;
use crate::snapshot::RouteTable;
use crate::store::StateStore;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
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
}

/// What the RegistryActor starts from.
pub struct RegistryArgs {
    /// The registry, already published into `table`.
    pub registry: Registry,
    /// The routing view the request path reads.
    pub table: Arc<RouteTable>,
    /// Where changes are persisted.
    pub store: Box<dyn StateStore>,
}

/// The RegistryActor's state.
pub struct RegistryState {
    registry: Registry,
    table: Arc<RouteTable>,
    store: Box<dyn StateStore>,
}

/// Owner of domains, backends and tags.
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
        Ok(RegistryState {
            registry: args.registry,
            table: args.table,
            store: args.store,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: RegistryMsg,
        state: &mut RegistryState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RegistryMsg::Apply(cmd, reply) => {
                let _ = reply.send(state.apply(cmd));
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
        }
        Ok(())
    }
}

impl RegistryState {
    /// Validates on a copy, persists the copy, then makes it current and publishes.
    fn apply(&mut self, cmd: Command) -> Result<Reply, RegistryError> {
        let mut next = self.registry.clone();
        let (reply, effects) = next.apply(cmd)?;
        self.store
            .save(&next.state())
            .map_err(|e| RegistryError::Persist(e.to_string()))?;
        self.registry = next;
        self.registry.publish(&effects, &self.table);
        if let Some(d) = &effects.switched {
            tracing::info!(domain = %d, tag = %self.registry.domains[d].enabled_backends_tag, "tag switched");
        }
        Ok(reply)
    }
}
