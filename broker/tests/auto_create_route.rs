//! No route race on auto-create: the SEND that creates a topic is answered only once the
//! nameserver's route for it lists every shard, so the first route a brand-new client fetches
//! is complete (a partial one would stick in the client for 30 s, and a consumer would miss
//! the queues of the shards it lacks).

mod common;

use anyhow::{Context, Result};
use common::*;

/// 200 fresh topics, one send each (alternating between the two shards): right after each
/// SEND_OK, a new connection to the nameserver gets a route that lists both shards.
///
/// ASYNC_FLUSH answers without waiting for the disk, and busy processes on every CPU delay the
/// other shard's re-registration: without the route wait, 33 of 200 first routes listed one
/// shard only (measured on the 2-core development machine, 2026-12-02).
#[test]
fn first_route_after_an_auto_creating_send_lists_every_shard() -> Result<()> {
    let broker = Broker::start_sharded_with(2, &["flushDiskType=ASYNC_FLUSH"], &[])?;
    let _load = Load::start(broker.store_dir.parent().context("store parent")?)?;
    let mut shards = [
        Client::connect(broker.shard_addr(0))?,
        Client::connect(broker.shard_addr(1))?,
    ];
    let mut incomplete = Vec::new();
    for i in 0..200usize {
        let topic = format!("FreshTopic{i}");
        let client = &mut shards[i % 2];
        let r = client.send_message(&topic, 0, b"first message", "")?;
        assert_success(&r);
        let names = route_broker_names(broker.namesrv_addr(), &topic)?;
        if names != ["test-broker_0", "test-broker_1"] {
            incomplete.push(format!("{topic}: {names:?}"));
        }
    }
    assert!(
        incomplete.is_empty(),
        "{} of 200 first routes were incomplete: {incomplete:?}",
        incomplete.len()
    );
    Ok(())
}
