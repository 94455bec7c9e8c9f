//! Startup and shutdown of a node: the data dir lock, the controller, one pinned executor per
//! shard, the listeners, and the signals that stop it all cleanly.

use crate::admin::{start_admin, AdminListen, NodeInfo};
use crate::config::BrokerConfig;
use crate::inter_broker::InterBrokerClient;
use crate::listeners::Listeners;
use crate::shard::{Advertised, Job, MetadataSource, Shard};
use crate::transport::{BoundListener, ListenerPlan};
use controller::Controller;
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorBuilder, Placement};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;
use tracing::{debug, info, warn};

/// What `spate start` was asked for.
#[derive(Clone, Debug)]
pub struct StartOptions {
    pub data_dir: PathBuf,
    /// The listeners as the operator wrote them (`--listen`'s address, or `listeners`).
    pub listen: String,
    /// Every Kafka listener; `--listen` is one PLAINTEXT listener.
    pub listeners: Listeners,
    pub cores: Option<usize>,
    pub config: BrokerConfig,
    /// The admin HTTP listener (`/metrics`, `/v1/status`); `None` when disabled.
    pub admin_listen: Option<String>,
    /// `admin_listen` is the default: when it cannot be bound (say a second broker on this
    /// host) the broker warns and runs without it instead of failing.
    pub admin_listen_is_default: bool,
    /// Multi-node mode; `None` for the single-node default.
    pub cluster: Option<crate::cluster::ClusterOptions>,
}

/// Messages from shards to the main thread during startup.
enum ShardStarted {
    Ready,
    Failed(String),
}

/// Capacity of each cross-shard channel; senders wait when it is full.
const MESH_CHANNEL_CAPACITY: usize = 1024;
/// Locked memory for each executor's io_uring buffers: what we ask for, and the least glommio
/// works with.
const IO_MEMORY_BYTES_MAX: usize = 4 << 20;
const IO_MEMORY_BYTES_MIN: usize = 512 << 10;

