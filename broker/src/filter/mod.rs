//! Message filters a pull applies on the broker. Tag filters (`expressionType = TAG`) live
//! with the subscription (`consumer_group::subscription`: tags code, then exact tag); this
//! module holds the SQL92 property filter (`expressionType = SQL92`), which needs a small
//! language of its own. Compiled filters are plain values owned by one shard (shared with
//! `Rc` between the subscriptions that use them).

pub mod sql92;

pub use sql92::{ParseError as Sql92ParseError, Sql92Filter};
