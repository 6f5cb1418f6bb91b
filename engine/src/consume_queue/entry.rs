//! The 20-byte consume-queue entry (REMOTING.md §5.3):
//! `[commit_log_offset i64][size i32][tags_code i64]`, big-endian.
#![deny(clippy::indexing_slicing)]

/// Size of one entry on disk.
pub const CQ_ENTRY_SIZE_BYTES: usize = 20;
const _: () = assert!(CQ_ENTRY_SIZE_BYTES == 8 + 4 + 8);

/// One consume-queue entry: where queue offset n's record is and its tag hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CqEntry {
    /// Commitlog offset of the record.
    pub commit_log_offset: u64,
    /// Record size (TOTALSIZE).
    pub size: u32,
    /// Java hashCode of TAGS (0 when none).
    pub tags_code: i64,
}

impl CqEntry {
    /// The blank entry Java writes before a queue that starts mid-file: `(0, i32::MAX, 0)`.
    pub const BLANK: CqEntry = CqEntry {
        commit_log_offset: 0,
        size: i32::MAX as u32,
        tags_code: 0,
    };

    /// The 20 bytes of this entry.
    pub fn encode(&self) -> [u8; CQ_ENTRY_SIZE_BYTES] {
        let mut out = [0u8; CQ_ENTRY_SIZE_BYTES];
        let (a, rest) = out.split_at_mut(8);
        let (b, c) = rest.split_at_mut(4);
        a.copy_from_slice(&(self.commit_log_offset as i64).to_be_bytes());
        b.copy_from_slice(&(self.size as i32).to_be_bytes());
        c.copy_from_slice(&self.tags_code.to_be_bytes());
        out
    }

    /// Parses 20 bytes; None when short. All-zero bytes decode to an entry of size 0
    /// (never written), which callers treat as the end.
    pub fn decode(b: &[u8]) -> Option<CqEntry> {
        let o: [u8; 8] = b.get(0..8)?.try_into().ok()?;
        let s: [u8; 4] = b.get(8..12)?.try_into().ok()?;
        let t: [u8; 8] = b.get(12..20)?.try_into().ok()?;
        Some(CqEntry {
            commit_log_offset: i64::from_be_bytes(o) as u64,
            size: i32::from_be_bytes(s) as u32,
            tags_code: i64::from_be_bytes(t),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cq_entry_golden_bytes() {
        let e = CqEntry {
            commit_log_offset: 0x0102_0304_0506_0708,
            size: 300,
            tags_code: -2,
        };
        let golden: [u8; 20] = [
            0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // commit_log_offset
            0x00, 0x00, 0x01, 0x2C, // size 300
            0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE, // tags_code -2
        ];
        assert_eq!(e.encode(), golden);
        assert_eq!(CqEntry::decode(&golden), Some(e));
        assert_eq!(CqEntry::decode(&golden[..19]), None);
        let blank = CqEntry::BLANK.encode();
        assert_eq!(&blank[8..12], &[0x7F, 0xFF, 0xFF, 0xFF]);
    }
}
