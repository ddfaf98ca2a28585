//! The upstream side: forwarding to resolvers and caching what they answer.

pub mod cache;
pub mod forward;
pub mod transport;

pub use cache::{AnswerCache, CacheLimits, Variant};
pub use forward::{ForwardError, Forwarder, Timeouts, UpstreamError, UpstreamQuery};