/// Runs a node until SIGINT or SIGTERM. Errors are one-line, human-readable reasons.
pub fn run(options: StartOptions, started_at: Instant) -> Result<(), String> {
    if let Some(cluster) = options.cluster.as_ref().filter(|c| !c.roles.broker) {
        return crate::cluster::run(cluster, &options.data_dir, &options.config);
    }
    let stop = stop_on_signals()?;
    let reload_tls = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, reload_tls.clone())
        .map_err(|e| format!("cannot install a signal handler: {e}"))?;
    let listeners = plan_listeners(&options.listeners, &options.config)?;
    let (inter_broker, controller_security) = match &options.cluster {
        Some(cluster) => (
            InterBrokerClient::of(&options.config, &options.listeners)?,
            Arc::new(crate::cluster::ControllerSecurity::of(
                &options.config,
                cluster.roles.controller,
            )?),
        ),
        None => Default::default(),
    };
    // Before the data dir is touched: a second broker on one of these addresses refuses to
    // start.
    let _listen_claims = listeners
        .iter()
        .map(|plan| crate::listen_claim::claim(plan.addr))
        .collect::<Result<Vec<_>, _>>()?;
    std::fs::create_dir_all(&options.data_dir)
        .map_err(|e| format!("cannot create data dir {}: {e}", options.data_dir.display()))?;
    // Absolute, because glommio resolves relative paths of some operations differently.
    let data_dir = &std::fs::canonicalize(&options.data_dir).map_err(|e| {
        format!(
            "cannot resolve data dir {}: {e}",
            options.data_dir.display()
        )
    })?;
    let _lock = crate::datadir::lock(data_dir)?;
    crate::datadir::refuse_tmpfs(data_dir)?;
    crate::datadir::check_kind(data_dir, options.cluster.is_some())?;
    crate::shard::remove_doomed_dirs(data_dir);
    let cores = crate::datadir::pick_cores(options.cores)?;
    let io_memory = io_memory_per_shard(cores.len());

    // What this broker registers (and what other brokers reach it on).
    let advertised = options.listeners.inter_broker().advertised.clone();
    let mut config = options.config.clone();
    let (metadata, voter) = match &options.cluster {
        None => (
            local_metadata(data_dir, config.node_id, &advertised, cores.len())?,
            None,
        ),
        Some(cluster) => {
            config.node_id = cluster.node_id as i32;
            let voter = cluster
                .roles
                .controller
                .then(|| {
                    let security = controller_security.clone();
                    crate::cluster::spawn_voter(cluster, data_dir, &config, security, stop.clone())
                })
                .transpose()?;
            let link = crate::cluster::start_link(
                cluster,
                &config,
                &options.listeners,
                cores.len(),
                &controller_security,
            )?;
            info!(node = cluster.node_id, "waiting for the controller quorum");
            let ready = link
                .wait_ready(&stop)
                .and_then(|image| crate::datadir::bind_cluster_id(data_dir, &image.cluster_id));
            if let Err(e) = ready {
                // A voter that failed says why; a healthy one stops with the link.
                stop.store(true, Ordering::SeqCst);
                link.stop();
                let voter_failure = voter.and_then(crate::cluster::VoterThread::stop);
                return Err(voter_failure.unwrap_or(e));
            }
            (MetadataSource::Quorum(link), voter)
        }
    };
    let image = match &metadata {
        MetadataSource::Local(controller) => controller.lock().expect("startup only").image(),
        MetadataSource::Quorum(link) => link.latest(),
    };
    let admin_addr = match &options.admin_listen {
        Some(addr) => Some(resolve(addr).map_err(|e| e.replace("--listen", "--admin-listen"))?),
        None => None,
    };
    log_start(&options, data_dir, cores.len());
    let node = Arc::new(NodeInfo {
        started_at,
        ready: AtomicBool::new(false),
        listen: options.listen.clone(),
        admin_listen: options.admin_listen.clone(),
        data_dir: data_dir.to_path_buf(),
    });
    if !options.config.fsync {
        warn!("--unsafe-no-fsync: acks=all is acknowledged WITHOUT fdatasync; acknowledged records can be lost on power failure");
        eprintln!("WARNING: --unsafe-no-fsync is set: acknowledged records can be lost on a crash or power failure. Development only.");
    }

    let config = Arc::new(config);
    let link = match &metadata {
        MetadataSource::Quorum(link) => Some(link.clone()),
        MetadataSource::Local(_) => None,
    };
    let metadata = Arc::new(Mutex::new(Some(metadata)));
    let connection_quotas = net::quotas::ConnectionQuotas::new(config.connection_quotas.clone());
    let shutdown = Arc::new(Shutdown::default());
    let mesh = MeshBuilder::<Job, _>::full(cores.len(), MESH_CHANNEL_CAPACITY);
    let (started_tx, started_rx) = mpsc::channel();
    let mut executors = Vec::with_capacity(cores.len());
    for (index, core) in cores.iter().enumerate() {
        let context = ShardContext {
            mesh: mesh.clone(),
            config: config.clone(),
            advertised: advertised.clone(),
            inter_broker: inter_broker.clone(),
            data_dir: data_dir.to_path_buf(),
            image: image.clone(),
            metadata: metadata.clone(),
            connection_quotas: connection_quotas.clone(),
            listeners: listeners.clone(),
            admin: admin_addr.map(|addr| AdminListen {
                addr,
                is_default: options.admin_listen_is_default,
                node: node.clone(),
            }),
            shutdown: shutdown.clone(),
            started: started_tx.clone(),
            reload_tls: reload_tls.clone(),
        };
        let mut builder = LocalExecutorBuilder::new(Placement::Fixed(*core))
            .name(&format!("shard-{index}"))
            .io_memory(io_memory)
            .preempt_timer(storage::executor_preempt_timer());
        if let Some(spin) = storage::executor_spin_before_park() {
            builder = builder.spin_before_park(spin);
        }
        let executor = builder
            .spawn(move || shard_main(context))
            .map_err(|e| format!("cannot start executor on core {core}: {e}"))?;
        executors.push(executor);
    }
    drop(started_tx);

    let mut failure = None;
    for _ in 0..cores.len() {
        match started_rx.recv() {
            Ok(ShardStarted::Ready) => {}
            Ok(ShardStarted::Failed(reason)) => {
                failure.get_or_insert(reason);
            }
            Err(_) => {
                failure.get_or_insert("a shard exited during startup".into());
            }
        }
    }
    if let Some(reason) = failure {
        shutdown.trigger();
        for executor in executors {
            let _ = executor.join();
        }
        stop_cluster_threads(&stop, link.as_deref(), voter);
        return Err(reason);
    }
    node.ready.store(true, Ordering::SeqCst);
    let roles = match &options.cluster {
        None => String::new(),
        Some(c) if c.roles.controller => ", roles broker,controller".into(),
        Some(_) => ", roles broker".into(),
    };
    println!(
        "spate ready: listening on {} with {} shard(s), node id {}{roles}, data dir {} ({} ms)",
        options.listen,
        cores.len(),
        config.node_id,
        data_dir.display(),
        started_at.elapsed().as_millis()
    );
    info!(listen = %options.listen, shards = cores.len(), "ready");

    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    if let Some(link) = link.as_deref() {
        controlled_shutdown(link);
    }
    info!("shutdown begun: closing listeners, flushing and syncing every partition");
    shutdown.trigger();
    for executor in executors {
        executor
            .join()
            .map_err(|e| format!("a shard failed while stopping: {e}"))?;
    }
    stop_cluster_threads(&stop, link.as_deref(), voter);
    info!("shutdown finished");
    println!("spate stopped: all partitions flushed and synced");
    Ok(())
}

