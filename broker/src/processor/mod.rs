//! Request code -> processor. Each family lives in its own file (`send`, `pull`,
//! `consumer_offset`, `client`, `admin`, `query`, `end_transaction`); each returns
//! `Result<RemotingCommand, BrokerError>`, and `dispatch` below is the one place an error
//! becomes a response (`BrokerError::response_code()` + its text as the remark). Oneway
//! requests never get an answer.

pub mod admin;
pub mod client;
pub mod consumer_offset;
pub mod end_transaction;
pub mod pull;
pub mod query;
pub mod send;
pub mod stats;

use std::rc::Rc;
use std::str::FromStr;

use crate::error::BrokerError;
use crate::remoting::connection::ConnectionCtx;
use crate::remoting::{RemotingCommand, RequestCode};
use crate::shard::Shard;

/// Routes one request to its processor and turns the outcome into a response.
pub async fn dispatch(
    shard: &Rc<Shard>,
    conn: &Rc<ConnectionCtx>,
    req: RemotingCommand,
) -> Option<RemotingCommand> {
    let opaque = req.opaque;
    let is_oneway = req.is_oneway();
    let code = req.code;
    let started = std::time::Instant::now();
    let result = match code {
        RequestCode::SEND_MESSAGE
        | RequestCode::SEND_MESSAGE_V2
        | RequestCode::SEND_BATCH_MESSAGE => send::send_message(shard, conn, &req).await,
        RequestCode::CONSUMER_SEND_MSG_BACK => send::consumer_send_msg_back(shard, &req).await,
        RequestCode::END_TRANSACTION => end_transaction::end_transaction(shard, &req).await,
        RequestCode::PULL_MESSAGE | RequestCode::LITE_PULL_MESSAGE => {
            pull::pull_message(shard, &req).await
        }
        RequestCode::QUERY_CONSUMER_OFFSET => consumer_offset::query_consumer_offset(shard, &req),
        RequestCode::UPDATE_CONSUMER_OFFSET => consumer_offset::update_consumer_offset(shard, &req),
        RequestCode::GET_MAX_OFFSET => consumer_offset::get_max_offset(shard, &req),
        RequestCode::GET_MIN_OFFSET => consumer_offset::get_min_offset(shard, &req),
        RequestCode::SEARCH_OFFSET_BY_TIMESTAMP => {
            consumer_offset::search_offset_by_timestamp(shard, &req).await
        }
        RequestCode::GET_EARLIEST_MSG_STORETIME => {
            consumer_offset::get_earliest_msg_store_time(shard, &req).await
        }
        RequestCode::HEART_BEAT => client::heart_beat(shard, conn, &req).await,
        RequestCode::UNREGISTER_CLIENT => client::unregister_client(shard, conn, &req),
        RequestCode::GET_CONSUMER_LIST_BY_GROUP => client::get_consumer_list_by_group(shard, &req),
        RequestCode::CHECK_CLIENT_CONFIG => client::check_client_config(shard, &req),
        RequestCode::LOCK_BATCH_MQ => client::lock_batch_mq(shard, &req),
        RequestCode::UNLOCK_BATCH_MQ => client::unlock_batch_mq(shard, &req),
        RequestCode::UPDATE_AND_CREATE_TOPIC => admin::update_and_create_topic(shard, &req).await,
        RequestCode::DELETE_TOPIC_IN_BROKER => admin::delete_topic_in_broker(shard, &req).await,
        RequestCode::GET_ALL_TOPIC_CONFIG => admin::get_all_topic_config(shard, &req),
        RequestCode::GET_BROKER_CONFIG => admin::get_broker_config(shard, &req),
        RequestCode::GET_ALL_CONSUMER_OFFSET => admin::get_all_consumer_offset(shard, &req),
        RequestCode::QUERY_MESSAGE => query::query_message(shard, &req).await,
        RequestCode::VIEW_MESSAGE_BY_ID => query::view_message_by_id(shard, &req).await,
        RequestCode::GET_BROKER_RUNTIME_INFO => stats::get_broker_runtime_info(shard, &req),
        RequestCode::GET_TOPIC_STATS_INFO => stats::get_topic_stats_info(shard, &req).await,
        RequestCode::GET_CONSUMER_CONNECTION_LIST => {
            stats::get_consumer_connection_list(shard, &req)
        }
        RequestCode::GET_CONSUME_STATS => stats::get_consume_stats(shard, &req).await,
        _ => Err(BrokerError::RequestCodeNotSupported { code }),
    };
    shard
        .metrics()
        .observe(code, &req, &result, started.elapsed());
    if is_oneway {
        if let Err(e) = result {
            log::debug!("shard {}: oneway request {code} failed: {e}", shard.id());
        }
        return None;
    }
    let mut response = match result {
        Ok(response) => response,
        Err(e) => {
            if e.response_code() == crate::remoting::ResponseCode::SYSTEM_ERROR {
                log::warn!("shard {}: request {code} failed: {e}", shard.id());
            }
            RemotingCommand::response(e.response_code(), opaque, Some(e.to_string()))
        }
    };
    response.opaque = opaque;
    Some(response)
}

/// A required header field.
pub(crate) fn field_str<'a>(
    req: &'a RemotingCommand,
    name: &'static str,
) -> Result<&'a str, BrokerError> {
    req.ext(name).ok_or(BrokerError::missing(name))
}

/// A required header field parsed as a number (or anything `FromStr`).
pub(crate) fn field<T: FromStr>(req: &RemotingCommand, name: &'static str) -> Result<T, BrokerError>
where
    T::Err: std::fmt::Display,
{
    parse_field(name, field_str(req, name)?)
}

/// An optional header field; present but unparsable is an error.
pub(crate) fn field_opt<T: FromStr>(
    req: &RemotingCommand,
    name: &'static str,
) -> Result<Option<T>, BrokerError>
where
    T::Err: std::fmt::Display,
{
    match req.ext(name) {
        None => Ok(None),
        Some(s) if s.trim().is_empty() => Ok(None),
        Some(s) => parse_field(name, s).map(Some),
    }
}

fn parse_field<T: FromStr>(name: &'static str, s: &str) -> Result<T, BrokerError>
where
    T::Err: std::fmt::Display,
{
    s.trim()
        .parse()
        .map_err(|e: T::Err| BrokerError::HeaderFieldInvalid {
            field: name,
            reason: e.to_string(),
        })
}

/// Java's `Boolean.parseBoolean`: "true" in any case is true, anything else (or absent) false.
pub(crate) fn field_bool(req: &RemotingCommand, name: &str) -> bool {
    req.ext(name)
        .is_some_and(|s| s.trim().eq_ignore_ascii_case("true"))
}

/// A SUCCESS response to `req`.
pub(crate) fn success(req: &RemotingCommand) -> RemotingCommand {
    RemotingCommand::response(crate::remoting::ResponseCode::SUCCESS, req.opaque, None)
}

/// A queue id header value as the engine's type; negative ids are invalid here.
pub(crate) fn queue_id_field(req: &RemotingCommand) -> Result<u32, BrokerError> {
    let queue_id: i32 = field(req, "queueId")?;
    u32::try_from(queue_id)
        .map_err(|_| BrokerError::InvalidParameter(format!("queueId[{queue_id}] is illegal")))
}
