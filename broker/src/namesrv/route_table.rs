//! The nameserver's state (RocketMQ `RouteInfoManager`): which broker hosts which topic's
//! queues, brokers' addresses per cluster, and when each broker was last heard from.
//! Pure data + time passed in, so expiry is testable without waiting.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};

use crate::remoting::header::put_json_string;

/// A broker silent for this long is removed (RocketMQ: 120 s).
pub const BROKER_EXPIRY_DEFAULT: Duration = Duration::from_secs(120);
/// Limits that keep one misbehaving peer from growing the table without bound.
pub const BROKERS_MAX: usize = 4096;
pub const TOPICS_MAX: usize = 1_000_000;
pub const KV_ENTRIES_MAX: usize = 65_536;

/// QueueData: one broker's queues of one topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueData {
    pub broker_name: String,
    pub read_queue_nums: u32,
    pub write_queue_nums: u32,
    pub perm: u32,
    pub topic_sys_flag: u32,
}

/// BrokerData: a broker name's addresses by broker id (0 = master).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerData {
    pub cluster: String,
    pub broker_name: String,
    pub broker_addrs: BTreeMap<i64, String>,
    pub zone_name: Option<String>,
    pub enable_acting_master: bool,
}

/// One topic as a broker reports it in REGISTER_BROKER.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicRegistration {
    pub topic_name: String,
    pub read_queue_nums: u32,
    pub write_queue_nums: u32,
    pub perm: u32,
    pub topic_sys_flag: u32,
}

/// REGISTER_BROKER's fields.
#[derive(Clone, Debug)]
pub struct Registration {
    pub cluster_name: String,
    pub broker_name: String,
    pub broker_addr: String,
    pub broker_id: i64,
    pub zone_name: Option<String>,
    pub enable_acting_master: bool,
    pub heartbeat_timeout: Duration,
    /// DataVersion JSON text as the broker sent it.
    pub data_version: String,
    pub topics: Vec<TopicRegistration>,
    /// The connection the registration came on (its close removes the broker).
    pub conn_id: u64,
}

#[derive(Clone, Debug)]
struct LiveBroker {
    cluster_name: String,
    broker_name: String,
    broker_id: i64,
    last_update: Instant,
    heartbeat_timeout: Duration,
    data_version: String,
    conn_id: u64,
}

/// Why a registration was refused.
#[derive(thiserror::Error, Debug, PartialEq, Eq)]
pub enum RegisterError {
    #[error("too many brokers registered (limit {0})")]
    TooManyBrokers(usize),
    #[error("too many topics registered (limit {0})")]
    TooManyTopics(usize),
}

/// The route table.
#[derive(Default)]
pub struct RouteTable {
    brokers: BTreeMap<String, BrokerData>,
    clusters: BTreeMap<String, BTreeSet<String>>,
    topics: BTreeMap<String, BTreeMap<String, QueueData>>,
    live: HashMap<String, LiveBroker>,
    kv: HashMap<String, BTreeMap<String, String>>,
    kv_len: usize,
}

