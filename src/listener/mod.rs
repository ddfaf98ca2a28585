//! Listeners: bound sockets in, answers out. UDP and TCP share the [`Handler`].
//!
//! [`Handler`]: crate::handler::Handler

pub mod tcp;
pub mod udp;

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, UdpSocket};

/// A UDP socket and a TCP listener bound to the same address.
pub struct BoundPair {
    pub udp: UdpSocket,
    pub tcp: TcpListener,
}

/// How often to retry when port 0 gives a UDP port whose TCP twin is taken.
const PORT_ZERO_TRIES: usize = 20;

/// Binds UDP and TCP on `addr`. With port 0 both get the same free port.
pub async fn bind_pair(addr: SocketAddr) -> io::Result<BoundPair> {
    let tries = if addr.port() == 0 { PORT_ZERO_TRIES } else { 1 };
    let mut last_error = None;
    for _ in 0..tries {
        let udp = UdpSocket::bind(addr).await?;
        let bound = udp.local_addr()?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => return Ok(BoundPair { udp, tcp }),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::other("no free port")))
}
