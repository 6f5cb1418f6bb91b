//! SQL92 property filtering against a real `petrel` (REMOTING.md §2.3 expressionType, §2.5
//! CHECK_CLIENT_CONFIG, §7.3): a consumer subscribes with `a BETWEEN 3 AND 5 AND TAGS = 'x'`
//! either in the pull itself (SUBSCRIPTION flag) or by heartbeat, and pulls back exactly the
//! matching messages; a pull whose entries all fail the filter answers PULL_RETRY_IMMEDIATELY
//! past them; invalid SQL is SUBSCRIPTION_PARSE_FAILED with the reason; and with
//! `enablePropertyFilter=false` SQL92 is refused as Java refuses it.

mod common;

use anyhow::Result;
use broker::remoting::{RemotingCommand, RequestCode, ResponseCode};
use bytes::Bytes;
use common::*;

const TOPIC: &str = "SqlFilterTopic";
const GROUP: &str = "sql-group";
const EXPRESSION: &str = "a BETWEEN 3 AND 5 AND TAGS = 'x'";

/// Ten messages with `a` = 1..=10 and `TAGS` = x, except `a` = 4 which is tagged y; then one
/// with TAGS x and no `a` at all. Queue offsets 0..=10.
fn send_messages(c: &mut Client) -> Result<()> {
    for a in 1..=10 {
        let tag = if a == 4 { "y" } else { "x" };
        let a_text = a.to_string();
        let r = c.send_message(
            TOPIC,
            0,
            format!("body {a}").as_bytes(),
            &props(&[("a", &a_text), ("TAGS", tag)]),
        )?;
        assert_success(&r);
    }
    assert_success(&c.send_message(TOPIC, 0, b"no a", &props(&[("TAGS", "x")]))?);
    Ok(())
}

fn sql_pull(offset: i64, sys_flag: i32, expression: &str) -> RemotingCommand {
    pull_request(GROUP, TOPIC, 0, offset, sys_flag, expression, 0)
        .with_ext("expressionType", "SQL92")
}

fn values_of_a(pulled: &RemotingCommand) -> Result<Vec<String>> {
    Ok(decode_records(&pulled.body)?
        .iter()
        .map(|r| r.property("a").unwrap_or("-").to_string())
        .collect())
}

fn sql_heartbeat(c: &mut Client, expression: &str) -> Result<RemotingCommand> {
    let body = serde_json::json!({
        "clientID": "127.0.0.1@sql-test",
        "producerDataSet": [],
        "consumerDataSet": [{
            "groupName": GROUP,
            "consumeType": "CONSUME_PASSIVELY",
            "messageModel": "CLUSTERING",
            "consumeFromWhere": "CONSUME_FROM_FIRST_OFFSET",
            "unitMode": false,
            "subscriptionDataSet": [
                {"topic": TOPIC, "subString": expression, "tagsSet": [], "codeSet": [],
                 "subVersion": 1, "expressionType": "SQL92", "classFilterMode": false}
            ]
        }],
        "heartbeatFingerprint": 0,
        "withoutSub": false
    });
    c.request(
        RemotingCommand::request(RequestCode::HEART_BEAT).with_body(Bytes::from(body.to_string())),
    )
}

fn check_client_config(
    c: &mut Client,
    expression_type: &str,
    expression: &str,
) -> Result<RemotingCommand> {
    let body = serde_json::json!({
        "clientId": "127.0.0.1@sql-test",
        "group": GROUP,
        "subscriptionData": {"topic": TOPIC, "subString": expression, "tagsSet": [],
                             "codeSet": [], "subVersion": 1, "expressionType": expression_type,
                             "classFilterMode": false}
    });
    c.request(
        RemotingCommand::request(RequestCode::CHECK_CLIENT_CONFIG)
            .with_body(Bytes::from(body.to_string())),
    )
}

/// The expression in the pull itself (SUBSCRIPTION flag): only a=3 and a=5 come back, and the
/// next pull starts after the last scanned entry.
#[test]
fn sql92_pull_with_its_own_subscription_returns_only_matching_messages() -> Result<()> {
    let broker = Broker::start()?;
    let mut c = broker.client()?;
    send_messages(&mut c)?;

    let pulled = c.request(sql_pull(0, PULL_FLAG_SUBSCRIPTION, EXPRESSION))?;
    assert_success(&pulled);
    assert_eq!(values_of_a(&pulled)?, ["3", "5"]);
    assert_eq!(ext_i64(&pulled, "nextBeginOffset"), 11);
    assert_eq!(ext_i64(&pulled, "maxOffset"), 11);

    // Other shapes of the language, end to end.
    let cases: &[(&str, &[&str])] = &[
        ("a > 8 OR TAGS = 'y'", &["4", "9", "10"]),
        ("a IN ('1', '10')", &["1", "10"]),
        ("a IS NULL", &["-"]),
        ("NOT (a <= 9) AND a IS NOT NULL", &["10"]),
        ("a NOT BETWEEN 2 AND 10", &["1"]),
        ("TAGS <> 'x'", &["4"]),
    ];
    for (expression, expected) in cases {
        let pulled = c.request(sql_pull(0, PULL_FLAG_SUBSCRIPTION, expression))?;
        assert_success(&pulled);
        assert_eq!(values_of_a(&pulled)?, *expected, "{expression}");
    }

    // Entries 5..=10 hold nothing that matches: retry at once, past them.
    let none = c.request(sql_pull(5, PULL_FLAG_SUBSCRIPTION, EXPRESSION))?;
    assert_eq!(
        none.code,
        ResponseCode::PULL_RETRY_IMMEDIATELY,
        "{}",
        code_of(&none)
    );
    assert_eq!(none.remark.as_deref(), Some("NO_MATCHED_MESSAGE"));
    assert_eq!(ext_i64(&none, "nextBeginOffset"), 11);
    assert!(none.body.is_empty());

    // Nothing new at all: the ordinary PULL_NOT_FOUND.
    let at_end = c.request(sql_pull(11, PULL_FLAG_SUBSCRIPTION, EXPRESSION))?;
    assert_eq!(
        at_end.code,
        ResponseCode::PULL_NOT_FOUND,
        "{}",
        code_of(&at_end)
    );
    assert_eq!(ext_i64(&at_end, "nextBeginOffset"), 11);
    Ok(())
}

