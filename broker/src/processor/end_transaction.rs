//! END_TRANSACTION (37): the producer's decision about a half message, REMOTING.md §2.6, §7.6.
//! Usually oneway (then nothing is answered); the work is in `crate::transaction`.

use std::rc::Rc;

use engine::FlushMode;

use super::{field, field_bool, field_str, success};
use crate::error::BrokerError;
use crate::remoting::RemotingCommand;
use crate::shard::Shard;
use crate::transaction::{self, tran_type, Decision, EndTransaction};

/// END_TRANSACTION: commit (8) writes the real message and marks the half done, rollback (12)
/// only marks it done, unknown (0) does nothing. A non-oneway request is answered once the op
/// record is durable (SYNC_FLUSH).
pub async fn end_transaction(
    shard: &Rc<Shard>,
    req: &RemotingCommand,
) -> Result<RemotingCommand, BrokerError> {
    let producer_group = field_str(req, "producerGroup")?;
    let tran_state_table_offset: i64 = field(req, "tranStateTableOffset")?;
    let commit_log_offset: i64 = field(req, "commitLogOffset")?;
    let commit_or_rollback: i32 = field(req, "commitOrRollback")?;
    let is_from_check = field_bool(req, "fromTransactionCheck");
    let decision = match commit_or_rollback {
        tran_type::COMMIT => Decision::Commit,
        tran_type::ROLLBACK => Decision::Rollback,
        tran_type::NOT_TYPE => {
            log::info!(
                "shard {}: producer group {producer_group} left transaction {} undecided \
                 (from check: {is_from_check}, remark: {:?})",
                shard.id(),
                req.ext("transactionId").or(req.ext("msgId")).unwrap_or("?"),
                req.remark
            );
            return Ok(success(req));
        }
        other => {
            return Err(BrokerError::InvalidParameter(format!(
                "commitOrRollback {other} is not 0, 8 or 12"
            )))
        }
    };
    let end = EndTransaction {
        producer_group,
        tran_state_table_offset,
        commit_log_offset,
        decision,
        is_from_check,
    };
    let ticket = transaction::end_transaction(shard, &end).await?;
    if let Some(ticket) = ticket {
        let is_sync = shard.store().config().flush_mode == FlushMode::Sync;
        if is_sync && !req.is_oneway() {
            ticket.await.map_err(|e| {
                BrokerError::SystemError(format!("the transaction decision is not durable: {e}"))
            })?;
        }
    }
    Ok(success(req))
}
