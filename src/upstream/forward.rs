//! Forwarding to the upstream resolvers through hickory-resolver's name server pools: UDP
//! first, TCP when an answer is truncated, the next upstream when one fails or times out, and
//! one deadline for the whole exchange.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use hickory_proto::op::{
    DnsRequest, DnsRequestOptions, Message, MessageType, OpCode, Query, ResponseCode,
};
use hickory_proto::rr::{Name, RecordType};
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolverOpts, ServerOrderingStrategy,
};
use hickory_resolver::net::xfer::DnsHandle;
use hickory_resolver::net::{DnsError, NetError, NoRecords};
use hickory_resolver::{NameServerPool, PoolContext, TlsConfig};

use super::transport::Connector;

/// The upstreams could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("{path}: cannot read system resolvers: {reason}")]
    ResolvConf { path: String, reason: String },
    #[error("no upstream resolvers: none configured and none in {path}")]
    NoUpstreams { path: String },
    #[error("cannot set up TLS for upstreams: {0}")]
    Tls(String),
}

/// Why forwarding gave no answer. The client gets SERVFAIL.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("no upstream answered within {0:?}")]
    Timeout(Duration),
    #[error("upstream exchange failed: {0}")]
    Failed(String),
}

/// What to ask upstream on a client's behalf.
#[derive(Debug, Clone)]
pub struct UpstreamQuery {
    pub name: Name,
    pub qtype: u16,
    pub dnssec_ok: bool,
    pub checking_disabled: bool,
}

/// The upstream resolvers, tried in order from the one that answered last.
///
/// Each upstream has a pool of its own, so each attempt gets its own timeout and a dead
/// upstream costs one attempt, not the whole deadline. Once an upstream fails, the next one
/// becomes the first choice until it fails in turn.
#[derive(Clone)]
pub struct Forwarder {
    upstreams: Arc<[(SocketAddr, NameServerPool<Connector>)]>,
    preferred: Arc<AtomicUsize>,
    timeouts: Timeouts,
}

/// How long the upstreams may take.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// For the whole exchange, across every upstream tried.
    pub total: Duration,
    /// For one upstream, before the next is tried.
    pub attempt: Duration,
}

impl Forwarder {
    /// Uses `servers`, or the nameservers of `resolv_conf` when `servers` is empty.
    pub fn new(
        servers: &[SocketAddr],
        resolv_conf: &Path,
        timeouts: Timeouts,
    ) -> Result<Self, UpstreamError> {
        let servers: Vec<SocketAddr> = if servers.is_empty() {
            system_resolvers(resolv_conf)?
        } else {
            servers.to_vec()
        };

        let mut options = ResolverOpts::default();
        options.timeout = timeouts.attempt.min(timeouts.total);
        options.attempts = 1;
        options.num_concurrent_reqs = 1;
        options.server_ordering_strategy = ServerOrderingStrategy::UserProvidedOrder;
        options.edns0 = true;
        let tls = TlsConfig::new().map_err(|error| UpstreamError::Tls(error.to_string()))?;
        let context = Arc::new(PoolContext::new(options, tls));
        let connector = Connector::default();

        let upstreams = servers
            .iter()
            .map(|addr| {
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                let config = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
                let pool =
                    NameServerPool::from_config([config], context.clone(), connector.clone());
                (*addr, pool)
            })
            .collect();
        Ok(Self {
            upstreams,
            preferred: Arc::new(AtomicUsize::new(0)),
            timeouts,
        })
    }

    pub fn servers(&self) -> Vec<SocketAddr> {
        self.upstreams.iter().map(|(addr, _)| *addr).collect()
    }

