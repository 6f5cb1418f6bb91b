//! Topics of one shard: their configs (queue counts, perm, filter type), name validation, the
//! system topics a broker creates at start, auto-creation from the `TBW102` template, and the
//! `config/topics.json` file (REMOTING.md §7.7).
//!
//! Owned by one shard. Every shard holds the same user topics (a created topic is broadcast to
//! the other shards), so a topic's queues exist on every core; retry topics live on the shards
//! the group's consumers heartbeat to. Invariant: every config in the table has a valid name and
//! `read_queue_nums`, `write_queue_nums` within `QUEUE_NUMS_MAX`.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config_file::write_file_atomically;
use crate::error::BrokerError;

/// Permission bits (`PermName.java`).
pub mod perm {
    pub const PRIORITY: u32 = 8;
    pub const READ: u32 = 4;
    pub const WRITE: u32 = 2;
    pub const INHERIT: u32 = 1;

    pub fn is_readable(perm: u32) -> bool {
        perm & READ == READ
    }
    pub fn is_writeable(perm: u32) -> bool {
        perm & WRITE == WRITE
    }
    pub fn is_inherited(perm: u32) -> bool {
        perm & INHERIT == INHERIT
    }
}

/// The auto-create template topic.
pub const AUTO_CREATE_TOPIC_KEY: &str = "TBW102";
pub const RETRY_GROUP_TOPIC_PREFIX: &str = "%RETRY%";
pub const DLQ_GROUP_TOPIC_PREFIX: &str = "%DLQ%";
pub const SCHEDULE_TOPIC: &str = "SCHEDULE_TOPIC_XXXX";
pub const TRANS_HALF_TOPIC: &str = "RMQ_SYS_TRANS_HALF_TOPIC";
pub const TRANS_OP_HALF_TOPIC: &str = "RMQ_SYS_TRANS_OP_HALF_TOPIC";
pub const TRANS_CHECK_MAX_TIME_TOPIC: &str = "TRANS_CHECK_MAX_TIME_TOPIC";
pub const SELF_TEST_TOPIC: &str = "SELF_TEST_TOPIC";
pub const OFFSET_MOVED_EVENT: &str = "OFFSET_MOVED_EVENT";
pub const SINGLE_TAG: &str = "SINGLE_TAG";
pub const MULTI_TAG: &str = "MULTI_TAG";

/// Java's `TopicValidator.TOPIC_MAX_LENGTH`; the store also rejects longer non-retry topics.
pub const TOPIC_NAME_LENGTH_MAX: usize = 127;
/// Retry and DLQ topic names may be longer (`%RETRY%` + a group name of up to 120+).
pub const RETRY_TOPIC_NAME_LENGTH_MAX: usize = 255;
/// Upper bound on a topic's queue count (Java has none; this keeps a bad admin request from
/// creating a million consume queues on one shard).
pub const QUEUE_NUMS_MAX: u32 = 1024;
/// Bound on the number of topics one shard holds.
pub const TOPIC_COUNT_MAX: usize = 100_000;

/// Topics clients may not send to (REMOTING.md §2.2 check 2).
const NOT_ALLOWED_SEND_TOPICS: [&str; 6] = [
    SCHEDULE_TOPIC,
    TRANS_HALF_TOPIC,
    TRANS_OP_HALF_TOPIC,
    TRANS_CHECK_MAX_TIME_TOPIC,
    SELF_TEST_TOPIC,
    OFFSET_MOVED_EVENT,
];

/// One topic's configuration (`TopicConfig.java`; JSON field names as Java's).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicConfig {
    pub topic_name: String,
    pub read_queue_nums: u32,
    pub write_queue_nums: u32,
    pub perm: u32,
    pub topic_filter_type: String,
    pub topic_sys_flag: u32,
    pub order: bool,
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            topic_name: String::new(),
            read_queue_nums: 16,
            write_queue_nums: 16,
            perm: perm::READ | perm::WRITE,
            topic_filter_type: SINGLE_TAG.to_string(),
            topic_sys_flag: 0,
            order: false,
        }
    }
}

