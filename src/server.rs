//! Start-up: state loading, bind checks, daemonising and the Pingora server with its listeners.
//! The control runtime (actors and admin API) is in [`control`]; signals, draining and exit
//! are in [`shutdown`].

mod control;
mod fd_limit;
mod shutdown;

use crate::config::Config;
use crate::proxy::{ClientLimits, GuardedProxy, Listener, PeerBuilder, ProxyOptions, VhostProxy};
use crate::telemetry;
use crate::tls::{add_https_listener, fallback_certificate, SniResolver};
use control::{start_control, Shared};
use pingora::apps::HttpServerOptions;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server};
use pingora::services::listening::Service;
use shutdown::{exit_on_sigint, exit_process, DrainingSignals};
use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use vhost_actors::cert::{
    install_crypto_provider, AcmeChallenges, AcmeIssuer, AcmeShare, CertMaterial, CertProvisioning,
    CertSource, CertStore,
};
use vhost_actors::metrics::{Metrics, RouteHandles};
use vhost_actors::model::IpNet;
use vhost_actors::registry::Registry;
use vhost_actors::routing::RouteTable;
use vhost_actors::store::{JsonFileStore, StateStore, StoreError};

/// Flags of `run`.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions {
    /// Discard the state file and seed from the config.
    pub reset_state: bool,
    /// Take listeners over from a running instance.
    pub upgrade: bool,
    /// Detach into the background.
    pub daemon: bool,
}

/// Runs the daemon until a signal ends it. Returns only on start-up errors.
pub fn run(cfg: Config, opts: RunOptions) -> Result<(), Vec<String>> {
    if !cfg.refused_at_start.is_empty() {
        return Err(cfg.refused_at_start.clone());
    }
    let (store, acme_share) = open_store(&cfg)?;
    let mut notes = Vec::new();
    // During an upgrade the old instance still owns the state; load it once it hands over.
    let mut registry = if opts.upgrade {
        None
    } else {
        Some(load_registry(
            &cfg,
            store.as_ref(),
            opts.reset_state,
            &mut notes,
        )?)
    };
    if !opts.upgrade {
        check_bindable(&cfg)?;
    }
    if opts.daemon {
        daemonize(&cfg)?;
    }
    telemetry::init(&cfg.logging).map_err(|e| vec![e])?;
    fd_limit::raise();
    exit_on_sigint()?;
    for note in &cfg.warnings {
        tracing::warn!("{note}");
    }

    let mut server = Server::new_with_opt_and_conf(
        Opt {
            upgrade: opts.upgrade,
            ..Opt::default()
        },
        server_conf(&cfg),
    );
    server.bootstrap();

    let registry = match registry.take() {
        Some(r) => r,
        None => load_registry(&cfg, store.as_ref(), opts.reset_state, &mut notes)?,
    };
    for note in notes {
        tracing::warn!("{note}");
    }
    registry.warn_unverified();

    let mut registry = registry;
    for id in registry.refuse_own_addresses(own_addresses(&cfg)) {
        tracing::warn!(
            backend = %id,
            "backend address is this proxy's own listener or admin API; requests to it get 508"
        );
    }
    let table = Arc::new(RouteTable::new());
    let metrics = Metrics::new();
    let mut handles = RouteHandles::new(Arc::clone(&metrics));
    registry.publish_all(&table, &mut handles);
    let in_flight = Arc::new(AtomicI64::new(0));
    let tls = match cfg.listen_https {
        Some(_) => Some(prepare_tls(&cfg, acme_share)?),
        None => None,
    };
    let (admin_stop, admin_stopped) = tokio::sync::watch::channel(false);
    let control = start_control(
        &cfg,
        Shared {
            registry,
            table: Arc::clone(&table),
            handles,
            in_flight: Arc::clone(&in_flight),
            store,
            certs: tls.clone(),
        },
        admin_stopped,
        opts.upgrade,
    )?;

    let trusted_proxies: Arc<[IpNet]> = cfg.trusted_proxies.clone().into();
    let proxy = |listener: Listener| {
        VhostProxy::new(
            Arc::clone(&table),
            ProxyOptions {
                limits: cfg.limits,
                eject_after: cfg.unhealthy_threshold,
                unknown: metrics.unknown_host(),
                in_flight: Arc::clone(&in_flight),
                listener,
                trusted_proxies: Arc::clone(&trusted_proxies),
            },
        )
    };
    if let Some(addr) = cfg.listen_http {
        let challenges = tls
            .as_ref()
            .and_then(|t| t.issuer.as_ref())
            .map(|i| i.challenges().clone());
        let plain = proxy(Listener::Plain {
            https_port: cfg.listen_https.map(|a| a.port()),
            challenges,
        });
        let mut service = proxy_service(&server, "vhost-http", plain, &cfg, cfg.h2c);
        // No L4 read buffer on plain HTTP: Pingora's HTTP/1 session buffers what it reads
        // itself, and the default 64 KiB buffer, allocated at accept, is most of what an idle
        // connection costs. (TLS keeps it: records are read in small pieces; so does h2c,
        // whose prior-knowledge preface is peeked through that buffer.)
        let listener = ListenerConfig::tcp(addr.to_string());
        service.add_listener(if cfg.h2c {
            listener
        } else {
            listener.l4_buffer(L4BufferSettings::default().read(0))
        });
        server.add_service(service);
    }
    if let (Some(addr), Some(tls)) = (cfg.listen_https, &tls) {
        let mut service = proxy_service(&server, "vhost-https", proxy(Listener::Tls), &cfg, false);
        add_https_listener(&mut service, &addr.to_string(), sni_resolver(&cfg, tls)?)
            .map_err(|e| vec![format!("proxy.listen_addr: {e}")])?;
        server.add_service(service);
    }
    tracing::info!(
        http = ?cfg.listen_http,
        https = ?cfg.listen_https,
        admin = %cfg.admin_addr,
        routes = table.len(),
        threads = cfg.threads,
        "pingora-vhost started"
    );
    server.run(RunArgs {
        shutdown_signal: Box::new(DrainingSignals::new(
            in_flight,
            cfg.grace_period,
            admin_stop,
        )),
    });
    drop(control);
    exit_process(0)
}