impl RouteTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Apply a REGISTER_BROKER: addresses, cluster membership, and (for a master) the full
    /// topic list of that broker (topics it no longer reports lose its queues).
    pub fn register(&mut self, r: Registration, now: Instant) -> Result<(), RegisterError> {
        if !self.live.contains_key(&r.broker_addr) && self.live.len() >= BROKERS_MAX {
            return Err(RegisterError::TooManyBrokers(BROKERS_MAX));
        }
        let new_topics = r
            .topics
            .iter()
            .filter(|t| !self.topics.contains_key(&t.topic_name))
            .count();
        if self.topics.len() + new_topics > TOPICS_MAX {
            return Err(RegisterError::TooManyTopics(TOPICS_MAX));
        }
        self.clusters
            .entry(r.cluster_name.clone())
            .or_default()
            .insert(r.broker_name.clone());
        let bd = self
            .brokers
            .entry(r.broker_name.clone())
            .or_insert_with(|| BrokerData {
                cluster: r.cluster_name.clone(),
                broker_name: r.broker_name.clone(),
                broker_addrs: BTreeMap::new(),
                zone_name: r.zone_name.clone(),
                enable_acting_master: r.enable_acting_master,
            });
        bd.cluster = r.cluster_name.clone();
        bd.enable_acting_master = r.enable_acting_master;
        if r.zone_name.is_some() {
            bd.zone_name = r.zone_name.clone();
        }
        // One address per broker id, and one id per address.
        bd.broker_addrs
            .retain(|id, addr| *id == r.broker_id || *addr != r.broker_addr);
        let replaced = bd.broker_addrs.insert(r.broker_id, r.broker_addr.clone());
        if let Some(old) = replaced.filter(|old| *old != r.broker_addr) {
            self.live.remove(&old);
        }
        if r.broker_id == 0 {
            let reported: BTreeSet<&str> = r.topics.iter().map(|t| t.topic_name.as_str()).collect();
            self.topics.retain(|name, queues| {
                if !reported.contains(name.as_str()) {
                    queues.remove(&r.broker_name);
                }
                !queues.is_empty()
            });
            for t in &r.topics {
                self.topics.entry(t.topic_name.clone()).or_default().insert(
                    r.broker_name.clone(),
                    QueueData {
                        broker_name: r.broker_name.clone(),
                        read_queue_nums: t.read_queue_nums,
                        write_queue_nums: t.write_queue_nums,
                        perm: t.perm,
                        topic_sys_flag: t.topic_sys_flag,
                    },
                );
            }
        }
        self.live.insert(
            r.broker_addr,
            LiveBroker {
                cluster_name: r.cluster_name,
                broker_name: r.broker_name,
                broker_id: r.broker_id,
                last_update: now,
                heartbeat_timeout: r.heartbeat_timeout,
                data_version: r.data_version,
                conn_id: r.conn_id,
            },
        );
        Ok(())
    }

    /// BROKER_HEARTBEAT / unchanged QUERY_DATA_VERSION: the broker is alive.
    pub fn touch(&mut self, broker_addr: &str, now: Instant) -> bool {
        match self.live.get_mut(broker_addr) {
            Some(l) => {
                l.last_update = now;
                true
            }
            None => false,
        }
    }

    /// When `broker_addr` last registered or sent a heartbeat (None: not registered).
    pub fn last_heard(&self, broker_addr: &str) -> Option<Instant> {
        self.live.get(broker_addr).map(|l| l.last_update)
    }

    /// The DataVersion JSON last registered by `broker_addr`.
    pub fn data_version(&self, broker_addr: &str) -> Option<&str> {
        self.live.get(broker_addr).map(|l| l.data_version.as_str())
    }

    /// UNREGISTER_BROKER, expiry, connection close: drop the address; a broker name with no
    /// address left loses its queue data and its cluster membership.
    pub fn unregister(&mut self, broker_name: &str, broker_addr: &str, broker_id: i64) {
        self.live.remove(broker_addr);
        let Some(bd) = self.brokers.get_mut(broker_name) else {
            return;
        };
        if bd
            .broker_addrs
            .get(&broker_id)
            .is_some_and(|a| a == broker_addr)
        {
            bd.broker_addrs.remove(&broker_id);
        } else {
            bd.broker_addrs.retain(|_, a| a != broker_addr);
        }
        let is_gone = bd.broker_addrs.is_empty();
        let was_master = broker_id == 0;
        if is_gone {
            let cluster = bd.cluster.clone();
            self.brokers.remove(broker_name);
            if let Some(names) = self.clusters.get_mut(&cluster) {
                names.remove(broker_name);
                if names.is_empty() {
                    self.clusters.remove(&cluster);
                }
            }
        }
        if is_gone || was_master {
            self.topics.retain(|_, queues| {
                queues.remove(broker_name);
                !queues.is_empty()
            });
        }
    }

    /// Remove brokers silent past their timeout; returns their addresses.
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let dead: Vec<(String, String, i64)> = self
            .live
            .iter()
            .filter(|(_, l)| now.saturating_duration_since(l.last_update) > l.heartbeat_timeout)
            .map(|(a, l)| (a.clone(), l.broker_name.clone(), l.broker_id))
            .collect();
        for (addr, name, id) in &dead {
            self.unregister(name, addr, *id);
        }
        dead.into_iter().map(|(a, ..)| a).collect()
    }

    /// A connection closed: brokers that registered over it are removed.
    pub fn connection_closed(&mut self, conn_id: u64) -> Vec<String> {
        let dead: Vec<(String, String, i64)> = self
            .live
            .iter()
            .filter(|(_, l)| l.conn_id == conn_id)
            .map(|(a, l)| (a.clone(), l.broker_name.clone(), l.broker_id))
            .collect();
        for (addr, name, id) in &dead {
            self.unregister(name, addr, *id);
        }
        dead.into_iter().map(|(a, ..)| a).collect()
    }

    pub fn has_topic(&self, topic: &str) -> bool {
        self.topics.contains_key(topic)
    }

    /// DELETE_TOPIC_IN_NAMESRV: all of it, or only the queues of one cluster's brokers.
    pub fn delete_topic(&mut self, topic: &str, cluster: Option<&str>) {
        match cluster.and_then(|c| self.clusters.get(c)) {
            Some(names) => {
                if let Some(queues) = self.topics.get_mut(topic) {
                    queues.retain(|b, _| !names.contains(b));
                    if queues.is_empty() {
                        self.topics.remove(topic);
                    }
                }
            }
            None => {
                self.topics.remove(topic);
            }
        }
    }

    /// TopicRouteData JSON (REMOTING.md §6.2), or None when no broker hosts the topic.
    /// `quoted_keys`: broker-id keys as `"0"` (standard JSON) instead of fastjson's bare `0`.
    pub fn route_json(&self, topic: &str, quoted_keys: bool) -> Option<BytesMut> {
        let queues = self.topics.get(topic).filter(|q| !q.is_empty())?;
        let mut out = BytesMut::with_capacity(256);
        out.put_slice(b"{\"brokerDatas\":[");
        let mut first = true;
        for name in queues.keys() {
            if let Some(bd) = self.brokers.get(name) {
                if !first {
                    out.put_u8(b',');
                }
                first = false;
                put_broker_data(&mut out, bd, quoted_keys);
            }
        }
        out.put_slice(b"],\"filterServerTable\":{},\"queueDatas\":[");
        for (i, q) in queues.values().enumerate() {
            if i > 0 {
                out.put_u8(b',');
            }
            out.put_slice(b"{\"brokerName\":");
            put_json_string(&mut out, &q.broker_name);
            out.put_slice(
                format!(
                    ",\"perm\":{},\"readQueueNums\":{},\"topicSysFlag\":{},\"writeQueueNums\":{}}}",
                    q.perm, q.read_queue_nums, q.topic_sys_flag, q.write_queue_nums
                )
                .as_bytes(),
            );
        }
        out.put_slice(b"]}");
        Some(out)
    }

    /// ClusterInfo JSON (106), fastjson form (bare broker-id keys).
    pub fn cluster_info_json(&self) -> BytesMut {
        let mut out = BytesMut::with_capacity(256);
        out.put_slice(b"{\"brokerAddrTable\":{");
        for (i, (name, bd)) in self.brokers.iter().enumerate() {
            if i > 0 {
                out.put_u8(b',');
            }
            put_json_string(&mut out, name);
            out.put_u8(b':');
            put_broker_data(&mut out, bd, false);
        }
        out.put_slice(b"},\"clusterAddrTable\":{");
        for (i, (cluster, names)) in self.clusters.iter().enumerate() {
            if i > 0 {
                out.put_u8(b',');
            }
            put_json_string(&mut out, cluster);
            out.put_u8(b':');
            put_string_array(&mut out, names.iter().map(String::as_str));
        }
        out.put_slice(b"}}");
        out
    }

    /// Every topic name.
    pub fn topic_names(&self) -> impl Iterator<Item = &str> {
        self.topics.keys().map(String::as_str)
    }

    /// Topics hosted by the brokers of `cluster`.
    pub fn topics_of_cluster(&self, cluster: &str) -> Vec<&str> {
        let Some(names) = self.clusters.get(cluster) else {
            return Vec::new();
        };
        self.topics
            .iter()
            .filter(|(_, q)| q.keys().any(|b| names.contains(b)))
            .map(|(t, _)| t.as_str())
            .collect()
    }

    /// Cluster and broker names (RocketMQ's "system topics" of the nameserver), plus one
    /// master address.
    pub fn system_topics(&self) -> (Vec<&str>, Option<&str>) {
        let mut names: Vec<&str> = self.clusters.keys().map(String::as_str).collect();
        names.extend(self.brokers.keys().map(String::as_str));
        let addr = self
            .brokers
            .values()
            .find_map(|b| b.broker_addrs.get(&0))
            .map(String::as_str);
        (names, addr)
    }

    pub fn broker(&self, name: &str) -> Option<&BrokerData> {
        self.brokers.get(name)
    }

    pub fn live_broker_count(&self) -> usize {
        self.live.len()
    }

    pub fn cluster_of(&self, broker_addr: &str) -> Option<&str> {
        self.live.get(broker_addr).map(|l| l.cluster_name.as_str())
    }

    // KV config (PUT/GET/DELETE_KV_CONFIG), kept in memory.

    pub fn kv_put(&mut self, namespace: &str, key: &str, value: &str) -> bool {
        let ns = self.kv.entry(namespace.to_owned()).or_default();
        if !ns.contains_key(key) {
            if self.kv_len >= KV_ENTRIES_MAX {
                return false;
            }
            self.kv_len += 1;
        }
        ns.insert(key.to_owned(), value.to_owned());
        true
    }

    pub fn kv_get(&self, namespace: &str, key: &str) -> Option<&str> {
        self.kv.get(namespace)?.get(key).map(String::as_str)
    }

    pub fn kv_delete(&mut self, namespace: &str, key: &str) {
        if let Some(ns) = self.kv.get_mut(namespace) {
            if ns.remove(key).is_some() {
                self.kv_len -= 1;
            }
            if ns.is_empty() {
                self.kv.remove(namespace);
            }
        }
    }

    pub fn kv_namespace(&self, namespace: &str) -> Option<&BTreeMap<String, String>> {
        self.kv.get(namespace)
    }
}