/// Everything a shard's executor needs to start.
struct ShardContext {
    mesh: MeshBuilder<Job, glommio::channels::channel_mesh::Full>,
    config: Arc<BrokerConfig>,
    advertised: Advertised,
    /// How this node's followers reach leaders.
    inter_broker: InterBrokerClient,
    data_dir: PathBuf,
    image: Arc<controller::MetadataImage>,
    /// Shard 0 takes it.
    metadata: Arc<Mutex<Option<MetadataSource>>>,
    connection_quotas: Arc<net::quotas::ConnectionQuotas>,
    /// Every Kafka listener: what it is, the address it binds, its TLS.
    listeners: Vec<ListenerPlan>,
    /// Shard 0 serves the admin endpoint when this is set.
    admin: Option<AdminListen>,
    shutdown: Arc<Shutdown>,
    started: mpsc::Sender<ShardStarted>,
    /// Set by SIGHUP: shard 0 reads the TLS listeners' stores again.
    reload_tls: Arc<AtomicBool>,
}

async fn shard_main(context: ShardContext) {
    let Ok((senders, receivers)) = context.mesh.join().await else {
        let _ = context
            .started
            .send(ShardStarted::Failed("cannot join the shard mesh".into()));
        return;
    };
    let metadata = if senders.peer_id() == 0 {
        context.metadata.lock().expect("startup only").take()
    } else {
        None
    };
    storage::segment::set_read_ahead_bytes_max(context.config.log_read_ahead_bytes_per_shard);
    let shard = Shard::new(
        senders,
        context.config.clone(),
        context.advertised.clone(),
        context.data_dir.clone(),
        context.image.clone(),
        metadata,
        context.connection_quotas.clone(),
    );
    shard.fetchers.connect_with(context.inter_broker.clone());
    serve_jobs(&shard, receivers);
    shard.install_image(context.image.clone()).await;
    crate::group::runtime::start(&shard);
    crate::maintenance::spawn(&shard);
    crate::wake_lag::spawn(&shard);
    glommio::spawn_local(crate::partition::fetcher::tick_replicas(shard.clone())).detach();
    if let Some(after) = injected_panic(shard.id, shard.count) {
        glommio::spawn_local(async move {
            glommio::timer::sleep(after).await;
            panic!("injected fault: SPATE_FAULT_PANIC_AFTER_MS");
        })
        .detach();
    }
    glommio::spawn_local(shard.clone().follow_quorum()).detach();
    let listeners = match context
        .listeners
        .iter()
        .map(|plan| plan.bind(&shard))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(listeners) => listeners,
        Err(reason) => {
            let _ = context.started.send(ShardStarted::Failed(reason));
            shard.close().await;
            return;
        }
    };
    if shard.id == 0 {
        for BoundListener { info, .. } in &listeners {
            info!(
                listener = %info.name,
                security_protocol = %info.security_protocol,
                address = %info.bind,
                advertised = %format!("{}:{}", info.advertised.host, info.advertised.port),
                shards = shard.count,
                "kafka listener bound"
            );
        }
        let reload = crate::tls_reload::reload_on_sighup(shard.clone(), context.reload_tls.clone());
        glommio::spawn_local(reload).detach();
        if let Err(reason) = start_admin(&shard, context.admin.as_ref()) {
            let _ = context.started.send(ShardStarted::Failed(reason));
            shard.close().await;
            return;
        }
    }
    let _ = context.started.send(ShardStarted::Ready);
    {
        let accepting =
            futures::future::join_all(listeners.iter().map(|l| accept_connections(&shard, l)));
        let stopping = context.shutdown.wait();
        futures::pin_mut!(accepting, stopping);
        futures::future::select(accepting, stopping).await;
    }
    drop(listeners);
    shard.close().await;
}