impl TopicConfig {
    /// A read-write topic with `queue_nums` read and write queues.
    pub fn new(topic_name: &str, queue_nums: u32, perm: u32) -> Self {
        TopicConfig {
            topic_name: topic_name.to_string(),
            read_queue_nums: queue_nums,
            write_queue_nums: queue_nums,
            perm,
            ..TopicConfig::default()
        }
    }

    /// Queue ids `0..queue_nums()` are valid for this topic on this shard.
    pub fn queue_nums(&self) -> u32 {
        self.read_queue_nums.max(self.write_queue_nums)
    }

    pub fn is_multi_tag(&self) -> bool {
        self.topic_filter_type == MULTI_TAG
    }
}

/// The Java TopicConfig JSON, with the `attributes` map Java always writes.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TopicConfigJson<'a> {
    attributes: BTreeMap<String, String>,
    #[serde(flatten)]
    config: &'a TopicConfig,
}

/// `DataVersion.java`: bumped on every change so the nameserver can tell.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DataVersion {
    pub counter: u64,
    pub state_version: u64,
    pub timestamp: i64,
}

impl DataVersion {
    fn next(&mut self, now_ms: i64) {
        self.counter = self.counter.wrapping_add(1);
        self.timestamp = now_ms;
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct TopicsFile {
    data_version: DataVersion,
    topic_config_table: BTreeMap<String, TopicConfig>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TopicsFileOut<'a> {
    data_version: DataVersion,
    topic_config_table: BTreeMap<&'a str, TopicConfigJson<'a>>,
}

/// Whether a topic name is acceptable: non-blank, `[%|a-zA-Z0-9_-]` only, length within the
/// limit (255 for `%RETRY%`/`%DLQ%` names, 127 otherwise).
pub fn validate_topic_name(topic: &str) -> Result<(), BrokerError> {
    if topic.trim().is_empty() {
        return Err(BrokerError::InvalidParameter(
            "The specified topic is blank.".to_string(),
        ));
    }
    let is_legal_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '%' | '|' | '_' | '-');
    if !topic.chars().all(is_legal_char) {
        return Err(BrokerError::InvalidParameter(format!(
            "The specified topic[{topic}] contains illegal characters, allowing only ^[%|a-zA-Z0-9_-]+$"
        )));
    }
    let length_max = if is_retry_or_dlq(topic) {
        RETRY_TOPIC_NAME_LENGTH_MAX
    } else {
        TOPIC_NAME_LENGTH_MAX
    };
    if topic.len() > length_max {
        return Err(BrokerError::InvalidParameter(format!(
            "The specified topic is longer than topic max length {length_max}."
        )));
    }
    Ok(())
}

pub fn is_retry_or_dlq(topic: &str) -> bool {
    topic.starts_with(RETRY_GROUP_TOPIC_PREFIX) || topic.starts_with(DLQ_GROUP_TOPIC_PREFIX)
}

pub fn retry_topic(group: &str) -> String {
    format!("{RETRY_GROUP_TOPIC_PREFIX}{group}")
}

pub fn dlq_topic(group: &str) -> String {
    format!("{DLQ_GROUP_TOPIC_PREFIX}{group}")
}

/// Topics a client may not send to.
pub fn is_not_allowed_send_topic(topic: &str) -> bool {
    NOT_ALLOWED_SEND_TOPICS.contains(&topic)
}

/// What `TopicTable::upsert` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upsert {
    Created,
    Updated,
    Unchanged,
}

/// The shard's topic table. Cheap methods take `&self`; no borrow escapes a method.
pub struct TopicTable {
    topics: RefCell<BTreeMap<String, TopicConfig>>,
    system_topics: RefCell<Vec<String>>,
    data_version: Cell<DataVersion>,
    path: PathBuf,
}

