//! Who is connected: consumer groups (members, consume model, subscriptions) and producer
//! groups, as learned from HEART_BEAT (REMOTING.md §2.5, §7.8). A member is one connection;
//! it leaves on UNREGISTER_CLIENT, when its connection closes, or after
//! `CHANNEL_EXPIRED_MS` without a heartbeat.
//!
//! Owned by one shard. Connections are held weakly: a closed connection never stays alive
//! because a group remembers it. Bounded by `GROUP_COUNT_MAX` groups and
//! `MEMBER_COUNT_MAX` members per group.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::{Rc, Weak};

use crate::consumer_group::subscription::SubscriptionData;
use crate::error::BrokerError;
use crate::remoting::connection::ConnectionCtx;

/// A member that sent no heartbeat for this long is dropped (Java: 120 s).
pub const CHANNEL_EXPIRED_MS: i64 = 120_000;
pub const GROUP_COUNT_MAX: usize = 10_000;
pub const MEMBER_COUNT_MAX: usize = 10_000;
/// Bound on the topics one consumer group subscribes to.
pub const SUBSCRIPTION_COUNT_MAX: usize = 10_000;

/// How a consumer group consumes (kept as the names Java uses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageModel {
    Broadcasting,
    Clustering,
}

impl MessageModel {
    pub fn name(self) -> &'static str {
        match self {
            MessageModel::Broadcasting => "BROADCASTING",
            MessageModel::Clustering => "CLUSTERING",
        }
    }
}

/// One member connection.
#[derive(Clone, Debug)]
pub struct ClientChannel {
    pub conn: Weak<ConnectionCtx>,
    pub client_id: String,
    pub last_update_ms: i64,
}

/// One consumer group as this shard sees it.
#[derive(Debug)]
pub struct ConsumerGroupInfo {
    pub consume_type: String,
    pub message_model: MessageModel,
    pub consume_from_where: String,
    pub subscriptions: BTreeMap<String, SubscriptionData>,
    /// Keyed by connection id.
    pub channels: BTreeMap<u64, ClientChannel>,
}

/// A copy of one consumer group's state (no borrow kept).
pub struct ConsumerGroupSnapshot {
    pub consume_type: String,
    pub message_model: MessageModel,
    pub consume_from_where: String,
    pub subscriptions: Vec<SubscriptionData>,
    /// (client id, connection) of each live member.
    pub members: Vec<(String, Rc<ConnectionCtx>)>,
}

/// A heartbeat's view of one consumer group.
pub struct ConsumerRegistration {
    pub group: String,
    pub consume_type: String,
    pub message_model: MessageModel,
    pub consume_from_where: String,
    pub subscriptions: Vec<SubscriptionData>,
}

/// Consumer and producer groups of one shard.
#[derive(Default)]
pub struct ClientTable {
    consumers: RefCell<HashMap<String, ConsumerGroupInfo>>,
    producers: RefCell<HashMap<String, BTreeMap<u64, ClientChannel>>>,
}

