//! End-to-end tests: a real upstream DNS server and the real `sinkhole` binary on loopback,
//! queried over UDP and TCP.

mod blocking;
mod certs;
mod cli;
mod events;
mod feeds;
mod forwarding;
mod harness;
mod http_feed;
mod ingestion;
mod malformed;
mod policy_reload;
mod reload;
mod syslog;
mod upstream;
mod zone_transfer;