impl TopicTable {
    /// Loads `<config_dir>/topics.json` if present, then adds the system topics.
    pub fn open(
        config_dir: &Path,
        system_topics: Vec<TopicConfig>,
        now_ms: i64,
    ) -> Result<TopicTable, BrokerError> {
        let path = config_dir.join("topics.json");
        let loaded: TopicsFile = crate::config_file::read_json_or_default(&path)?;
        let mut topics = BTreeMap::new();
        for (name, mut config) in loaded.topic_config_table {
            if validate_topic_name(&name).is_err() {
                log::warn!(
                    "{}: skipping topic with an invalid name {name:?}",
                    path.display()
                );
                continue;
            }
            config.topic_name = name.clone();
            config.read_queue_nums = config.read_queue_nums.min(QUEUE_NUMS_MAX);
            config.write_queue_nums = config.write_queue_nums.min(QUEUE_NUMS_MAX);
            topics.insert(name, config);
        }
        let mut system_names = Vec::with_capacity(system_topics.len());
        for config in system_topics {
            system_names.push(config.topic_name.clone());
            topics.entry(config.topic_name.clone()).or_insert(config);
        }
        let mut data_version = loaded.data_version;
        data_version.next(now_ms);
        Ok(TopicTable {
            topics: RefCell::new(topics),
            system_topics: RefCell::new(system_names),
            data_version: Cell::new(data_version),
            path,
        })
    }

    pub fn get(&self, topic: &str) -> Option<TopicConfig> {
        self.topics.borrow().get(topic).cloned()
    }

    pub fn contains(&self, topic: &str) -> bool {
        self.topics.borrow().contains_key(topic)
    }

    pub fn is_system_topic(&self, topic: &str) -> bool {
        self.system_topics.borrow().iter().any(|t| t == topic)
    }

    pub fn len(&self) -> usize {
        self.topics.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.topics.borrow().is_empty()
    }

    pub fn names(&self) -> Vec<String> {
        self.topics.borrow().keys().cloned().collect()
    }

    /// Inserts or replaces a topic config. The caller persists and announces it.
    pub fn upsert(&self, config: TopicConfig, now_ms: i64) -> Result<Upsert, BrokerError> {
        validate_topic_name(&config.topic_name)?;
        if config.read_queue_nums > QUEUE_NUMS_MAX || config.write_queue_nums > QUEUE_NUMS_MAX {
            return Err(BrokerError::InvalidParameter(format!(
                "queue nums of topic[{}] exceed {QUEUE_NUMS_MAX}",
                config.topic_name
            )));
        }
        let outcome = {
            let mut topics = self.topics.borrow_mut();
            match topics.get(&config.topic_name) {
                Some(old) if *old == config => Upsert::Unchanged,
                Some(_) => {
                    topics.insert(config.topic_name.clone(), config);
                    Upsert::Updated
                }
                None if topics.len() >= TOPIC_COUNT_MAX => {
                    return Err(BrokerError::SystemBusy(format!(
                        "this shard already holds {TOPIC_COUNT_MAX} topics"
                    )))
                }
                None => {
                    topics.insert(config.topic_name.clone(), config);
                    Upsert::Created
                }
            }
        };
        if outcome != Upsert::Unchanged {
            self.bump_version(now_ms);
        }
        Ok(outcome)
    }

    /// Removes a topic; returns whether it existed.
    pub fn remove(&self, topic: &str, now_ms: i64) -> bool {
        let existed = self.topics.borrow_mut().remove(topic).is_some();
        if existed {
            self.bump_version(now_ms);
        }
        existed
    }

    fn bump_version(&self, now_ms: i64) {
        let mut v = self.data_version.get();
        v.next(now_ms);
        self.data_version.set(v);
    }

    pub fn data_version(&self) -> DataVersion {
        self.data_version.get()
    }

    /// TopicConfigSerializeWrapper JSON (REMOTING.md §6.5): the REGISTER_BROKER and
    /// GET_ALL_TOPIC_CONFIG body, and the content of topics.json.
    pub fn wrapper_json(&self) -> Vec<u8> {
        let topics = self.topics.borrow();
        let out = TopicsFileOut {
            data_version: self.data_version.get(),
            topic_config_table: topics
                .iter()
                .map(|(name, config)| {
                    (
                        name.as_str(),
                        TopicConfigJson {
                            attributes: BTreeMap::new(),
                            config,
                        },
                    )
                })
                .collect(),
        };
        // Serializing plain structs and string-keyed maps into a Vec cannot fail.
        serde_json::to_vec(&out).unwrap_or_default()
    }

    /// Writes topics.json (atomically: temp file, fdatasync, rename).
    pub async fn persist(&self) -> Result<(), BrokerError> {
        let bytes = self.wrapper_json();
        write_file_atomically(&self.path, bytes).await
    }
}