impl ClientTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers (or refreshes) a consumer member. Returns true when the membership or the
    /// subscriptions changed, i.e. the group should be told to rebalance.
    pub fn register_consumer(
        &self,
        reg: ConsumerRegistration,
        conn: &Rc<ConnectionCtx>,
        client_id: &str,
        now_ms: i64,
    ) -> Result<bool, BrokerError> {
        let mut consumers = self.consumers.borrow_mut();
        if !consumers.contains_key(&reg.group) && consumers.len() >= GROUP_COUNT_MAX {
            return Err(BrokerError::SystemBusy(format!(
                "this shard already tracks {GROUP_COUNT_MAX} consumer groups"
            )));
        }
        let info = consumers
            .entry(reg.group.clone())
            .or_insert_with(|| ConsumerGroupInfo {
                consume_type: reg.consume_type.clone(),
                message_model: reg.message_model,
                consume_from_where: reg.consume_from_where.clone(),
                subscriptions: BTreeMap::new(),
                channels: BTreeMap::new(),
            });
        info.consume_type = reg.consume_type;
        info.message_model = reg.message_model;
        info.consume_from_where = reg.consume_from_where;

        let conn_id = conn.id();
        let is_new_member = match info.channels.get_mut(&conn_id) {
            Some(ch) => {
                ch.last_update_ms = now_ms;
                ch.client_id.clear();
                ch.client_id.push_str(client_id);
                false
            }
            None => {
                if info.channels.len() >= MEMBER_COUNT_MAX {
                    return Err(BrokerError::SystemBusy(format!(
                        "consumer group {} already has {MEMBER_COUNT_MAX} members",
                        reg.group
                    )));
                }
                info.channels.insert(
                    conn_id,
                    ClientChannel {
                        conn: Rc::downgrade(conn),
                        client_id: client_id.to_string(),
                        last_update_ms: now_ms,
                    },
                );
                true
            }
        };

        let mut new_subs: BTreeMap<String, SubscriptionData> = BTreeMap::new();
        for sub in reg.subscriptions.into_iter().take(SUBSCRIPTION_COUNT_MAX) {
            new_subs.insert(sub.topic.clone(), sub);
        }
        let is_sub_changed = subscriptions_differ(&info.subscriptions, &new_subs);
        // Keep the newest version of each subscription (Java keeps the higher subVersion).
        for (topic, sub) in &mut new_subs {
            if let Some(old) = info.subscriptions.get(topic) {
                if old.sub_string == sub.sub_string && old.sub_version > sub.sub_version {
                    sub.sub_version = old.sub_version;
                }
            }
        }
        info.subscriptions = new_subs;
        Ok(is_new_member || is_sub_changed)
    }

    /// Registers (or refreshes) a producer member.
    pub fn register_producer(
        &self,
        group: &str,
        conn: &Rc<ConnectionCtx>,
        client_id: &str,
        now_ms: i64,
    ) {
        let mut producers = self.producers.borrow_mut();
        if !producers.contains_key(group) && producers.len() >= GROUP_COUNT_MAX {
            return;
        }
        let members = producers.entry(group.to_string()).or_default();
        if let Some(ch) = members.get_mut(&conn.id()) {
            ch.last_update_ms = now_ms;
        } else if members.len() < MEMBER_COUNT_MAX {
            members.insert(
                conn.id(),
                ClientChannel {
                    conn: Rc::downgrade(conn),
                    client_id: client_id.to_string(),
                    last_update_ms: now_ms,
                },
            );
        }
    }

    /// Removes one connection from a consumer group; true if it was a member.
    pub fn unregister_consumer(&self, group: &str, conn_id: u64) -> bool {
        let mut consumers = self.consumers.borrow_mut();
        let Some(info) = consumers.get_mut(group) else {
            return false;
        };
        let removed = info.channels.remove(&conn_id).is_some();
        if info.channels.is_empty() {
            consumers.remove(group);
        }
        removed
    }

    pub fn unregister_producer(&self, group: &str, conn_id: u64) {
        let mut producers = self.producers.borrow_mut();
        if let Some(members) = producers.get_mut(group) {
            members.remove(&conn_id);
            if members.is_empty() {
                producers.remove(group);
            }
        }
    }

    /// Removes a closed connection everywhere; returns the consumer groups it left.
    pub fn remove_connection(&self, conn_id: u64) -> Vec<String> {
        self.remove_members(|id, _| id == conn_id)
    }

    /// Drops members silent for longer than `CHANNEL_EXPIRED_MS` (or whose connection is gone);
    /// returns the consumer groups that lost a member.
    pub fn expire(&self, now_ms: i64) -> Vec<String> {
        self.remove_members(|_, ch| {
            now_ms.saturating_sub(ch.last_update_ms) > CHANNEL_EXPIRED_MS
                || ch.conn.strong_count() == 0
        })
    }

    fn remove_members(&self, is_gone: impl Fn(u64, &ClientChannel) -> bool) -> Vec<String> {
        let mut changed = Vec::new();
        {
            let mut consumers = self.consumers.borrow_mut();
            consumers.retain(|group, info| {
                let before = info.channels.len();
                info.channels.retain(|id, ch| !is_gone(*id, ch));
                if info.channels.len() != before {
                    changed.push(group.clone());
                }
                !info.channels.is_empty()
            });
        }
        self.producers.borrow_mut().retain(|_, members| {
            members.retain(|id, ch| !is_gone(*id, ch));
            !members.is_empty()
        });
        changed
    }

    /// Client ids of a group's live members, sorted.
    pub fn consumer_ids(&self, group: &str) -> Vec<String> {
        let consumers = self.consumers.borrow();
        let mut ids: Vec<String> = consumers
            .get(group)
            .map(|info| {
                info.channels
                    .values()
                    .map(|ch| ch.client_id.clone())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Connections of a group's members (those still open).
    pub fn consumer_connections(&self, group: &str) -> Vec<Rc<ConnectionCtx>> {
        let consumers = self.consumers.borrow();
        consumers
            .get(group)
            .map(|info| {
                info.channels
                    .values()
                    .filter_map(|ch| ch.conn.upgrade())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Connections of a producer group's members (those still open), e.g. for
    /// CHECK_TRANSACTION_STATE.
    pub fn producer_connections(&self, group: &str) -> Vec<Rc<ConnectionCtx>> {
        let producers = self.producers.borrow();
        producers
            .get(group)
            .map(|members| {
                members
                    .values()
                    .filter_map(|ch| ch.conn.upgrade())
                    .filter(|conn| !conn.is_closed())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A copy of what this shard knows about a consumer group (GET_CONSUMER_CONNECTION_LIST):
    /// its settings, subscriptions and the members whose connection is still open.
    pub fn consumer_group_snapshot(&self, group: &str) -> Option<ConsumerGroupSnapshot> {
        let consumers = self.consumers.borrow();
        let info = consumers.get(group)?;
        Some(ConsumerGroupSnapshot {
            consume_type: info.consume_type.clone(),
            message_model: info.message_model,
            consume_from_where: info.consume_from_where.clone(),
            subscriptions: info.subscriptions.values().cloned().collect(),
            members: info
                .channels
                .values()
                .filter_map(|ch| Some((ch.client_id.clone(), ch.conn.upgrade()?)))
                .filter(|(_, conn)| !conn.is_closed())
                .collect(),
        })
    }

    /// The group's subscription to `topic`, if it registered one.
    pub fn subscription(&self, group: &str, topic: &str) -> Option<SubscriptionData> {
        self.consumers
            .borrow()
            .get(group)
            .and_then(|info| info.subscriptions.get(topic).cloned())
    }

    pub fn has_consumer_group(&self, group: &str) -> bool {
        self.consumers.borrow().contains_key(group)
    }

    pub fn message_model(&self, group: &str) -> Option<MessageModel> {
        self.consumers
            .borrow()
            .get(group)
            .map(|info| info.message_model)
    }

    /// Consumer groups subscribed to `topic`.
    pub fn groups_subscribed_to(&self, topic: &str) -> Vec<String> {
        self.consumers
            .borrow()
            .iter()
            .filter(|(_, info)| info.subscriptions.contains_key(topic))
            .map(|(g, _)| g.clone())
            .collect()
    }
}

fn subscriptions_differ(
    old: &BTreeMap<String, SubscriptionData>,
    new: &BTreeMap<String, SubscriptionData>,
) -> bool {
    old.len() != new.len()
        || old.iter().zip(new.iter()).any(|((ot, os), (nt, ns))| {
            ot != nt || os.sub_string != ns.sub_string || os.expression_type != ns.expression_type
        })
}
