//! Topics: UPDATE_AND_CREATE_TOPIC (17), DELETE_TOPIC_IN_BROKER (215), GET_ALL_TOPIC_CONFIG
//! (21), GET_BROKER_CONFIG (26), auto-create from TBW102, and topics.json surviving a restart.

mod common;

use anyhow::Result;
use broker::remoting::{RemotingCommand, RequestCode, ResponseCode};
use common::*;

fn create(topic: &str, queues: i32) -> RemotingCommand {
    RemotingCommand::request(RequestCode::UPDATE_AND_CREATE_TOPIC)
        .with_ext("topic", topic)
        .with_ext("defaultTopic", "TBW102")
        .with_ext("readQueueNums", queues)
        .with_ext("writeQueueNums", queues)
        .with_ext("perm", 6)
        .with_ext("topicFilterType", "SINGLE_TAG")
        .with_ext("topicSysFlag", 0)
        .with_ext("order", "false")
}

fn topic_table(c: &mut Client) -> Result<serde_json::Value> {
    let r = c.request(RemotingCommand::request(RequestCode::GET_ALL_TOPIC_CONFIG))?;
    assert_success(&r);
    let v: serde_json::Value = serde_json::from_slice(&r.body)?;
    Ok(v["topicConfigTable"].clone())
}

/// An admin-created topic has the asked queue count, survives a restart, and is deleted.
#[test]
fn create_use_restart_and_delete_a_topic() -> Result<()> {
    let mut broker = Broker::start()?;
    let mut c = broker.client()?;
    assert_success(&c.request(create("AdminTopic", 12))?);
    let table = topic_table(&mut c)?;
    assert_eq!(table["AdminTopic"]["writeQueueNums"], 12);
    assert_eq!(table["AdminTopic"]["perm"], 6);
    assert!(
        table["TBW102"].is_object(),
        "the auto-create template exists"
    );
    assert_success(&c.send_message("AdminTopic", 11, b"q11", "")?);

    let r = c.request(create("bad name", 4))?;
    assert_eq!(r.code, ResponseCode::INVALID_PARAMETER, "{}", code_of(&r));
    let r = c.request(create("SCHEDULE_TOPIC_XXXX", 4))?;
    assert_eq!(r.code, ResponseCode::INVALID_PARAMETER, "{}", code_of(&r));

    drop(c);
    broker.restart()?;
    let mut c = broker.client()?;
    assert_eq!(topic_table(&mut c)?["AdminTopic"]["readQueueNums"], 12);
    let r = c.pull("g", "AdminTopic", 11, 0, PULL_FLAG_SUBSCRIPTION, "*", 0)?;
    assert_success(&r);

    let r = c.request(
        RemotingCommand::request(RequestCode::DELETE_TOPIC_IN_BROKER)
            .with_ext("topic", "AdminTopic"),
    )?;
    assert_success(&r);
    assert!(topic_table(&mut c)?.get("AdminTopic").is_none());
    let r = c.pull("g", "AdminTopic", 0, 0, PULL_FLAG_SUBSCRIPTION, "*", 0)?;
    assert_eq!(r.code, ResponseCode::TOPIC_NOT_EXIST, "{}", code_of(&r));
    Ok(())
}

/// A send to an unknown topic creates it from TBW102 with min(4, template) queues.
#[test]
fn send_auto_creates_from_the_template() -> Result<()> {
    let broker = Broker::start()?;
    let mut c = broker.client()?;
    assert_success(&c.send_message("AutoTopic", 0, b"x", "")?);
    let table = topic_table(&mut c)?;
    assert_eq!(table["AutoTopic"]["writeQueueNums"], 4);
    assert_eq!(table["AutoTopic"]["perm"], 6, "INHERIT is dropped");
    Ok(())
}

/// Without auto-create, a send to an unknown topic is TOPIC_NOT_EXIST.
#[test]
fn unknown_topic_without_auto_create_is_topic_not_exist() -> Result<()> {
    let broker = Broker::start_with(&["autoCreateTopicEnable=false"])?;
    let mut c = broker.client()?;
    let r = c.send_message("NoAuto", 0, b"x", "")?;
    assert_eq!(r.code, ResponseCode::TOPIC_NOT_EXIST, "{}", code_of(&r));
    Ok(())
}

/// GET_BROKER_CONFIG answers properties text and a data version.
#[test]
fn get_broker_config_lists_settings() -> Result<()> {
    let broker = Broker::start()?;
    let mut c = broker.client()?;
    let r = c.request(RemotingCommand::request(RequestCode::GET_BROKER_CONFIG))?;
    assert_success(&r);
    let text = String::from_utf8(r.body.to_vec())?;
    assert!(text.contains("brokerClusterName=TestCluster\n"), "{text}");
    assert!(text.contains("flushDiskType=SYNC_FLUSH\n"), "{text}");
    assert!(r.ext("version").is_some_and(|v| v.contains("counter")));
    Ok(())
}