/// One info line with what this node starts with: addresses, shards and every setting that is
/// not the default.
fn log_start(options: &StartOptions, data_dir: &std::path::Path, shards: usize) {
    let changed: Vec<String> = options
        .config
        .entries()
        .filter(|(_, _, is_default)| !is_default)
        .map(|(name, value, _)| (name, value))
        .chain(options.config.listener_overrides())
        .map(|(name, value)| match crate::config::is_sensitive(name) {
            true => format!("{name}=[hidden]"),
            false => format!("{name}={value}"),
        })
        .collect();
    info!(
        version = env!("CARGO_PKG_VERSION"),
        data_dir = %data_dir.display(),
        listen = %options.listen,
        admin_listen = options.admin_listen.as_deref().unwrap_or("none"),
        shards,
        fsync = options.config.fsync,
        settings = %changed.join(","),
        "starting spate"
    );
}

/// Runs jobs that other shards send to this one.
fn serve_jobs(
    shard: &std::rc::Rc<Shard>,
    mut receivers: glommio::channels::channel_mesh::Receivers<Job>,
) {
    for (_, receiver) in receivers.streams() {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            while let Some(job) = receiver.recv().await {
                glommio::spawn_local(job(shard.clone())).detach();
            }
        })
        .detach();
    }
}

/// Accepts connections while the node is below `max.connections` (at the bound it waits for a
/// connection to close, anywhere on the node, as Kafka's acceptor does), closes at once those
/// from an address at `max.connections.per.ip`, and serves the rest with the shard's request
/// memory.
async fn accept_connections(shard: &std::rc::Rc<Shard>, listener: &BoundListener) {
    let quotas = &shard.connection_quotas;
    // SASL_PLAINTEXT and SASL_SSL: what the listener accepts, resolved once.
    let sasl = listener
        .info
        .security_protocol
        .uses_sasl()
        .then(|| shard.config.sasl.for_listener(&listener.info.name));
    loop {
        wait_for_slot(quotas).await;
        let stream = match listener.socket.accept().await {
            Ok(stream) => stream,
            Err(e) => {
                warn!(shard = shard.id, "accept failed: {e}");
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(peer) = stream.peer_addr() else {
            continue;
        };
        let slot = loop {
            match quotas.admit(peer.ip()) {
                Ok(slot) => break Some(slot),
                Err(net::quotas::Refusal::PerIp) => break None,
                // Another shard took the last slot while this one waited in accept.
                Err(net::quotas::Refusal::Node) => wait_for_slot(quotas).await,
            }
        };
        let Some(slot) = slot else {
            debug!(%peer, "connection closed at once: max.connections.per.ip");
            continue;
        };
        listener.counters.count_accepted();
        let parts = (
            listener.info.clone(),
            listener.tls.as_ref().map(|slot| slot.current()),
            listener.counters.clone(),
            sasl.clone(),
        );
        let shard = shard.clone();
        glommio::spawn_local(async move {
            crate::transport::serve(shard, parts, stream, peer).await;
            drop(slot);
        })
        .detach();
    }
}

/// Returns once the node is below `max.connections` (slots free on any shard: polled).
async fn wait_for_slot(quotas: &net::quotas::ConnectionQuotas) {
    if quotas.has_room() {
        return;
    }
    quotas.count_wait();
    while !quotas.has_room() {
        glommio::timer::sleep(SLOT_POLL).await;
    }
}

/// How often a listener at `max.connections` looks for a free slot (slots free on any shard).
const SLOT_POLL: std::time::Duration = std::time::Duration::from_millis(5);

/// The shutdown flag every shard waits on.
#[derive(Default)]
struct Shutdown {
    requested: AtomicBool,
    event: event_listener::Event,
}

impl Shutdown {
    fn trigger(&self) {
        self.requested.store(true, Ordering::SeqCst);
        self.event.notify(usize::MAX);
    }

    async fn wait(&self) {
        loop {
            if self.requested.load(Ordering::SeqCst) {
                return;
            }
            let listener = self.event.listen();
            if self.requested.load(Ordering::SeqCst) {
                return;
            }
            listener.await;
        }
    }
}

/// A flag that SIGINT or SIGTERM sets (from the start, so a signal during startup is not
/// lost: the node finishes starting, then stops cleanly).
fn stop_on_signals() -> Result<Arc<AtomicBool>, String> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .map_err(|e| format!("cannot install a signal handler: {e}"))?;
    }
    Ok(stop)
}

