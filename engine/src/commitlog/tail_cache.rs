//! Recent commitlog bytes kept in memory: under O_DIRECT there is no page cache, so consumers
//! reading near the tail are served from here. Chunks are the batches the flusher took, in
//! commitlog order; consecutive chunks may overlap by the partial page that was rewritten.
//! Invariant: a chunk is evicted only once it has been written to its file.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::record::{peek_header, Peek};

#[derive(Debug)]
struct Chunk {
    start: u64,
    bytes: Bytes,
}

impl Chunk {
    fn end(&self) -> u64 {
        self.start + self.bytes.len() as u64
    }
}

/// Bounded cache of recently appended bytes.
#[derive(Debug, Default)]
pub(crate) struct TailCache {
    chunks: VecDeque<Chunk>,
    size_bytes: usize,
}

impl TailCache {
    /// Adds the bytes at commitlog offset `start`.
    pub(crate) fn push(&mut self, start: u64, bytes: Bytes) {
        self.size_bytes += bytes.len();
        self.chunks.push_back(Chunk { start, bytes });
    }

    /// Drops the oldest chunks (only those ending at or before `written`) until the cache
    /// holds at most `size_max` bytes.
    pub(crate) fn evict(&mut self, size_max: usize, written: u64) {
        while self.size_bytes > size_max {
            match self.chunks.front() {
                Some(c) if c.end() <= written => {
                    self.size_bytes -= c.bytes.len();
                    self.chunks.pop_front();
                }
                _ => break,
            }
        }
    }

    /// Drops every chunk that starts before `offset` (retention).
    pub(crate) fn drop_before(&mut self, offset: u64) {
        while let Some(c) = self.chunks.front() {
            if c.start >= offset {
                break;
            }
            self.size_bytes -= c.bytes.len();
            self.chunks.pop_front();
        }
    }

    /// The record at `offset`, `size` bytes (or read from its header when `size` is None),
    /// if a chunk holds it whole.
    pub(crate) fn get(&self, offset: u64, size: Option<u32>) -> Option<Bytes> {
        for c in self.chunks.iter().rev() {
            if c.start > offset || offset >= c.end() {
                continue;
            }
            let at = (offset - c.start) as usize;
            let size = match size {
                Some(s) => s as usize,
                None => match peek_header(c.bytes.get(at..)?) {
                    Peek::Record { size } => size as usize,
                    _ => return None,
                },
            };
            if at + size <= c.bytes.len() {
                return Some(c.bytes.slice(at..at + size));
            }
            return None;
        }
        None
    }

    /// Bytes held.
    pub(crate) fn size_bytes(&self) -> usize {
        self.size_bytes
    }
}
