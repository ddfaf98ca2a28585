//! The UDP transport under hickory-resolver's name server pools: a few long-lived sockets per
//! upstream instead of a new socket for every query.
//!
//! hickory-resolver's own UDP client opens, binds, registers and closes a socket for each
//! query, which costs more than the rest of a cache miss. Here each upstream gets
//! [`SOCKETS`] connected sockets; a query takes the next one, gets a random ID that is free on
//! it, and waits for the answer that a receiver task hands over by (socket, ID) once the
//! answer's question matches the query's. Each socket is replaced by a fresh one on a new
//! random port after [`SOCKET_USES`] queries or [`SOCKET_LIFETIME`], so an off-path attacker
//! who wants to forge an answer has to guess the port as well as the ID. The pool above still
//! decides timeouts, TCP on truncation and failover; TCP uses hickory-resolver's transport.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use hickory_proto::op::{DnsRequest, DnsResponse};
use hickory_resolver::config::{ConnectionConfig, ProtocolConfig};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::xfer::{DnsExchange, DnsHandle};
use hickory_resolver::{ConnectionProvider, PoolContext};
use tokio::net::UdpSocket;
use tokio::sync::oneshot;

/// Sockets per upstream.
pub const SOCKETS: usize = 4;
/// Queries a socket carries before it is replaced.
pub const SOCKET_USES: u32 = 2000;
/// How long a socket is used before it is replaced.
pub const SOCKET_LIFETIME: Duration = Duration::from_secs(30);
/// A retired socket's receiver waits this long without traffic before it stops.
const RETIRED_LINGER: Duration = Duration::from_secs(2);
const MAX_ANSWER: usize = 65_535;
/// Shortest wait before a query is sent again, as in hickory-resolver's own UDP client.
const RETRY_FLOOR: Duration = Duration::from_millis(333);

/// Creates the connections of hickory-resolver's pools: UDP over [`UdpMux`], everything else
/// through hickory-resolver's own transports.
#[derive(Clone, Default)]
pub struct Connector {
    runtime: TokioRuntimeProvider,
    muxes: Arc<Mutex<HashMap<SocketAddr, UdpMux>>>,
}

impl ConnectionProvider for Connector {
    type Conn = Connection;
    type FutureConn = Pin<Box<dyn Future<Output = Result<Connection, NetError>> + Send>>;
    type RuntimeProvider = TokioRuntimeProvider;

    fn new_connection(
        &self,
        ip: IpAddr,
        config: &ConnectionConfig,
        cx: &PoolContext,
    ) -> Result<Self::FutureConn, NetError> {
        if config.protocol != ProtocolConfig::Udp {
            let connecting = self.runtime.new_connection(ip, config, cx)?;
            return Ok(Box::pin(
                async move { connecting.await.map(Connection::Other) },
            ));
        }
        let upstream = SocketAddr::new(ip, config.port);
        let mux = self
            .muxes
            .lock()
            .map_err(|_| NetError::from("transport state poisoned"))?
            .entry(upstream)
            .or_insert_with(|| UdpMux::new(upstream, cx.options.timeout))
            .clone();
        Ok(Box::pin(async move { Ok(Connection::Udp(mux)) }))
    }

    fn runtime_provider(&self) -> &Self::RuntimeProvider {
        &self.runtime
    }
}

/// A connection to one upstream, as the pool sees it.
#[derive(Clone)]
pub enum Connection {
    Udp(UdpMux),
    Other(DnsExchange<TokioRuntimeProvider>),
}

impl DnsHandle for Connection {
    type Response = BoxStream<'static, Result<DnsResponse, NetError>>;
    type Runtime = TokioRuntimeProvider;

    fn send(&self, request: DnsRequest) -> Self::Response {
        match self {
            Self::Udp(mux) => {
                let mux = mux.clone();
                futures_util::stream::once(async move { mux.exchange(request).await }).boxed()
            }
            Self::Other(exchange) => exchange.send(request).boxed(),
        }
    }
}

/// UDP exchanges with one upstream; see the module documentation.
#[derive(Clone)]
pub struct UdpMux {
    inner: Arc<MuxInner>,
}

struct MuxInner {
    upstream: SocketAddr,
    /// How long one exchange may take, retransmissions included.
    timeout: Duration,
    slots: Vec<Mutex<Option<Slot>>>,
    next: AtomicUsize,
    waiting: Mutex<HashMap<(u64, u16), Waiter>>,
    generation: AtomicUsize,
    tickets: AtomicU64,
}

struct Slot {
    socket: Arc<UdpSocket>,
    generation: u64,
    uses: u32,
    born: Instant,
    retired: Arc<AtomicBool>,
}

struct Waiter {
    question: Vec<u8>,
    answer: oneshot::Sender<Vec<u8>>,
    /// Tells this waiter from a later one that reuses its ID.
    ticket: u64,
}