/// A Java push consumer checks its SQL92 subscription (46), sends it by heartbeat, then pulls
/// without the SUBSCRIPTION flag: the broker filters by the registered expression.
#[test]
fn sql92_subscription_registered_by_heartbeat_filters_pulls() -> Result<()> {
    let broker = Broker::start()?;
    let mut c = broker.client()?;
    send_messages(&mut c)?;

    assert_success(&check_client_config(&mut c, "SQL92", EXPRESSION)?);
    assert_success(&sql_heartbeat(&mut c, EXPRESSION)?);
    let pulled = c.request(sql_pull(0, 0, ""))?;
    assert_success(&pulled);
    assert_eq!(values_of_a(&pulled)?, ["3", "5"]);

    // The consumer changes its expression; the next heartbeat replaces the filter.
    assert_success(&sql_heartbeat(&mut c, "a >= 9")?);
    let pulled = c.request(sql_pull(0, 0, ""))?;
    assert_success(&pulled);
    assert_eq!(values_of_a(&pulled)?, ["9", "10"]);
    Ok(())
}

/// Invalid SQL is SUBSCRIPTION_PARSE_FAILED, with a remark that says what is wrong and where,
/// both at CHECK_CLIENT_CONFIG and on a pull; TAG subscriptions always pass the check.
#[test]
fn invalid_sql92_is_subscription_parse_failed() -> Result<()> {
    let broker = Broker::start()?;
    let mut c = broker.client()?;
    send_messages(&mut c)?;

    for bad in [
        "a BETWEEN 3 AND",
        "a = NULL",
        "a > 'x'",
        "(a = 1",
        "a = 1 garbage",
        "",
    ] {
        let r = check_client_config(&mut c, "SQL92", bad)?;
        assert_eq!(
            r.code,
            ResponseCode::SUBSCRIPTION_PARSE_FAILED,
            "{bad:?}: {}",
            code_of(&r)
        );
        let remark = r.remark.unwrap_or_default();
        assert!(
            remark.contains("invalid SQL92 expression at character"),
            "{bad:?}: {remark}"
        );

        let pulled = c.request(sql_pull(0, PULL_FLAG_SUBSCRIPTION, bad))?;
        assert_eq!(
            pulled.code,
            ResponseCode::SUBSCRIPTION_PARSE_FAILED,
            "{bad:?}: {}",
            code_of(&pulled)
        );
    }
    let r = check_client_config(&mut c, "SQL92", "a = 'never closed")?;
    assert_eq!(r.code, ResponseCode::SUBSCRIPTION_PARSE_FAILED);
    assert!(r.remark.unwrap_or_default().contains("unterminated string"));

    assert_success(&check_client_config(&mut c, "TAG", "a || b")?);
    let r = check_client_config(&mut c, "NOSUCH", "a")?;
    assert_eq!(
        r.code,
        ResponseCode::SUBSCRIPTION_PARSE_FAILED,
        "{}",
        code_of(&r)
    );
    Ok(())
}

/// With `enablePropertyFilter=false` the broker answers SQL92 as the Java broker does by
/// default: SYSTEM_ERROR "The broker does not support consumer to filter message by SQL92".
#[test]
fn sql92_is_refused_when_property_filter_is_disabled() -> Result<()> {
    let broker = Broker::start_with(&["enablePropertyFilter=false"])?;
    let mut c = broker.client()?;
    send_messages(&mut c)?;

    let r = check_client_config(&mut c, "SQL92", EXPRESSION)?;
    assert_eq!(r.code, ResponseCode::SYSTEM_ERROR, "{}", code_of(&r));
    assert!(r
        .remark
        .unwrap_or_default()
        .contains("does not support consumer to filter message by SQL92"));
    let pulled = c.request(sql_pull(0, PULL_FLAG_SUBSCRIPTION, EXPRESSION))?;
    assert_eq!(
        pulled.code,
        ResponseCode::SYSTEM_ERROR,
        "{}",
        code_of(&pulled)
    );

    // Tag subscriptions are unaffected.
    assert_success(&check_client_config(&mut c, "TAG", "*")?);
    let tags = c.pull(GROUP, TOPIC, 0, 0, PULL_FLAG_SUBSCRIPTION, "y", 0)?;
    assert_success(&tags);
    assert_eq!(values_of_a(&tags)?, ["4"]);
    Ok(())
}
