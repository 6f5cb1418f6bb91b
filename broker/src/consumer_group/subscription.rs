//! A consumer's subscription to one topic (`SubscriptionData.java`, REMOTING.md §6.3 and §4.7):
//! the expression, its tags and their hash codes. The broker filters a pull twice: first by the
//! consume queue's tags code against `code_set` (cheap, no record read), then exactly by the
//! record's `TAGS` against `tags_set`. A SQL92 subscription instead carries its compiled
//! filter (`crate::filter::sql92`), evaluated against each candidate record's properties.

use std::collections::BTreeSet;
use std::rc::Rc;

use serde_json::{json, Value};

use crate::error::BrokerError;
use crate::filter::Sql92Filter;

pub const SUB_ALL: &str = "*";

/// Expression language of a subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpressionType {
    Tag,
    Sql92,
}

impl ExpressionType {
    /// `TAG` when absent or empty; anything else but `SQL92` is rejected.
    pub fn parse(s: Option<&str>) -> Result<Self, BrokerError> {
        match s.map(str::trim) {
            None | Some("") => Ok(ExpressionType::Tag),
            Some(t) if t.eq_ignore_ascii_case("TAG") => Ok(ExpressionType::Tag),
            Some(t) if t.eq_ignore_ascii_case("SQL92") => Ok(ExpressionType::Sql92),
            Some(t) => Err(BrokerError::SubscriptionParseFailed(format!(
                "unknown expression type {t}"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ExpressionType::Tag => "TAG",
            ExpressionType::Sql92 => "SQL92",
        }
    }
}

/// What one consumer group wants from one topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionData {
    pub topic: String,
    pub sub_string: String,
    pub tags_set: BTreeSet<String>,
    pub code_set: BTreeSet<i32>,
    pub sub_version: i64,
    pub expression_type: ExpressionType,
    /// The compiled expression of a SQL92 subscription (`None` for TAG).
    pub sql92: Option<Rc<Sql92Filter>>,
}

/// Bound on the tags of one subscription expression.
pub const TAG_COUNT_MAX: usize = 1024;

impl SubscriptionData {
    /// Builds a subscription from its expression (`*`, empty, or `a || b`; for SQL92 the
    /// condition, compiled here: an invalid one is `SubscriptionParseFailed`).
    pub fn from_expression(
        topic: &str,
        expression: &str,
        expression_type: ExpressionType,
        sub_version: i64,
    ) -> Result<Self, BrokerError> {
        Self::build(topic, expression, expression_type, sub_version, None)
    }

    /// As `from_expression`, reusing `previous`'s compiled SQL92 filter when the expression
    /// text is the same (a heartbeat repeats the subscription every 30 s: compile it once).
    fn build(
        topic: &str,
        expression: &str,
        expression_type: ExpressionType,
        sub_version: i64,
        previous: Option<&SubscriptionData>,
    ) -> Result<Self, BrokerError> {
        let trimmed = expression.trim();
        let sql92 = match expression_type {
            ExpressionType::Tag => None,
            ExpressionType::Sql92 => Some(match previous.and_then(|p| p.sql92.as_ref()) {
                Some(filter) if filter.source() == trimmed => Rc::clone(filter),
                _ => Rc::new(compile_sql92(trimmed)?),
            }),
        };
        let mut sub = SubscriptionData {
            topic: topic.to_string(),
            sub_string: if trimmed.is_empty() {
                SUB_ALL.to_string()
            } else {
                trimmed.to_string()
            },
            tags_set: BTreeSet::new(),
            code_set: BTreeSet::new(),
            sub_version,
            expression_type,
            sql92,
        };
        if expression_type == ExpressionType::Tag && sub.sub_string != SUB_ALL {
            for tag in sub
                .sub_string
                .split("||")
                .map(str::trim)
                .filter(|t| !t.is_empty())
            {
                if sub.tags_set.len() >= TAG_COUNT_MAX {
                    return Err(BrokerError::SubscriptionParseFailed(format!(
                        "more than {TAG_COUNT_MAX} tags in one subscription"
                    )));
                }
                sub.tags_set.insert(tag.to_string());
                sub.code_set.insert(tag_code(tag));
            }
            if sub.tags_set.is_empty() {
                sub.sub_string = SUB_ALL.to_string();
            }
        }
        Ok(sub)
    }

    /// Parses one `SubscriptionData` object of a heartbeat, leniently (REMOTING.md §6.1 item 7:
    /// `subVersion` may be a string, `expressionType` may be absent). `previous` is the group's
    /// current subscription to the same topic, whose compiled SQL92 filter is reused when the
    /// expression did not change.
    pub fn from_heartbeat_json(
        v: &Value,
        previous: Option<&SubscriptionData>,
    ) -> Result<Self, BrokerError> {
        let topic = heartbeat_topic(v);
        if topic.is_empty() {
            return Err(BrokerError::InvalidParameter(
                "heartbeat subscription without a topic".to_string(),
            ));
        }
        let expression_type =
            ExpressionType::parse(v.get("expressionType").and_then(Value::as_str))?;
        let sub_version = json_i64(v.get("subVersion")).unwrap_or(0);
        let sub_string = v
            .get("subString")
            .and_then(Value::as_str)
            .unwrap_or(SUB_ALL);
        let mut sub = Self::build(topic, sub_string, expression_type, sub_version, previous)?;
        // A client may list tags the expression does not (old clients): trust tagsSet too.
        if let Some(tags) = v.get("tagsSet").and_then(Value::as_array) {
            if expression_type == ExpressionType::Tag && sub.sub_string != SUB_ALL {
                for tag in tags.iter().filter_map(Value::as_str).take(TAG_COUNT_MAX) {
                    let tag = tag.trim();
                    if !tag.is_empty() && sub.tags_set.insert(tag.to_string()) {
                        sub.code_set.insert(tag_code(tag));
                    }
                }
            }
        }
        Ok(sub)
    }

    /// The Java JSON shape (for admin bodies).
    pub fn to_json(&self) -> Value {
        json!({
            "classFilterMode": false,
            "codeSet": self.code_set.iter().collect::<Vec<_>>(),
            "expressionType": self.expression_type.name(),
            "subString": self.sub_string,
            "subVersion": self.sub_version,
            "tagsSet": self.tags_set.iter().collect::<Vec<_>>(),
            "topic": self.topic,
        })
    }

    pub fn is_match_all(&self) -> bool {
        self.expression_type == ExpressionType::Sql92 || self.sub_string == SUB_ALL
    }

    /// First filter: the consume queue's tags code (REMOTING.md §4.7: compare as i32).
    pub fn matches_tags_code(&self, tags_code: i64) -> bool {
        // Truncation to i32 is the protocol's rule: Java compares `(int) tagsCode`.
        #[allow(clippy::cast_possible_truncation)]
        let code = tags_code as i32;
        self.is_match_all() || self.code_set.contains(&code)
    }

    /// Second filter: the record's `TAGS` property, exactly.
    pub fn matches_tag(&self, tag: Option<&str>) -> bool {
        if self.is_match_all() {
            return true;
        }
        tag.is_some_and(|t| self.tags_set.contains(t))
    }
}

/// The `topic` of a heartbeat's `SubscriptionData` object (empty when absent).
pub fn heartbeat_topic(v: &Value) -> &str {
    v.get("topic").and_then(Value::as_str).unwrap_or_default()
}

/// Compiles a SQL92 expression; an invalid one is `SubscriptionParseFailed` with the reason.
pub fn compile_sql92(expression: &str) -> Result<Sql92Filter, BrokerError> {
    Sql92Filter::compile(expression.trim())
        .map_err(|e| BrokerError::SubscriptionParseFailed(e.to_string()))
}

/// Java's `String.hashCode` of a tag, as the i32 the subscription code set holds.
pub fn tag_code(tag: &str) -> i32 {
    // engine::tags_hash sign-extends an i32 hash into i64; the low 32 bits are the hash.
    #[allow(clippy::cast_possible_truncation)]
    let code = engine::tags_hash(tag) as i32;
    code
}

/// A JSON number, or a string holding one (C++ clients send numbers as strings).
pub fn json_i64(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_expressions_build_tags_and_codes() {
        let s = SubscriptionData::from_expression("T", "TagA || TagB", ExpressionType::Tag, 1)
            .expect("valid");
        assert_eq!(s.tags_set.len(), 2);
        assert!(s.matches_tag(Some("TagA")));
        assert!(!s.matches_tag(Some("TagC")));
        assert!(!s.matches_tag(None));
        // "TagA".hashCode() in Java is 2598919.
        assert!(s.code_set.contains(&2_598_919));
        assert!(s.matches_tags_code(2_598_919));
        assert!(!s.matches_tags_code(0));
        let all =
            SubscriptionData::from_expression("T", " ", ExpressionType::Tag, 1).expect("valid");
        assert!(all.is_match_all());
        assert!(all.matches_tag(None));
    }

    #[test]
    fn heartbeat_json_is_parsed_leniently() {
        let v = serde_json::json!({"topic":"T","subString":"TagA","subVersion":"17","tagsSet":["TagA"]});
        let s = SubscriptionData::from_heartbeat_json(&v, None).expect("valid");
        assert_eq!(s.sub_version, 17);
        assert_eq!(s.expression_type, ExpressionType::Tag);
        assert!(s.matches_tag(Some("TagA")));
    }

    #[test]
    fn sql92_subscriptions_compile_once_and_reject_bad_text() {
        let v = serde_json::json!({"topic":"T","subString":"a > 1","expressionType":"SQL92",
                                   "subVersion":1});
        let first = SubscriptionData::from_heartbeat_json(&v, None).expect("valid");
        let filter = first.sql92.clone().expect("compiled");
        assert!(first.is_match_all(), "no tag filtering for SQL92");
        let again = SubscriptionData::from_heartbeat_json(&v, Some(&first)).expect("valid");
        assert!(Rc::ptr_eq(&filter, again.sql92.as_ref().expect("compiled")));
        let changed = serde_json::json!({"topic":"T","subString":"a > 2","expressionType":"SQL92"});
        let other = SubscriptionData::from_heartbeat_json(&changed, Some(&first)).expect("valid");
        assert_eq!(other.sql92.as_ref().map(|f| f.source()), Some("a > 2"));

        let bad = SubscriptionData::from_expression("T", "a >", ExpressionType::Sql92, 1)
            .expect_err("invalid");
        assert!(matches!(bad, BrokerError::SubscriptionParseFailed(_)));
        assert!(
            bad.to_string().contains("invalid SQL92 expression"),
            "{bad}"
        );
        let tag = SubscriptionData::from_expression("T", "a", ExpressionType::Tag, 1).expect("tag");
        assert!(tag.sql92.is_none());
    }
}
