//! A broker's link to the controller quorum (multi-node mode). Three plain threads, off the
//! data path, each with its own connection:
//! - the follower keeps this node's copy of the metadata log: it fetches the records after
//!   its version as an ordered stream (`FetchUpdates`, a long poll), applies them to its
//!   image and publishes every new image; it is the node's one metadata writer, and shard 0
//!   installs what it publishes on every shard as immutable snapshots;
//! - the heartbeater registers the broker (node id, listener, shard count) and heartbeats
//!   every `broker.heartbeat.interval.ms`, registering again when the controller no longer
//!   knows it;
//! - the proposer carries shard 0's metadata commands to the active controller.
//!
//! Shards never block on it: they send a job and poll its answer with a glommio timer.

use super::client::ControllerClient;
use super::protocol::{ControllerRequest, ControllerResponse};
use super::security::ClientSide;
use controller::codec::decode_snapshot;
use controller::quorum::QuorumStatus;
use controller::{ApplyError, ApplyOutcome, MetadataCommand, MetadataImage};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// How long one `FetchUpdates` waits at the voter for a change.
const UPDATES_WAIT_MS: u32 = 1000;
/// How long a command may take to reach an active controller and commit.
const PROPOSE_DEADLINE: Duration = Duration::from_secs(10);
const RETRY_DELAY: Duration = Duration::from_millis(200);
/// While the broker waits for the quorum at start, it says why every this long.
const WAITING_LOG_EVERY: Duration = Duration::from_secs(5);

/// What a broker registers with.
#[derive(Clone, Debug)]
pub struct Registration {
    pub node_id: i32,
    /// The inter-broker listener's advertised address.
    pub host: String,
    pub port: u16,
    /// Every advertised listener.
    pub endpoints: Vec<controller::BrokerEndpoint>,
    pub shards: u32,
    pub rack: Option<String>,
    pub heartbeat_interval: Duration,
}

/// A command applied by the quorum: the image version after it and its outcomes.
pub type Applied = Result<(u64, Vec<ApplyOutcome>), ApplyError>;

enum Job {
    Propose(MetadataCommand, mpsc::Sender<Applied>),
    DescribeQuorum(mpsc::Sender<Result<QuorumStatus, String>>),
}

pub struct QuorumLink {
    node_id: i32,
    /// The voters and their controller addresses.
    quorum: Vec<(u64, String)>,
    /// How its connections reach the controller port (TLS, SASL).
    security: ClientSide,
    latest: Mutex<Arc<MetadataImage>>,
    /// `latest`'s version, for a check without the lock.
    version: AtomicU64,
    jobs: Mutex<mpsc::Sender<Job>>,
    /// Why the heartbeater last failed to reach the quorum (`None` once it did).
    last_error: Mutex<Option<String>>,
    stop: AtomicBool,
    /// A controlled shutdown began: no more heartbeats (one would unfence the broker).
    shutting_down: AtomicBool,
}