fn put_broker_data(out: &mut BytesMut, bd: &BrokerData, quoted_keys: bool) {
    out.put_slice(b"{\"brokerAddrs\":{");
    for (i, (id, addr)) in bd.broker_addrs.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        if quoted_keys {
            out.put_slice(format!("\"{id}\":").as_bytes());
        } else {
            out.put_slice(format!("{id}:").as_bytes());
        }
        put_json_string(out, addr);
    }
    out.put_slice(b"},\"brokerName\":");
    put_json_string(out, &bd.broker_name);
    out.put_slice(b",\"cluster\":");
    put_json_string(out, &bd.cluster);
    out.put_slice(if bd.enable_acting_master {
        b",\"enableActingMaster\":true"
    } else {
        b",\"enableActingMaster\":false"
    });
    if let Some(zone) = &bd.zone_name {
        out.put_slice(b",\"zoneName\":");
        put_json_string(out, zone);
    }
    out.put_u8(b'}');
}

pub(crate) fn put_string_array<'a>(out: &mut BytesMut, items: impl Iterator<Item = &'a str>) {
    out.put_u8(b'[');
    for (i, s) in items.enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        put_json_string(out, s);
    }
    out.put_u8(b']');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(name: &str, addr: &str, topics: &[&str], conn_id: u64) -> Registration {
        Registration {
            cluster_name: "DefaultCluster".into(),
            broker_name: name.into(),
            broker_addr: addr.into(),
            broker_id: 0,
            zone_name: None,
            enable_acting_master: false,
            heartbeat_timeout: BROKER_EXPIRY_DEFAULT,
            data_version: "{}".into(),
            topics: topics
                .iter()
                .map(|t| TopicRegistration {
                    topic_name: (*t).into(),
                    read_queue_nums: 4,
                    write_queue_nums: 4,
                    perm: 6,
                    topic_sys_flag: 0,
                })
                .collect(),
            conn_id,
        }
    }

    #[test]
    fn route_lists_every_broker_hosting_the_topic_in_fastjson_shape() {
        let mut t = RouteTable::new();
        let now = Instant::now();
        t.register(reg("p_0", "10.0.0.1:10911", &["T", "TBW102"], 1), now)
            .expect("ok");
        t.register(reg("p_1", "10.0.0.1:10912", &["T"], 1), now)
            .expect("ok");
        let json = t.route_json("T", true).expect("route");
        assert_eq!(
            std::str::from_utf8(&json).expect("utf8"),
            "{\"brokerDatas\":[{\"brokerAddrs\":{\"0\":\"10.0.0.1:10911\"},\"brokerName\":\"p_0\",\"cluster\":\"DefaultCluster\",\"enableActingMaster\":false},\
{\"brokerAddrs\":{\"0\":\"10.0.0.1:10912\"},\"brokerName\":\"p_1\",\"cluster\":\"DefaultCluster\",\"enableActingMaster\":false}],\
\"filterServerTable\":{},\"queueDatas\":[{\"brokerName\":\"p_0\",\"perm\":6,\"readQueueNums\":4,\"topicSysFlag\":0,\"writeQueueNums\":4},\
{\"brokerName\":\"p_1\",\"perm\":6,\"readQueueNums\":4,\"topicSysFlag\":0,\"writeQueueNums\":4}]}"
        );
        let bare = t.route_json("TBW102", false).expect("route");
        assert!(std::str::from_utf8(&bare)
            .expect("utf8")
            .contains("{0:\"10.0.0.1:10911\"}"));
        assert!(t.route_json("nope", true).is_none());
    }

    #[test]
    fn topics_no_longer_reported_lose_that_brokers_queues() {
        let mut t = RouteTable::new();
        let now = Instant::now();
        t.register(reg("p_0", "a:1", &["T", "U"], 1), now)
            .expect("ok");
        t.register(reg("p_0", "a:1", &["T"], 1), now).expect("ok");
        assert!(t.has_topic("T"));
        assert!(!t.has_topic("U"));
    }

    #[test]
    fn silent_broker_expires_after_its_timeout() {
        let mut t = RouteTable::new();
        let now = Instant::now();
        t.register(reg("p_0", "a:1", &["T"], 1), now).expect("ok");
        assert!(t.expire(now + Duration::from_secs(119)).is_empty());
        assert_eq!(
            t.expire(now + Duration::from_secs(121)),
            vec!["a:1".to_string()]
        );
        assert!(!t.has_topic("T"));
        assert!(t.broker("p_0").is_none());
        assert_eq!(
            std::str::from_utf8(&t.cluster_info_json()).ok(),
            Some("{\"brokerAddrTable\":{},\"clusterAddrTable\":{}}")
        );
    }

    #[test]
    fn closing_the_registering_connection_removes_the_broker() {
        let mut t = RouteTable::new();
        let now = Instant::now();
        t.register(reg("p_0", "a:1", &["T"], 7), now).expect("ok");
        t.register(reg("p_1", "a:2", &["T"], 8), now).expect("ok");
        assert_eq!(t.connection_closed(7), vec!["a:1".to_string()]);
        assert!(t.has_topic("T"));
        assert!(t.broker("p_0").is_none());
    }
}
