//! StoreCheckpoint: what is durable. Two 4 KiB slots written alternately, each with a
//! sequence number and a CRC, so a torn write of one slot leaves the other readable.
//!
//! Slot layout (big-endian): `[magic u32 "PTCK"][version u32][sequence u64]
//! [commit_log_offset u64][dispatch_offset u64][is_clean u8][crc32 u32 over the bytes before]`.
//! Invariant: `dispatch_offset <= commit_log_offset`; everything before `commit_log_offset`
//! is durable in the commitlog, and every consume-queue and index entry for records before
//! `dispatch_offset` is durable in its files.
#![deny(clippy::indexing_slicing)]

use std::path::Path;
use std::rc::Rc;

use crate::config::PAGE_SIZE_BYTES;
use crate::disk::{open_durable, Disk, DiskFile};
use crate::error::IoError;

const MAGIC: u32 = u32::from_be_bytes(*b"PTCK");
const VERSION: u32 = 1;
const BODY_SIZE_BYTES: usize = 4 + 4 + 8 + 8 + 8 + 1;

/// The checkpoint's content.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Checkpoint {
    /// Increases with every write; the higher valid slot wins.
    pub sequence: u64,
    /// Everything before it is durable in the commitlog.
    pub commit_log_offset: u64,
    /// CQ and index entries for records before it are durable.
    pub dispatch_offset: u64,
    /// Written by a clean shutdown (nothing after `commit_log_offset`).
    pub is_clean: bool,
}

impl Checkpoint {
    /// One slot's bytes (padded to 4 KiB by the disk).
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(BODY_SIZE_BYTES + 4);
        v.extend_from_slice(&MAGIC.to_be_bytes());
        v.extend_from_slice(&VERSION.to_be_bytes());
        v.extend_from_slice(&self.sequence.to_be_bytes());
        v.extend_from_slice(&self.commit_log_offset.to_be_bytes());
        v.extend_from_slice(&self.dispatch_offset.to_be_bytes());
        v.push(u8::from(self.is_clean));
        let crc = crc32fast::hash(&v);
        v.extend_from_slice(&crc.to_be_bytes());
        v
    }

    /// Parses one slot; None when torn, blank or foreign.
    pub fn decode(b: &[u8]) -> Option<Self> {
        let body = b.get(..BODY_SIZE_BYTES)?;
        let crc = u32::from_be_bytes(
            b.get(BODY_SIZE_BYTES..BODY_SIZE_BYTES + 4)?
                .try_into()
                .ok()?,
        );
        if crc32fast::hash(body) != crc {
            return None;
        }
        let u32_at = |i: usize| -> Option<u32> {
            Some(u32::from_be_bytes(body.get(i..i + 4)?.try_into().ok()?))
        };
        let u64_at = |i: usize| -> Option<u64> {
            Some(u64::from_be_bytes(body.get(i..i + 8)?.try_into().ok()?))
        };
        if u32_at(0)? != MAGIC || u32_at(4)? != VERSION {
            return None;
        }
        Some(Self {
            sequence: u64_at(8)?,
            commit_log_offset: u64_at(16)?,
            dispatch_offset: u64_at(24)?,
            is_clean: *body.get(32)? == 1,
        })
    }
}

/// The open checkpoint file.
pub(crate) struct CheckpointFile {
    file: Rc<dyn DiskFile>,
    last: Option<Checkpoint>,
}

impl CheckpointFile {
    /// Opens (or creates) `path` and reads the newest valid slot.
    pub(crate) async fn open(disk: &dyn Disk, path: &Path) -> Result<Self, IoError> {
        let file = open_durable(disk, path).await?;
        let bytes = file.read_at(0, 2 * PAGE_SIZE_BYTES as usize).await?;
        let slot = |i: usize| {
            bytes
                .get(i * PAGE_SIZE_BYTES as usize..)
                .and_then(Checkpoint::decode)
        };
        let last = match (slot(0), slot(1)) {
            (Some(a), Some(b)) => Some(if a.sequence >= b.sequence { a } else { b }),
            (a, b) => a.or(b),
        };
        Ok(Self { file, last })
    }

    /// The newest valid checkpoint read or written.
    pub(crate) fn last(&self) -> Option<Checkpoint> {
        self.last
    }

    /// Writes the next checkpoint into the older slot and fdatasyncs.
    pub(crate) async fn write(
        &mut self,
        commit_log_offset: u64,
        dispatch_offset: u64,
        is_clean: bool,
    ) -> Result<Checkpoint, IoError> {
        let sequence = self.last.map_or(1, |c| c.sequence + 1);
        let c = Checkpoint {
            sequence,
            commit_log_offset,
            dispatch_offset,
            is_clean,
        };
        let slot = sequence % 2;
        self.file
            .write_at(slot * PAGE_SIZE_BYTES, &c.encode())
            .await?;
        self.file.sync().await?;
        self.last = Some(c);
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_torn_slot() {
        let c = Checkpoint {
            sequence: 9,
            commit_log_offset: 4096,
            dispatch_offset: 100,
            is_clean: true,
        };
        let mut b = c.encode();
        assert_eq!(Checkpoint::decode(&b), Some(c));
        if let Some(x) = b.get_mut(20) {
            *x ^= 1;
        }
        assert_eq!(Checkpoint::decode(&b), None);
        assert_eq!(Checkpoint::decode(&[0u8; 64]), None);
    }
}