impl QuorumLink {
    /// Starts the three threads; the image is empty until the follower's first fetch.
    pub fn start(
        quorum: Vec<(u64, String)>,
        security: ClientSide,
        registration: Registration,
    ) -> Result<Arc<QuorumLink>, String> {
        let (jobs, job_queue) = mpsc::channel();
        let link = Arc::new(QuorumLink {
            node_id: registration.node_id,
            quorum: quorum.clone(),
            security,
            latest: Mutex::new(Arc::new(MetadataImage::empty(registration.node_id))),
            version: AtomicU64::new(0),
            jobs: Mutex::new(jobs),
            last_error: Mutex::new(None),
            stop: AtomicBool::new(false),
            shutting_down: AtomicBool::new(false),
        });
        let spawn = |name: &str, work: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(work)
                .map(drop)
                .map_err(|e| format!("cannot start the {name} thread: {e}"))
        };
        let (l, q) = (link.clone(), quorum.clone());
        spawn("metadata-follow", Box::new(move || l.follow(q)))?;
        let (l, q) = (link.clone(), quorum.clone());
        spawn(
            "broker-heartbeat",
            Box::new(move || l.heartbeat(q, registration)),
        )?;
        let l = link.clone();
        spawn(
            "metadata-propose",
            Box::new(move || l.serve(quorum, job_queue)),
        )?;
        Ok(link)
    }

    /// The voters and their controller addresses.
    pub fn voters(&self) -> &[(u64, String)] {
        &self.quorum
    }

    /// The newest image this node has.
    pub fn latest(&self) -> Arc<MetadataImage> {
        self.latest.lock().expect("not poisoned").clone()
    }

    /// The newest image's version (no lock).
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Sends `command` to the active controller; the answer arrives on the receiver.
    pub fn propose(&self, command: MetadataCommand) -> mpsc::Receiver<Applied> {
        let (reply, answer) = mpsc::channel();
        let _ = self.send(Job::Propose(command, reply));
        answer
    }

    /// Asks the active controller for the quorum's state.
    pub fn describe_quorum(&self) -> mpsc::Receiver<Result<QuorumStatus, String>> {
        let (reply, answer) = mpsc::channel();
        let _ = self.send(Job::DescribeQuorum(reply));
        answer
    }

    /// Waits until the quorum has a cluster id and this broker is registered and unfenced,
    /// saying every few seconds what it waits for. `Err` when `stop` is set first.
    pub fn wait_ready(&self, stop: &AtomicBool) -> Result<Arc<MetadataImage>, String> {
        let started = Instant::now();
        let mut said = Instant::now();
        loop {
            let image = self.latest();
            let me = image.brokers.get(&self.node_id);
            if !image.cluster_id.is_empty() && me.is_some_and(|b| !b.fenced) {
                return Ok(image);
            }
            if stop.load(Ordering::Relaxed) {
                return Err("stopped while waiting for the controller quorum".into());
            }
            if said.elapsed() >= WAITING_LOG_EVERY {
                said = Instant::now();
                let why = self.last_error.lock().expect("not poisoned").clone();
                warn!(
                    "broker {} waiting {}s for the controller quorum: {}",
                    self.node_id,
                    started.elapsed().as_secs(),
                    why.unwrap_or_else(|| "not registered yet".into())
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kafka's controlled shutdown: stops heartbeating (a heartbeat would unfence this broker
    /// again), asks the active controller to fence it and give the partitions it leads to
    /// other in-sync replicas (`ShutdownBroker`, one batch), and waits until this node's
    /// image holds that change, at most `wait`. Returns the version of that image.
    pub fn controlled_shutdown(&self, wait: Duration) -> Result<u64, String> {
        self.shutting_down.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + wait;
        let answer = self.propose(MetadataCommand::ShutdownBroker {
            node_id: self.node_id,
        });
        match answer.recv_timeout(wait) {
            Ok(Ok((version, _))) => self.await_image(deadline, |image| image.version >= version),
            // Refused as already fenced: a proposal whose answer was lost (the active
            // controller stopped after committing it) or a session that expired; either way
            // the fencing moved the leaderships, once the image shows it.
            Ok(Err(e)) => self
                .await_image(deadline, |image| !image.is_live(self.node_id))
                .map_err(|_| format!("the controller refused: {e}")),
            Err(_) => Err(format!("no answer from the controller quorum in {wait:?}")),
        }
    }

    /// Waits until the latest image satisfies `ready`; returns its version.
    fn await_image(
        &self,
        deadline: Instant,
        ready: impl Fn(&MetadataImage) -> bool,
    ) -> Result<u64, String> {
        loop {
            let image = self.latest();
            if ready(&image) {
                return Ok(image.version);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the image the change needs did not arrive (at version {})",
                    image.version
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the threads (each within its current wait).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn send(&self, job: Job) -> Result<(), mpsc::SendError<Job>> {
        self.jobs.lock().expect("not poisoned").send(job)
    }

    fn publish(&self, image: Arc<MetadataImage>) {
        let version = image.version;
        *self.latest.lock().expect("not poisoned") = image;
        self.version.store(version, Ordering::Release);
    }

    /// The follower: applies the quorum's records in order, or its image when too far behind.
    fn follow(&self, quorum: Vec<(u64, String)>) {
        let mut client = ControllerClient::with_security(quorum, self.security.clone());
        let mut failing_since: Option<Instant> = None;
        let mut current = self.latest();
        while !self.stopped() {
            let request = ControllerRequest::FetchUpdates {
                known_version: current.version,
                wait_ms: UPDATES_WAIT_MS,
            };
            let deadline = Instant::now() + Duration::from_secs(2);
            let answer = match client.request(&request, deadline) {
                Ok(ControllerResponse::Refused { message, .. }) => {
                    Err(format!("the controller refused: {message}"))
                }
                answer => answer,
            };
            let answer = match answer {
                Ok(answer) => answer,
                Err(e) => {
                    if failing_since.get_or_insert_with(Instant::now).elapsed() > WAITING_LOG_EVERY
                    {
                        warn!("cannot fetch metadata from the controller quorum: {e}");
                        failing_since = Some(Instant::now());
                    }
                    std::thread::sleep(RETRY_DELAY);
                    continue;
                }
            };
            failing_since = None;
            match next_image(&current, self.node_id, answer) {
                Ok(Some(image)) => {
                    current = Arc::new(image);
                    self.publish(current.clone());
                }
                Ok(None) => {}
                Err(e) => {
                    // Start over from the whole image rather than serve a diverged one.
                    warn!("metadata update not applied ({e}); fetching the whole image");
                    current = Arc::new(MetadataImage::empty(self.node_id));
                    std::thread::sleep(RETRY_DELAY);
                }
            }
        }
    }

    /// The heartbeater: registers, then heartbeats; registers again when refused.
    fn heartbeat(&self, quorum: Vec<(u64, String)>, me: Registration) {
        let mut client = ControllerClient::with_security(quorum, self.security.clone());
        let mut registered = false;
        while !self.stopped() {
            if self.shutting_down.load(Ordering::SeqCst) {
                std::thread::sleep(me.heartbeat_interval.min(RETRY_DELAY));
                continue;
            }
            let request = if registered {
                ControllerRequest::Heartbeat {
                    node_id: me.node_id,
                }
            } else {
                ControllerRequest::Propose(MetadataCommand::RegisterBroker {
                    node_id: me.node_id,
                    host: me.host.clone(),
                    port: me.port,
                    shards: me.shards,
                    rack: me.rack.clone(),
                    endpoints: me.endpoints.clone(),
                })
            };
            let deadline = Instant::now() + me.heartbeat_interval;
            let failure = match client.request(&request, deadline) {
                Ok(ControllerResponse::Applied { version, .. }) if !registered => {
                    info!(
                        node = me.node_id,
                        version,
                        controller = client.target(),
                        "broker registered with the controller quorum"
                    );
                    registered = true;
                    None
                }
                Ok(ControllerResponse::Ok | ControllerResponse::Applied { .. }) => None,
                Ok(ControllerResponse::Refused { message, .. }) => {
                    registered = false;
                    Some(format!("the active controller refused: {message}"))
                }
                Ok(other) => Some(format!("unexpected answer {other:?}")),
                Err(e) => Some(e),
            };
            let wait = if failure.is_some() && !registered {
                RETRY_DELAY
            } else {
                me.heartbeat_interval
            };
            *self.last_error.lock().expect("not poisoned") = failure;
            std::thread::sleep(wait);
        }
    }

    /// The proposer: one command at a time, in the order shard 0 sent them.
    fn serve(&self, quorum: Vec<(u64, String)>, jobs: mpsc::Receiver<Job>) {
        let mut client = ControllerClient::with_security(quorum, self.security.clone());
        while let Ok(job) = jobs.recv() {
            let deadline = Instant::now() + PROPOSE_DEADLINE;
            match job {
                Job::Propose(command, reply) => {
                    let answer = client.request(&ControllerRequest::Propose(command), deadline);
                    let _ = reply.send(applied(answer));
                }
                Job::DescribeQuorum(reply) => {
                    let answer = match client.request(&ControllerRequest::DescribeQuorum, deadline)
                    {
                        Ok(ControllerResponse::Quorum(status)) => Ok(status),
                        Ok(other) => Err(format!("unexpected answer {other:?}")),
                        Err(e) => Err(e),
                    };
                    let _ = reply.send(answer);
                }
            }
        }
    }
}

/// What the active controller's answer to a proposal means for the proposer.
fn applied(answer: Result<ControllerResponse, String>) -> Applied {
    match answer {
        Ok(ControllerResponse::Applied { version, outcomes }) => Ok((version, outcomes)),
        Ok(ControllerResponse::Refused { code, message }) => {
            Err(ApplyError::from_refusal(code, message))
        }
        Ok(other) => Err(ApplyError::Unavailable(format!(
            "unexpected answer {other:?}"
        ))),
        Err(e) => Err(ApplyError::Unavailable(e)),
    }
}

/// The image after a `FetchUpdates` answer: `None` when nothing changed.
fn next_image(
    current: &MetadataImage,
    node_id: i32,
    answer: ControllerResponse,
) -> Result<Option<MetadataImage>, String> {
    match answer {
        ControllerResponse::Updates { records } if records.is_empty() => Ok(None),
        ControllerResponse::Updates { records } => current
            .apply_batch(&records)
            .map(|(image, _)| Some(image))
            .map_err(|e| e.to_string()),
        ControllerResponse::Image(Some(bytes)) => {
            let payload = decode_snapshot(&bytes)?;
            let image =
                MetadataImage::from_snapshot(node_id, payload).map_err(|e| e.to_string())?;
            Ok((image.version > current.version).then_some(image))
        }
        ControllerResponse::Image(None) => Ok(None),
        other => Err(format!("unexpected answer {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use controller::MetadataRecord;

    fn initialised() -> MetadataImage {
        let (image, _) = MetadataImage::empty(2)
            .apply_batch(&[MetadataRecord::ClusterInit {
                cluster_id: "c".into(),
            }])
            .expect("init applies");
        image
    }

    #[test]
    fn records_apply_in_order_and_an_empty_answer_changes_nothing() {
        let image = initialised();
        let none = ControllerResponse::Updates { records: vec![] };
        assert!(next_image(&image, 2, none).expect("ok").is_none());
        let records = vec![MetadataRecord::ProducerIdsAllocated {
            first: 0,
            count: 10,
        }];
        let next = next_image(&image, 2, ControllerResponse::Updates { records })
            .expect("applies")
            .expect("changed");
        assert_eq!((next.version, next.next_producer_id), (2, 10));
    }

    #[test]
    fn a_whole_image_replaces_an_older_one_only() {
        let image = initialised();
        let payload = controller::codec::SnapshotPayload::of(&image);
        let bytes = controller::codec::encode_snapshot(&payload);
        let answer = || ControllerResponse::Image(Some(bytes.clone()));
        let from_empty = next_image(&MetadataImage::empty(2), 2, answer()).expect("decodes");
        assert_eq!(from_empty.expect("newer").cluster_id, "c");
        assert!(next_image(&image, 2, answer()).expect("decodes").is_none());
    }

    #[test]
    fn refusals_keep_their_kafka_code() {
        let refused = applied(Ok(ControllerResponse::Refused {
            code: 36,
            message: "topic 't' already exists".into(),
        }));
        assert!(refused.expect_err("refused").is_topic_already_exists());
        let unreachable = applied(Err("connection refused".into()));
        assert_eq!(unreachable.expect_err("failed").kafka_error_code(), 7);
    }
}
