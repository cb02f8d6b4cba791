//! The control runtime: the metrics and registry actors, the admin API and the metrics
//! endpoint, on a tokio runtime of their own, started before the listeners accept.

use crate::admin::{self, AdminState};
use crate::config::Config;
use ractor::Actor;
use std::net::SocketAddr;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vhost_actors::cert::CertProvisioning;
use vhost_actors::metrics::{MetricsActor, MetricsArgs, RouteHandles};
use vhost_actors::registry::actor::RegistryMsg;
use vhost_actors::registry::actor::{RegistryActor, RegistryArgs};
use vhost_actors::registry::Registry;
use vhost_actors::routing::RouteTable;
use vhost_actors::store::StateStore;

/// The runtime running the actors and the admin API; dropping it stops them.
pub struct Control {
    _runtime: tokio::runtime::Runtime,
}

/// What the control plane shares with the request path.
pub struct Shared {
    pub registry: Registry,
    pub table: Arc<RouteTable>,
    pub handles: RouteHandles,
    pub in_flight: Arc<AtomicI64>,
    pub store: Arc<dyn StateStore>,
    pub certs: Option<CertProvisioning>,
}

/// Starts the actors, then binds and serves the admin API (and the metrics endpoint).
pub fn start_control(
    cfg: &Config,
    shared: Shared,
    mut admin_stopped: tokio::sync::watch::Receiver<bool>,
    upgrading: bool,
) -> Result<Control, Vec<String>> {
    let Shared {
        registry,
        table,
        handles,
        in_flight,
        store,
        certs,
    } = shared;
    let metrics_addr = cfg.metrics_addr;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("vhost-control")
        .enable_all()
        .build()
        .map_err(|e| vec![format!("cannot start the control runtime: {e}")])?;
    let admin_addr = cfg.admin_addr;
    let token = cfg.admin_token.as_deref().map(Arc::from);
    let max_body = cfg.limits.max_admin_body_bytes;
    let health = cfg.health_check.clone();
    let bind_patience = if upgrading {
        cfg.grace_period + Duration::from_secs(10)
    } else {
        Duration::ZERO
    };
    runtime.block_on(async move {
        let (metrics_ref, _) = Actor::spawn(
            Some("metrics".into()),
            MetricsActor,
            MetricsArgs {
                metrics: Arc::clone(handles.metrics()),
                in_flight,
                certs: certs.as_ref().map(|c| c.store.clone()),
                acme: certs
                    .as_ref()
                    .and_then(|c| c.issuer.as_ref())
                    .map(|i| Arc::clone(i.counters())),
            },
        )
        .await
        .map_err(|e| vec![format!("cannot start the metrics actor: {e}")])?;
        let (registry_ref, _) = Actor::spawn(
            Some("registry".into()),
            RegistryActor,
            RegistryArgs {
                registry,
                table,
                store: Arc::clone(&store),
                health,
                handles,
                metrics: metrics_ref.clone(),
                certs,
            },
        )
        .await
        .map_err(|e| vec![format!("cannot start the registry actor: {e}")])?;
        // Other instances' changes (a shared store) reach the registry as messages.
        let to_registry = registry_ref.clone();
        store.subscribe(Box::new(move |changes| {
            let _ = to_registry.send_message(RegistryMsg::Remote(changes));
        }));
        let listener = bind_with_patience(admin_addr, bind_patience)
            .await
            .map_err(|e| {
                vec![format!(
                    "proxy.management_api_addr: cannot listen on {admin_addr}: {e}"
                )]
            })?;
        if let Some(addr) = metrics_addr {
            let listener = bind_with_patience(addr, bind_patience)
                .await
                .map_err(|e| vec![format!("metrics.listen_addr: cannot listen on {addr}: {e}")])?;
            let app = admin::metrics_app(metrics_ref.clone());
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app).await {
                    tracing::error!("metrics endpoint stopped: {e}");
                }
            });
        }
        let app = admin::app(
            AdminState {
                registry: registry_ref,
                metrics: metrics_ref,
                token,
                started: Instant::now(),
            },
            max_body,
        );
        tokio::spawn(async move {
            let stop = async move {
                let _ = admin_stopped.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::error!("admin API stopped: {e}");
            }
        });
        Ok::<_, Vec<String>>(())
    })?;
    Ok(Control { _runtime: runtime })
}

/// Binds, retrying while a previous instance still holds the port (upgrades).
async fn bind_with_patience(
    addr: SocketAddr,
    patience: Duration,
) -> std::io::Result<tokio::net::TcpListener> {
    let deadline = Instant::now() + patience;
    loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => return Ok(l),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