/// The topics a broker shard creates at start (REMOTING.md §7.7).
pub fn system_topics(
    cluster_name: &str,
    broker_name: &str,
    auto_create_topic_enable: bool,
    default_topic_queue_nums: u32,
) -> Vec<TopicConfig> {
    let rw = perm::READ | perm::WRITE;
    let rwi = rw | perm::INHERIT;
    let mut topics = vec![
        TopicConfig::new(SELF_TEST_TOPIC, 1, rw),
        TopicConfig::new(OFFSET_MOVED_EVENT, 1, rw),
        TopicConfig::new(SCHEDULE_TOPIC, 18, rw),
        TopicConfig::new(TRANS_HALF_TOPIC, 1, rw),
        TopicConfig::new(TRANS_OP_HALF_TOPIC, 1, rw),
        TopicConfig::new(&format!("{cluster_name}_REPLY_TOPIC"), 1, rw),
    ];
    if auto_create_topic_enable {
        let queue_nums = default_topic_queue_nums.clamp(1, QUEUE_NUMS_MAX);
        topics.push(TopicConfig::new(AUTO_CREATE_TOPIC_KEY, queue_nums, rwi));
    }
    if validate_topic_name(cluster_name).is_ok() {
        topics.push(TopicConfig::new(cluster_name, 16, rwi));
    }
    if validate_topic_name(broker_name).is_ok() {
        topics.push(TopicConfig::new(broker_name, 1, rwi));
    }
    topics
}

/// The config of a topic auto-created from `template` for a producer that asked for
/// `client_queue_nums` queues (REMOTING.md §7.7).
pub fn auto_created_from(
    topic: &str,
    template: &TopicConfig,
    client_queue_nums: i32,
) -> Option<TopicConfig> {
    if !perm::is_inherited(template.perm) {
        return None;
    }
    let wanted = u32::try_from(client_queue_nums).unwrap_or(0).max(1);
    let queue_nums = wanted.min(template.write_queue_nums).max(1);
    Some(TopicConfig {
        topic_name: topic.to_string(),
        read_queue_nums: queue_nums,
        write_queue_nums: queue_nums,
        perm: template.perm & !perm::INHERIT,
        topic_filter_type: template.topic_filter_type.clone(),
        topic_sys_flag: 0,
        order: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_rocketmq_rules() {
        assert!(validate_topic_name("TopicTest").is_ok());
        assert!(validate_topic_name("%RETRY%group_1").is_ok());
        assert!(validate_topic_name("a|b-c_d").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("  ").is_err());
        assert!(validate_topic_name("has space").is_err());
        assert!(validate_topic_name("dot.topic").is_err());
        assert!(validate_topic_name(&"a".repeat(127)).is_ok());
        assert!(validate_topic_name(&"a".repeat(128)).is_err());
        assert!(validate_topic_name(&format!("%RETRY%{}", "g".repeat(200))).is_ok());
    }

    #[test]
    fn auto_create_takes_the_smaller_queue_count_and_drops_inherit() {
        let template = TopicConfig::new(AUTO_CREATE_TOPIC_KEY, 8, 7);
        let c = auto_created_from("T", &template, 4).expect("template inherits");
        assert_eq!((c.read_queue_nums, c.write_queue_nums, c.perm), (4, 4, 6));
        let c = auto_created_from("T", &template, 16).expect("template inherits");
        assert_eq!(c.write_queue_nums, 8);
        assert!(auto_created_from("T", &TopicConfig::new("X", 8, 6), 4).is_none());
    }

    #[test]
    fn wrapper_json_has_java_field_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let table =
            TopicTable::open(dir.path(), vec![TopicConfig::new("T", 4, 6)], 1).expect("open");
        let json: serde_json::Value =
            serde_json::from_slice(&table.wrapper_json()).expect("valid json");
        let t = &json["topicConfigTable"]["T"];
        assert_eq!(t["readQueueNums"], 4);
        assert_eq!(t["topicFilterType"], "SINGLE_TAG");
        assert_eq!(t["attributes"], serde_json::json!({}));
        assert!(json["dataVersion"]["counter"].is_u64());
    }
}
