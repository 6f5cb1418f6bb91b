//! One shard's registration with every nameserver: REGISTER_BROKER now, every
//! `registerNameServerPeriod` (RocketMQ's default 30 s, held to 10..=60 s), whenever the shard asks (`ControlHandle::request_register`, after a topic change),
//! and at once when a nameserver closes the kept-open connection (a restart). A failed round is
//! retried after [`REGISTER_RETRY_FIRST`], doubling to [`REGISTER_RETRY_MAX`], never after the
//! full period. The first round that every nameserver accepts reports the shard ready to the
//! supervisor; each failed round before that reports why.
//!
//! Runs as one task on the shard's executor; UNREGISTER_BROKER on its way out.

use std::rc::Rc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_lite::future;
use glommio::channels::local_channel::LocalReceiver;

use crate::config::BrokerConfig;
use crate::namesrv::client::NamesrvClient;
use crate::remoting::connection::StopSignal;
use crate::remoting::{RemotingCommand, RequestCode, ResponseCode};
use crate::shard::Shard;

/// First retry after a failed registration round.
pub const REGISTER_RETRY_FIRST: Duration = Duration::from_millis(100);
/// Longest pause between two failed rounds.
pub const REGISTER_RETRY_MAX: Duration = Duration::from_secs(1);

/// What the registrar tells the supervisor.
pub trait RegistrationReport {
    /// Every nameserver accepted a registration (reported once, the first time).
    fn registered(&self);
    /// A round failed before the first success; `reason` names the nameserver and the error.
    fn not_registered(&self, reason: String);
}

/// Why the registrar's wait ended.
enum Wake {
    Due,
    Asked,
    ConnectionLost,
    Stop,
}

/// One shard's registration with every nameserver.
pub struct Registrar {
    shard_id: u16,
    shard: Rc<Shard>,
    broker_name: String,
    broker_addr: String,
    cluster_name: String,
    clients: Vec<NamesrvClient>,
    /// Time between two registrations after a successful one.
    period: Duration,
}

impl Registrar {
    pub fn new(config: &BrokerConfig, shard_id: u16, shard: Rc<Shard>) -> Self {
        Self {
            shard_id,
            shard,
            broker_name: config.shard_broker_name(shard_id),
            broker_addr: config.advertised_addr(shard_id).to_string(),
            cluster_name: config.broker_cluster_name.clone(),
            clients: config
                .registration_targets()
                .into_iter()
                .map(NamesrvClient::new)
                .collect(),
            period: Duration::from_millis(config.register_name_server_period_ms),
        }
    }

    pub fn targets(&self) -> String {
        self.clients
            .iter()
            .map(NamesrvClient::addr)
            .collect::<Vec<_>>()
            .join(";")
    }

    fn register_request(&self) -> RemotingCommand {
        let wrapper = self.shard.topic_config_wrapper_json();
        register_broker_request(
            &self.cluster_name,
            &self.broker_name,
            &self.broker_addr,
            &wrapper,
        )
    }

    /// Register with every nameserver; `Err` names the first that failed and why.
    async fn register_all(&mut self) -> Result<(), String> {
        let mut first_error = None;
        for i in 0..self.clients.len() {
            let req = self.register_request();
            let Some(client) = self.clients.get_mut(i) else {
                continue;
            };
            let error = match client.call(req).await {
                Ok(resp) if resp.code == ResponseCode::SUCCESS => continue,
                Ok(resp) => format!(
                    "nameserver {} refused registration: code {} {}",
                    client.addr(),
                    resp.code,
                    resp.remark.unwrap_or_default()
                ),
                Err(e) => format!("registration with nameserver {} failed: {e}", client.addr()),
            };
            log::warn!("shard {}: {error}", self.shard_id);
            first_error.get_or_insert(error);
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn unregister_all(&mut self) {
        for client in &mut self.clients {
            let req = RemotingCommand::request(RequestCode::UNREGISTER_BROKER)
                .with_ext("brokerName", &self.broker_name)
                .with_ext("brokerAddr", &self.broker_addr)
                .with_ext("clusterName", &self.cluster_name)
                .with_ext("brokerId", 0);
            if let Err(e) = client.call(req).await {
                log::debug!(
                    "shard {}: unregister from {} failed: {e}",
                    self.shard_id,
                    client.addr()
                );
            }
        }
    }

    /// Resolves when any nameserver closes its kept-open connection.
    async fn any_connection_lost(&mut self) {
        if self.clients.is_empty() {
            return future::pending().await;
        }
        let closed = self.clients.iter_mut().map(|c| Box::pin(c.closed()));
        futures::future::select_all(closed).await;
    }

    /// Register until `stop`, then unregister.
    pub async fn run(
        mut self,
        register_now: LocalReceiver<()>,
        stop: Rc<StopSignal>,
        report: impl RegistrationReport,
    ) {
        let mut is_reported = false;
        let mut retry = REGISTER_RETRY_FIRST;
        loop {
            let wait = match self.register_all().await {
                Ok(()) => {
                    if !is_reported {
                        is_reported = true;
                        report.registered();
                    }
                    retry = REGISTER_RETRY_FIRST;
                    self.period
                }
                Err(reason) => {
                    if !is_reported {
                        report.not_registered(reason);
                    }
                    let wait = retry;
                    retry = (retry * 2).min(REGISTER_RETRY_MAX);
                    wait
                }
            };
            let wake = future::or(
                future::or(
                    async {
                        glommio::timer::sleep(wait).await;
                        Wake::Due
                    },
                    async {
                        match register_now.recv().await {
                            Some(()) => Wake::Asked,
                            None => Wake::Stop,
                        }
                    },
                ),
                future::or(
                    async {
                        stop.wait().await;
                        Wake::Stop
                    },
                    async {
                        self.any_connection_lost().await;
                        Wake::ConnectionLost
                    },
                ),
            )
            .await;
            match wake {
                Wake::Stop => break,
                Wake::ConnectionLost => log::info!(
                    "shard {}: a nameserver closed the registration connection; registering again",
                    self.shard_id
                ),
                Wake::Due | Wake::Asked => {}
            }
            if stop.is_stopped() {
                break;
            }
        }
        self.unregister_all().await;
    }
}

/// REGISTER_BROKER for one broker (brokerId 0) with its TopicConfigSerializeWrapper JSON.
pub fn register_broker_request(
    cluster_name: &str,
    broker_name: &str,
    broker_addr: &str,
    topic_config_wrapper_json: &[u8],
) -> RemotingCommand {
    let mut body = BytesMut::with_capacity(topic_config_wrapper_json.len() + 64);
    body.put_slice(b"{\"filterServerList\":[],\"topicConfigSerializeWrapper\":");
    if topic_config_wrapper_json.is_empty() {
        body.put_slice(b"{}");
    } else {
        body.put_slice(topic_config_wrapper_json);
    }
    body.put_u8(b'}');
    RemotingCommand::request(RequestCode::REGISTER_BROKER)
        .with_ext("brokerName", broker_name)
        .with_ext("brokerAddr", broker_addr)
        .with_ext("clusterName", cluster_name)
        .with_ext("haServerAddr", broker_addr)
        .with_ext("brokerId", 0)
        .with_ext("heartbeatTimeoutMillis", 120_000)
        .with_ext("enableActingMaster", false)
        .with_ext("compressed", false)
        .with_ext("bodyCrc32", 0)
        .with_body(Bytes::from(body))
}
