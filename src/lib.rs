//! sinkhole: a forwarding DNS resolver that answers queries for IOC domains with a sinkhole
//! and logs each such query as a Microsoft Sentinel (ASIM DNS) event.
//!
//! # Layout
//!
//! The modules follow a query through the server:
//!
//! - [`listener`]: UDP and TCP sockets in, answers out.
//! - [`dns`]: the wire format: reading queries, writing local answers, aging cached ones.
//! - [`handler`]: one query's path: access control, policy, sinkhole, cache, upstream.
//! - [`policy`]: one immutable snapshot of every list and rule, and the decision it makes.
//! - [`sinkhole`]: the answer a blocked query gets, by the matched entry's response.
//! - [`upstream`]: forwarding to the upstream resolvers, and the answer cache.
//! - [`events`]: sinkhole events, queued off the query path and written as JSON lines.
//! - [`lists`]: reading IOC and allow lists, in every feed format, into triggers and rules.
//! - [`reload`]: watching the config and list files and publishing a new policy when they
//!   change; policy and heartbeat events.
//! - [`sources`]: downloading lists over HTTP(S) to their files.
//! - [`tls`]: the CAs and certificates of the TLS connections sinkhole opens.
//! - [`config`]: the configuration file.
//! - [`server`] and [`cli`]: wiring, and the command line; [`memory`]: RSS figures.

pub mod cli;
pub mod config;
pub mod dns;
pub mod events;
pub mod handler;
pub mod listener;
pub mod lists;
pub mod memory;
pub mod policy;
pub mod reload;
pub mod server;
pub mod sinkhole;
pub mod sources;
pub mod tls;
pub mod upstream;