/// The local controller of a single node, which registers the node as the one broker of its
/// cluster (listener and shard count).
fn local_metadata(
    data_dir: &std::path::Path,
    node_id: i32,
    advertised: &Advertised,
    shards: usize,
) -> Result<MetadataSource, String> {
    // `--listen :PORT` advertises no host; Kafka's listeners then use the machine's name.
    let host = match advertised.host.as_str() {
        "" => "localhost".to_owned(),
        host => host.to_owned(),
    };
    let broker = controller::LocalBroker {
        host,
        port: u16::try_from(advertised.port)
            .map_err(|_| format!("advertised port {} out of range", advertised.port))?,
        shards: u32::try_from(shards).map_err(|_| format!("{shards} shards"))?,
        rack: None,
    };
    let options = controller::ControllerOptions::default();
    let controller =
        Controller::open_single_node(data_dir, node_id, broker, options).map_err(|e| {
            format!(
                "cannot open cluster metadata in {}: {e}",
                data_dir.display()
            )
        })?;
    Ok(MetadataSource::Local(Arc::new(Mutex::new(controller))))
}

/// How long a broker of a cluster waits for the controller to move its leaderships away
/// before it stops anyway.
const CONTROLLED_SHUTDOWN_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long the shards get to install the image that moved the leaderships (shard 0 looks
/// for a newer image every 10 ms), so requests in flight are answered NOT_LEADER_OR_FOLLOWER,
/// which clients retry on the new leaders, before the listeners close.
const CONTROLLED_SHUTDOWN_INSTALL: std::time::Duration = std::time::Duration::from_millis(200);

/// A broker of a cluster hands the leadership of its partitions to other in-sync replicas
/// before it stops (Kafka's controlled shutdown), so producers see only retriable errors.
fn controlled_shutdown(link: &crate::cluster::link::QuorumLink) {
    info!("controlled shutdown: moving the leadership of this broker's partitions");
    match link.controlled_shutdown(CONTROLLED_SHUTDOWN_WAIT) {
        Ok(version) => {
            std::thread::sleep(CONTROLLED_SHUTDOWN_INSTALL);
            info!(version, "controlled shutdown: leadership moved");
        }
        Err(e) => warn!("controlled shutdown did not complete ({e}); stopping anyway"),
    }
}

/// Fault injection for the panic-policy test: with `SPATE_FAULT_PANIC_AFTER_MS=N` the last
/// shard panics N ms after it starts.
fn injected_panic(shard: usize, shards: usize) -> Option<std::time::Duration> {
    let ms: u64 = std::env::var("SPATE_FAULT_PANIC_AFTER_MS")
        .ok()?
        .parse()
        .ok()?;
    (shard + 1 == shards).then(|| std::time::Duration::from_millis(ms))
}

/// Stops the quorum link and the voter of a multi-node node (after the shards stopped).
fn stop_cluster_threads(
    stop: &AtomicBool,
    link: Option<&crate::cluster::link::QuorumLink>,
    voter: Option<crate::cluster::VoterThread>,
) {
    stop.store(true, Ordering::SeqCst);
    if let Some(link) = link {
        link.stop();
    }
    if let Some(voter) = voter {
        voter.stop();
    }
}

/// glommio locks memory for its io_uring buffers. Raises RLIMIT_MEMLOCK to what the shards
/// want when allowed; otherwise shrinks each shard's share to fit the limit, and says so when
/// even that is below what glommio needs.
fn io_memory_per_shard(shards: usize) -> usize {
    let wanted = (shards * IO_MEMORY_BYTES_MAX) as libc::rlim_t;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    let current = unsafe {
        if libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) != 0 {
            return IO_MEMORY_BYTES_MIN;
        }
        if limit.rlim_cur >= wanted {
            return IO_MEMORY_BYTES_MAX;
        }
        let raised = libc::rlimit {
            rlim_cur: wanted,
            rlim_max: wanted.max(limit.rlim_max),
        };
        if libc::setrlimit(libc::RLIMIT_MEMLOCK, &raised) == 0 {
            return IO_MEMORY_BYTES_MAX;
        }
        limit.rlim_cur as usize
    };
    let share = current / shards.max(1);
    if share < IO_MEMORY_BYTES_MIN {
        eprintln!(
            "WARNING: RLIMIT_MEMLOCK is {current} bytes and cannot be raised; glommio wants at least {IO_MEMORY_BYTES_MIN} per shard. Raise `ulimit -l` or use fewer --cores."
        );
        return IO_MEMORY_BYTES_MIN;
    }
    share.min(IO_MEMORY_BYTES_MAX)
}

