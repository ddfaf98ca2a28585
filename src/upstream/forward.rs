//! Forwarding to the upstream resolvers through hickory-resolver's name server pool: UDP
//! first, TCP when an answer is truncated, the next upstream when one fails, and one deadline
//! for the whole exchange.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use hickory_proto::op::{DnsRequest, DnsRequestOptions, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolverOpts, ServerOrderingStrategy,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::xfer::DnsHandle;
use hickory_resolver::net::{DnsError, NetError, NoRecords};
use hickory_resolver::{NameServerPool, PoolContext, TlsConfig};

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

/// The upstream resolvers.
#[derive(Clone)]
pub struct Forwarder {
    pool: NameServerPool<TokioRuntimeProvider>,
    timeout: Duration,
    servers: Arc<[SocketAddr]>,
}

impl Forwarder {
    /// Uses `servers`, or the nameservers of `resolv_conf` when `servers` is empty.
    pub fn new(
        servers: &[SocketAddr],
        resolv_conf: &Path,
        timeout: Duration,
    ) -> Result<Self, UpstreamError> {
        let servers: Vec<SocketAddr> = if servers.is_empty() {
            system_resolvers(resolv_conf)?
        } else {
            servers.to_vec()
        };

        let mut options = ResolverOpts::default();
        options.timeout = timeout;
        options.attempts = 1;
        // One upstream at a time, in the configured order: failover, not fan-out.
        options.num_concurrent_reqs = 1;
        options.server_ordering_strategy = ServerOrderingStrategy::UserProvidedOrder;
        options.edns0 = true;

        let tls = TlsConfig::new().map_err(|error| UpstreamError::Tls(error.to_string()))?;
        let context = Arc::new(PoolContext::new(options, tls));
        let configs = servers.iter().map(|addr| {
            let mut udp = ConnectionConfig::udp();
            udp.port = addr.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = addr.port();
            NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
        });
        let pool = NameServerPool::from_config(configs, context, TokioRuntimeProvider::default());
        Ok(Self { pool, timeout, servers: servers.into() })
    }

    pub fn servers(&self) -> &[SocketAddr] {
        &self.servers
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Asks the upstreams. A negative answer (NXDOMAIN, NODATA) or an error rcode from an
    /// upstream is an answer too, returned as a message with that rcode.
    pub async fn forward(&self, query: &UpstreamQuery) -> Result<Message, ForwardError> {
        let mut options = DnsRequestOptions::default();
        options.use_edns = true;
        options.edns_payload_len = crate::dns::answer::ADVERTISED_UDP_SIZE;
        options.edns_set_dnssec_ok = query.dnssec_ok;
        options.recursion_desired = true;
        let question = Query::query(query.name.clone(), RecordType::from(query.qtype));
        let mut request = DnsRequest::from_query(question.clone(), options);
        request.metadata.checking_disabled = query.checking_disabled;

        let exchange = async { self.pool.send(request).next().await };
        let result = match tokio::time::timeout(self.timeout, exchange).await {
            Err(_) => return Err(ForwardError::Timeout(self.timeout)),
            Ok(None) => return Err(ForwardError::Failed("no response".into())),
            Ok(Some(result)) => result,
        };
        match result {
            Ok(response) => Ok(response.into_message()),
            Err(error) => negative_answer(question, error),
        }
    }
}

/// Turns the pool's errors that carry an upstream's answer back into that answer.
fn negative_answer(question: Query, error: NetError) -> Result<Message, ForwardError> {
    let (rcode, authorities) = match error {
        NetError::Dns(DnsError::NoRecordsFound(NoRecords { response_code, authorities, .. })) => {
            (response_code, authorities.map(|records| records.to_vec()).unwrap_or_default())
        }
        NetError::Dns(DnsError::ResponseCode(code)) => (code, Vec::new()),
        NetError::Timeout => return Err(ForwardError::Failed("upstreams timed out".into())),
        other => return Err(ForwardError::Failed(other.to_string())),
    };
    if rcode == ResponseCode::ServFail && authorities.is_empty() {
        return Err(ForwardError::Failed("upstream answered SERVFAIL".into()));
    }
    let mut message = Message::new(0, MessageType::Response, OpCode::Query);
    message.metadata.response_code = rcode;
    message.metadata.recursion_available = true;
    message.add_query(question);
    message.insert_authorities(authorities);
    Ok(message)
}

fn system_resolvers(path: &Path) -> Result<Vec<SocketAddr>, UpstreamError> {
    let display = || path.display().to_string();
    let text = std::fs::read(path).map_err(|error| UpstreamError::ResolvConf {
        path: display(),
        reason: error.to_string(),
    })?;
    let (config, _options) = hickory_resolver::system_conf::parse_resolv_conf(&text).map_err(
        |error| UpstreamError::ResolvConf { path: display(), reason: error.to_string() },
    )?;
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