impl UdpMux {
    fn new(upstream: SocketAddr, timeout: Duration) -> Self {
        let slots = (0..SOCKETS).map(|_| Mutex::new(None)).collect();
        let inner = MuxInner {
            upstream,
            timeout,
            slots,
            next: AtomicUsize::new(0),
            waiting: Mutex::new(HashMap::new()),
            generation: AtomicUsize::new(0),
            tickets: AtomicU64::new(0),
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Sends one request and waits for its answer, sending it again every retry interval
    /// (UDP loses packets; RFC 1035 §4.2.1) until the exchange times out.
    async fn exchange(&self, mut request: DnsRequest) -> Result<DnsResponse, NetError> {
        let (socket, generation) = self.socket().await?;
        let (answer_tx, mut answer_rx) = oneshot::channel();
        let retry = request.options().retry_interval.max(RETRY_FLOOR);

        let (id, ticket) = self.register(generation, &mut request, answer_tx)?;
        let _guard = Unregister {
            mux: self,
            key: (generation, id),
            ticket,
        };
        let packet = request.to_vec().map_err(NetError::from)?;
        let exchange = async {
            loop {
                socket.send(&packet).await?;
                match tokio::time::timeout(retry, &mut answer_rx).await {
                    Ok(answer) => {
                        return answer.map_err(|_| NetError::from("upstream socket closed"));
                    }
                    Err(_) => {
                        tracing::trace!(upstream = %self.inner.upstream, id, "retransmitting")
                    }
                }
            }
        };
        let answer = tokio::time::timeout(self.inner.timeout, exchange)
            .await
            .map_err(|_| NetError::Timeout)??;
        DnsResponse::from_buffer(answer).map_err(NetError::from)
    }

    /// Picks a free random ID on the socket and registers the waiter under it.
    fn register(
        &self,
        generation: u64,
        request: &mut DnsRequest,
        answer: oneshot::Sender<Vec<u8>>,
    ) -> Result<(u16, u64), NetError> {
        let question = request
            .queries
            .first()
            .and_then(|query| hickory_proto::serialize::binary::BinEncodable::to_bytes(query).ok())
            .unwrap_or_default();
        let ticket = self.inner.tickets.fetch_add(1, Ordering::Relaxed);
        let mut waiting = self
            .inner
            .waiting
            .lock()
            .map_err(|_| NetError::from("transport state poisoned"))?;
        for _ in 0..64 {
            let id: u16 = rand::random();
            if let std::collections::hash_map::Entry::Vacant(slot) = waiting.entry((generation, id))
            {
                slot.insert(Waiter {
                    question,
                    answer,
                    ticket,
                });
                request.metadata.id = id;
                return Ok((id, ticket));
            }
        }
        Err(NetError::Busy)
    }

    /// The socket for the next query: the next slot's, replaced when it is worn out.
    async fn socket(&self) -> Result<(Arc<UdpSocket>, u64), NetError> {
        let index = self.inner.next.fetch_add(1, Ordering::Relaxed) % SOCKETS;
        let current = {
            let mut slot = self.inner.slots[index]
                .lock()
                .map_err(|_| NetError::from("transport state poisoned"))?;
            match slot.as_mut() {
                Some(live) if live.uses < SOCKET_USES && live.born.elapsed() < SOCKET_LIFETIME => {
                    live.uses += 1;
                    return Ok((live.socket.clone(), live.generation));
                }
                _ => slot.take(),
            }
        };
        if let Some(old) = current {
            old.retired.store(true, Ordering::Relaxed);
        }

        let socket = Arc::new(connect(self.inner.upstream).await?);
        let generation = self.inner.generation.fetch_add(1, Ordering::Relaxed) as u64;
        let retired = Arc::new(AtomicBool::new(false));
        tokio::spawn(receive(
            self.clone(),
            socket.clone(),
            generation,
            retired.clone(),
        ));
        let fresh = Slot {
            socket: socket.clone(),
            generation,
            uses: 1,
            born: Instant::now(),
            retired,
        };
        if let Ok(mut slot) = self.inner.slots[index].lock() {
            if let Some(raced) = slot.replace(fresh) {
                raced.retired.store(true, Ordering::Relaxed);
            }
        }
        Ok((socket, generation))
    }

    /// Hands an answer to its waiter if its ID and question match a query on this socket.
    fn deliver(&self, generation: u64, answer: &[u8]) {
        let Some(id) = answer.get(..2).map(|id| u16::from_be_bytes([id[0], id[1]])) else {
            return;
        };
        let Ok(mut waiting) = self.inner.waiting.lock() else {
            return;
        };
        let Some(waiter) = waiting.get(&(generation, id)) else {
            return;
        };
        // RFC 5452 §9.1: accept only an answer to the question that was asked.
        let question = answer.get(12..12 + waiter.question.len());
        if !question.is_some_and(|question| question.eq_ignore_ascii_case(&waiter.question)) {
            return;
        }
        if let Some(waiter) = waiting.remove(&(generation, id)) {
            let _ = waiter.answer.send(answer.to_vec());
        }
    }
}

/// Removes a waiter whose query was abandoned (timeout, failover, send error), unless its
/// ID has been handed to a newer query since.
struct Unregister<'m> {
    mux: &'m UdpMux,
    key: (u64, u16),
    ticket: u64,
}

impl Drop for Unregister<'_> {
    fn drop(&mut self) {
        if let Ok(mut waiting) = self.mux.inner.waiting.lock()
            && waiting
                .get(&self.key)
                .is_some_and(|waiter| waiter.ticket == self.ticket)
        {
            waiting.remove(&self.key);
        }
    }
}

async fn connect(upstream: SocketAddr) -> Result<UdpSocket, NetError> {
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    Ok(socket)
}

/// Reads answers from one socket until it is retired and quiet.
async fn receive(mux: UdpMux, socket: Arc<UdpSocket>, generation: u64, retired: Arc<AtomicBool>) {
    let mut buf = vec![0u8; MAX_ANSWER];
    loop {
        match tokio::time::timeout(RETIRED_LINGER, socket.recv(&mut buf)).await {
            Ok(Ok(len)) => mux.deliver(generation, &buf[..len]),
            // ICMP port unreachable and the like: the pool's timeout handles the query.
            Ok(Err(error)) => {
                tracing::debug!(upstream = %mux.inner.upstream, %error, "upstream socket error")
            }
            Err(_) if retired.load(Ordering::Relaxed) => return,
            Err(_) => {}
        }
    }
}
