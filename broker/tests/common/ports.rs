//! Loopback ports for the brokers a test starts: picked below the kernel's ephemeral range
//! (32768 and up), so no client's outgoing connection can take one between the pick and the
//! broker's bind, and never handed out twice by one test process (a broker's shard ports, its
//! nameserver port and its metrics port must all differ).
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};

/// Picks come from `PORT_LOW..PORT_HIGH` (below 32768).
const PORT_LOW: u16 = 10_000;
const PORT_HIGH: u16 = 32_000;

/// Ports this process handed out, and the generator's state.
static PICKED: Mutex<(BTreeSet<u16>, u64)> = Mutex::new((BTreeSet::new(), 0));

/// `count` consecutive free loopback ports; returns the first.
pub fn free_port_block(count: u16) -> Result<u16> {
    let mut picked = PICKED.lock().unwrap_or_else(|e| e.into_inner());
    if picked.1 == 0 {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        picked.1 = nanos ^ (u64::from(std::process::id()) << 32) | 1;
    }
    for _ in 0..1_000 {
        // xorshift64
        let mut x = picked.1;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        picked.1 = x;
        let span = u64::from(PORT_HIGH - PORT_LOW - count);
        let base = PORT_LOW + (x % span) as u16;
        if (base..base + count).any(|p| picked.0.contains(&p)) {
            continue;
        }
        // Hold every port of the block while checking, so the block is free as a whole.
        let held: Vec<TcpListener> = (base..base + count)
            .map_while(|p| TcpListener::bind(("127.0.0.1", p)).ok())
            .collect();
        if held.len() == usize::from(count) {
            picked.0.extend(base..base + count);
            return Ok(base);
        }
    }
    bail!("no {count} consecutive free loopback ports in {PORT_LOW}..{PORT_HIGH}")
}

/// One free loopback port.
pub fn free_port() -> Result<u16> {
    free_port_block(1)
}

/// Two consecutive free loopback ports `(p, p + 1)` (for a 2-shard broker); returns `p`.
pub fn free_port_pair() -> Result<u16> {
    free_port_block(2)
}