    /// Asks the upstreams. A negative answer (NXDOMAIN, NODATA) is an answer too, returned as
    /// a message with that rcode. An upstream that fails, or answers SERVFAIL or REFUSED, is
    /// followed by the next; when all do, the last error rcode is returned if there was one.
    pub async fn forward(&self, query: &UpstreamQuery) -> Result<Message, ForwardError> {
        let request = request_for(query);
        let deadline = tokio::time::Instant::now() + self.timeouts.total;
        let first = self.preferred.load(Ordering::Relaxed);
        let count = self.upstreams.len();
        let mut last_answer = None;
        let mut last_error = ForwardError::Timeout(self.timeouts.total);

        for offset in 0..count {
            let index = (first + offset) % count;
            let (addr, pool) = &self.upstreams[index];
            let exchange = async { pool.send(request.clone()).next().await };
            let outcome = match tokio::time::timeout_at(deadline, exchange).await {
                Err(_) => break,
                Ok(None) => Err(ForwardError::Failed(format!("{addr}: no response"))),
                Ok(Some(Ok(response))) => Ok(response.into_message()),
                Ok(Some(Err(error))) => negative_answer(&request, error, *addr),
            };
            match outcome {
                Ok(message) if !retry_elsewhere(&message) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    return Ok(message);
                }
                Ok(message) => last_answer = Some(message),
                Err(error) => last_error = error,
            }
            tracing::debug!(upstream = %addr, "upstream failed; trying the next");
            if count > 1 && index == first {
                self.preferred.store((index + 1) % count, Ordering::Relaxed);
            }
        }
        last_answer.ok_or(last_error)
    }
}

fn request_for(query: &UpstreamQuery) -> DnsRequest {
    let mut options = DnsRequestOptions::default();
    options.use_edns = true;
    options.edns_payload_len = crate::dns::answer::ADVERTISED_UDP_SIZE;
    options.edns_set_dnssec_ok = query.dnssec_ok;
    options.recursion_desired = true;
    let question = Query::query(query.name.clone(), RecordType::from(query.qtype));
    let mut request = DnsRequest::from_query(question, options);
    request.metadata.checking_disabled = query.checking_disabled;
    request
}

/// SERVFAIL and REFUSED say nothing about the name: another upstream may do better.
fn retry_elsewhere(message: &Message) -> bool {
    matches!(
        message.metadata.response_code,
        ResponseCode::ServFail | ResponseCode::Refused
    )
}

/// Turns the pool's errors that carry an upstream's answer back into that answer.
fn negative_answer(
    request: &DnsRequest,
    error: NetError,
    upstream: SocketAddr,
) -> Result<Message, ForwardError> {
    let (rcode, authorities) = match error {
        NetError::Dns(DnsError::NoRecordsFound(NoRecords {
            response_code,
            authorities,
            ..
        })) => (
            response_code,
            authorities
                .map(|records| records.to_vec())
                .unwrap_or_default(),
        ),
        NetError::Dns(DnsError::ResponseCode(code)) => (code, Vec::new()),
        other => return Err(ForwardError::Failed(format!("{upstream}: {other}"))),
    };
    let mut message = Message::new(0, MessageType::Response, OpCode::Query);
    message.metadata.response_code = rcode;
    message.metadata.recursion_available = true;
    message.add_queries(request.queries.iter().cloned());
    message.insert_authorities(authorities);
    Ok(message)
}

fn system_resolvers(path: &Path) -> Result<Vec<SocketAddr>, UpstreamError> {
    let display = || path.display().to_string();
    let text = std::fs::read(path).map_err(|error| UpstreamError::ResolvConf {
        path: display(),
        reason: error.to_string(),
    })?;
    let (config, _options) =
        hickory_resolver::system_conf::parse_resolv_conf(&text).map_err(|error| {
            UpstreamError::ResolvConf {
                path: display(),
                reason: error.to_string(),
            }
        })?;
    let mut servers: Vec<SocketAddr> = Vec::new();
    for server in config.name_servers() {
        let addr = SocketAddr::new(server.ip, 53);
        if !servers.contains(&addr) {
            servers.push(addr);
        }
    }
    if servers.is_empty() {
        return Err(UpstreamError::NoUpstreams { path: display() });
    }
    Ok(servers)
}
