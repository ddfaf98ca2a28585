//! The UDP listener: drains the socket each time it becomes readable, answers local answers
//! and cache hits in line, and hands misses to a task of their own.

use std::io::ErrorKind;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::events::Transport;
use crate::handler::{Client, Handler, Step};

/// Largest UDP datagram.
const MAX_DATAGRAM: usize = 65_535;

/// Serves one UDP socket until `shutdown` is cancelled. Forwarded queries run on `tasks`.
pub async fn serve(
    socket: UdpSocket,
    handler: Arc<Handler>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
) {
    let socket = Arc::new(socket);
    let Ok(server) = socket.local_addr() else {
        return;
    };
    let mut packet = vec![0u8; MAX_DATAGRAM];
    let mut out = Vec::with_capacity(4096);

    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            ready = socket.readable() => {
                if let Err(error) = ready {
                    tracing::warn!(%server, %error, "UDP socket failed");
                    return;
                }
            }
        }
        loop {
            let (len, addr) = match socket.try_recv_from(&mut packet) {
                Ok(received) => received,
                Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                Err(error) => {
                    // ICMP errors from earlier sends surface here; they concern no query.
                    tracing::debug!(%server, %error, "UDP receive error");
                    continue;
                }
            };
            let client = Client {
                addr,
                server,
                transport: Transport::Udp,
            };
            match handler.answer_locally(&packet[..len], &client, &mut out) {
                Step::Reply => send(&socket, &out, &client).await,
                Step::Drop => {}
                Step::Forward(pending) => {
                    let (socket, handler) = (socket.clone(), handler.clone());
                    tasks.spawn(async move {
                        let mut out = Vec::with_capacity(1232);
                        handler.forward(pending, &client, &mut out).await;
                        send(&socket, &out, &client).await;
                    });
                }
            }
        }
    }
}

async fn send(socket: &UdpSocket, answer: &[u8], client: &Client) {
    if answer.is_empty() {
        return;
    }
    if let Err(error) = socket.send_to(answer, client.addr).await {
        tracing::debug!(client.addr = %client.addr, %error, "UDP send failed");
    }
}