/// The proxy's listeners and admin API, which no backend may be.
fn own_addresses(cfg: &Config) -> Vec<SocketAddr> {
    [
        cfg.listen_http,
        cfg.listen_https,
        Some(cfg.admin_addr),
        cfg.metrics_addr,
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// A listener service running `proxy` with its client connections guarded by the limits.
fn proxy_service(
    server: &Server,
    name: &str,
    proxy: VhostProxy,
    cfg: &Config,
    h2c: bool,
) -> Service<GuardedProxy> {
    let limits = ClientLimits {
        header_timeout: cfg.limits.client_header_timeout,
        idle_timeout: cfg.limits.client_idle_timeout,
        send_timeout: cfg.limits.client_send_timeout,
        max_head_bytes: cfg.limits.max_request_header_bytes,
    };
    let mut proxy = pingora::proxy::http_proxy(&server.configuration, proxy);
    if h2c {
        // HTTP/2 by prior knowledge; HTTP/1.1 still works on the same port.
        let mut options = HttpServerOptions::default();
        options.h2c = true;
        proxy.server_options = Some(options);
    }
    let mut service = Service::new(name.to_string(), GuardedProxy::new(proxy, limits));
    service.threads = Some(cfg.threads);
    service
}

/// The HTTPS listener's certificate choice: by SNI, and for clients without SNI the
/// `default_sni` domain's certificate, else a self-signed one made now.
fn sni_resolver(cfg: &Config, tls: &CertProvisioning) -> Result<SniResolver, Vec<String>> {
    let fallback = fallback_certificate().map_err(|e| {
        vec![format!(
            "cannot make the certificate for clients without SNI: {e}"
        )]
    })?;
    let resolver = SniResolver::new(tls.store.clone()).with_fallback(&fallback);
    Ok(match &cfg.default_sni {
        Some(domain) => resolver.with_default(domain.as_str()),
        None => resolver,
    })
}

/// The certificate store with the `[[certificates]]` files installed, and the ACME issuer.
fn prepare_tls(
    cfg: &Config,
    share: Option<Arc<dyn AcmeShare>>,
) -> Result<CertProvisioning, Vec<String>> {
    install_crypto_provider();
    let store = CertStore::new();
    let mut manual = HashSet::new();
    let mut errs = Vec::new();
    for c in &cfg.certificates {
        match CertMaterial::from_files(&c.cert_path, &c.key_path) {
            Ok(m) => {
                store.install(c.domain.as_str(), &m, CertSource::Manual);
                manual.insert(c.domain.to_string());
            }
            Err(e) => errs.push(format!("certificates ({}): {e}", c.domain)),
        }
    }
    let issuer = match &cfg.acme {
        Some(settings) => AcmeIssuer::new(settings.clone(), AcmeChallenges::new())
            .map(|issuer| {
                if let Some(share) = share {
                    issuer.share_with(share);
                }
                Some(issuer)
            })
            .unwrap_or_else(|e| {
                errs.push(format!("lets_encrypt: {e}"));
                None
            }),
        None => None,
    };
    if errs.is_empty() {
        Ok(CertProvisioning {
            store,
            issuer,
            manual,
        })
    } else {
        Err(errs)
    }
}

/// The state store `[state]` names: the file, or etcd (which then holds the ACME state of
/// every instance too).
type Stores = (Arc<dyn StateStore>, Option<Arc<dyn AcmeShare>>);

fn open_store(cfg: &Config) -> Result<Stores, Vec<String>> {
    match &cfg.etcd {
        None => Ok((Arc::new(JsonFileStore::new(&cfg.state_path)), None)),
        #[cfg(feature = "etcd")]
        Some(settings) => {
            let etcd = vhost_actors::store::EtcdStore::connect(settings)
                .map(Arc::new)
                .map_err(|e| vec![e.to_string()])?;
            Ok((etcd.clone(), Some(etcd)))
        }
        #[cfg(not(feature = "etcd"))]
        Some(_) => Err(vec!["this build has no etcd support".into()]),
    }
}

/// Loads the registry: the stored state wins over the config unless `reset` is set. An empty
/// shared store is seeded from the config (or, when another instance seeded it meanwhile,
/// loaded again).
fn load_registry(
    cfg: &Config,
    store: &dyn StateStore,
    reset: bool,
    notes: &mut Vec<String>,
) -> Result<Registry, Vec<String>> {
    let failed = |e: StoreError| vec![e.to_string()];
    if reset {
        store.discard().map_err(failed)?;
        notes.push(format!(
            "--reset-state: {} discarded; registry seeded from the config",
            store.describe()
        ));
    }
    let mut loaded = store.load().map_err(failed)?;
    if loaded.is_none() && !store.seed(&cfg.seed).map_err(failed)? {
        loaded = store.load().map_err(failed)?;
    }
    let state = match loaded {
        Some(state) => {
            notes.push(format!(
                "{} found: it is the registry ({} domains, {} backends); \
                 [[virtual_hosts]] and [[backends]] of the config are IGNORED \
                 (start with --reset-state to seed from the config again)",
                store.describe(),
                state.domains.len(),
                state.backends.len()
            ));
            state
        }
        None => cfg.seed.clone(),
    };
    let registry =
        Registry::from_state_with(state, PeerBuilder::new(cfg.limits)).map_err(|errs| {
            errs.into_iter()
                .map(|e| format!("{}: {e}", store.describe()))
                .collect::<Vec<_>>()
        })?;
    for (id, address) in registry.unresolved() {
        notes.push(format!(
            "backend '{id}': address '{address}' does not resolve; it starts unhealthy and is \
             resolved again every few seconds"
        ));
    }
    Ok(registry)
}

fn check_bindable(cfg: &Config) -> Result<(), Vec<String>> {
    let mut errs = Vec::new();
    let mut addrs: Vec<(&str, SocketAddr)> = vec![("proxy.management_api_addr", cfg.admin_addr)];
    if let Some(a) = cfg.listen_http {
        addrs.push(("proxy.listen_addr_http", a));
    }
    if let Some(a) = cfg.listen_https {
        addrs.push(("proxy.listen_addr", a));
    }
    if let Some(a) = cfg.metrics_addr {
        addrs.push(("metrics.listen_addr", a));
    }
    for (key, addr) in addrs {
        if let Err(e) = TcpListener::bind(addr) {
            errs.push(format!("{key}: cannot listen on {addr}: {e}"));
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs)
    }
}

fn daemonize(cfg: &Config) -> Result<(), Vec<String>> {
    let cwd = std::env::current_dir()
        .map_err(|e| vec![format!("cannot read the working directory: {e}")])?;
    let pid_file = cfg.state_path.with_extension("pid");
    if let Some(dir) = pid_file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| vec![format!("cannot create {}: {e}", dir.display())])?;
    }
    daemonize::Daemonize::new()
        .working_directory(cwd)
        .pid_file(pid_file)
        .start()
        .map_err(|e| vec![format!("cannot daemonize: {e}")])
}

fn server_conf(cfg: &Config) -> ServerConf {
    // Per-instance paths so several instances (and upgrades between them) never collide.
    let key = cfg
        .listen_http
        .map_or_else(|| cfg.admin_addr.port(), |a| a.port());
    ServerConf {
        threads: cfg.threads,
        pid_file: format!("/tmp/pingora-vhost-{key}.pid"),
        upgrade_sock: format!("/tmp/pingora-vhost-{key}.upgrade.sock"),
        grace_period_seconds: Some(cfg.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(1),
        // One current-thread runtime per worker: a connection stays on the thread that
        // accepted it (no cross-thread wake-ups), as in nginx's worker model.
        work_stealing: false,
        // Every timeout of a second or more (client idle, upstream connect, read and pool idle)
        // on the worker's own tokio timer instead of Pingora's shared fast-timeout map, which
        // is cheaper to register and cancel per request, and Pingora's 100 Hz timer thread is
        // never started.
        fast_timeout_to_tokio_threshold_seconds: Some(0),
        ..ServerConf::default()
    }
}