/// Each listener with the address it binds and, for SSL and SASL_SSL, its TLS (certificate
/// and key files read now: a bad one refuses the start).
fn plan_listeners(
    listeners: &Listeners,
    config: &BrokerConfig,
) -> Result<Vec<ListenerPlan>, String> {
    listeners
        .all
        .iter()
        .map(|info| {
            let bind = match info.bind.strip_prefix(':') {
                // Kafka's `PLAINTEXT://:9092`: every interface.
                Some(port) => format!("0.0.0.0:{port}"),
                None => info.bind.clone(),
            };
            let addr = resolve(&bind).map_err(|e| e.replace("--listen", &info.name))?;
            if info.security_protocol.uses_sasl() {
                let sasl = config.sasl.for_listener(&info.name);
                crate::sasl::oauth_settings::check_listener(&sasl, &info.name)?;
                crate::sasl::oauth_settings::start_jwks(&sasl, &info.name)?;
            }
            let tls = match info.security_protocol.uses_tls() {
                false => None,
                true => Some(listener_tls(config, info)?),
            };
            Ok(ListenerPlan {
                info: info.clone(),
                addr,
                tls,
                altered_ssl: Default::default(),
            })
        })
        .collect()
}

/// A TLS listener's acceptor and, on SSL, its principal mapping (both checked now). Kafka
/// checks `ssl.principal.mapping.rules` on every listener; only SSL ones use it.
fn listener_tls(
    config: &BrokerConfig,
    info: &crate::listeners::ListenerInfo,
) -> Result<crate::transport::ListenerTls, String> {
    let settings = crate::tls_config::server_settings(config, &info.name)?;
    let acceptor =
        net::tls::Acceptor::new(&settings).map_err(|e| format!("listener {}: {e}", info.name))?;
    let mapper = crate::tls_config::principal_mapper(config, &info.name)?;
    let on_ssl = info.security_protocol == crate::listeners::SecurityProtocol::Ssl;
    Ok(crate::transport::ListenerTls {
        acceptor,
        principal_mapper: mapper.filter(|_| on_ssl).map(Arc::new),
    })
}

fn resolve(listen: &str) -> Result<SocketAddr, String> {
    listen
        .to_socket_addrs()
        .map_err(|e| format!("invalid --listen '{listen}': {e}"))?
        .next()
        .ok_or_else(|| format!("invalid --listen '{listen}': no address"))
}
