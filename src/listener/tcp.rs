//! The TCP listener (RFC 7766): length-prefixed messages, several queries per connection,
//! answers in the order they are ready, an idle timeout, and a cap on open connections.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::events::Transport;
use crate::handler::{Client, Handler, Step};

/// Answers that may wait for the writer of one connection.
const ANSWER_QUEUE: usize = 64;

/// Limits for TCP clients.
#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// Accepts connections until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    handler: Arc<Handler>,
    limits: TcpLimits,
    tasks: TaskTracker,
    shutdown: CancellationToken,
) {
    let Ok(server) = listener.local_addr() else {
        return;
    };
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, addr) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::debug!(%server, %error, "TCP accept failed");
                continue;
            }
        };
        let client = Client {
            addr,
            server,
            transport: Transport::Tcp,
        };
        let (handler, inner, shutdown) = (handler.clone(), tasks.clone(), shutdown.clone());
        tasks.spawn(async move {
            connection(
                stream,
                client,
                handler,
                limits.idle_timeout,
                inner,
                shutdown,
            )
            .await;
            drop(permit);
        });
    }
}

async fn connection(
    stream: TcpStream,
    client: Client,
    handler: Arc<Handler>,
    idle_timeout: Duration,
    tasks: TaskTracker,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.into_split();
    let (answers, queue) = mpsc::channel::<Vec<u8>>(ANSWER_QUEUE);
    let writing = tokio::spawn(write_answers(writer, queue));

    let mut reader = BufReader::new(reader);
    let mut out = Vec::with_capacity(1232);
    loop {
        let packet = tokio::select! {
            () = shutdown.cancelled() => break,
            read = tokio::time::timeout(idle_timeout, read_message(&mut reader)) => match read {
                Ok(Some(packet)) => packet,
                Ok(None) | Err(_) => break,
            },
        };
        match handler.answer_locally(&packet, &client, &mut out) {
            Step::Reply => {
                if answers.send(out.clone()).await.is_err() {
                    break;
                }
            }
            Step::Drop => {}
            Step::Forward(pending) => {
                let (handler, answers) = (handler.clone(), answers.clone());
                tasks.spawn(async move {
                    let mut out = Vec::with_capacity(1232);
                    handler.forward(pending, &client, &mut out).await;
                    let _ = answers.send(out).await;
                });
            }
        }
    }
    // The writer ends once every forwarded query of this connection has answered.
    drop(answers);
    let _ = writing.await;
}

/// Reads one length-prefixed message; `None` at end of stream, on error or on a zero length.
async fn read_message(reader: &mut BufReader<OwnedReadHalf>) -> Option<Vec<u8>> {
    let len = usize::from(reader.read_u16().await.ok()?);
    if len == 0 {
        return None;
    }
    let mut packet = vec![0u8; len];
    reader.read_exact(&mut packet).await.ok()?;
    Some(packet)
}

async fn write_answers(mut writer: OwnedWriteHalf, mut queue: mpsc::Receiver<Vec<u8>>) {
    while let Some(answer) = queue.recv().await {
        if answer.is_empty() || answer.len() > usize::from(u16::MAX) {
            continue;
        }
        let mut framed = Vec::with_capacity(answer.len() + 2);
        framed.extend_from_slice(&(answer.len() as u16).to_be_bytes());
        framed.extend_from_slice(&answer);
        if writer.write_all(&framed).await.is_err() {
            return;
        }
    }
    let _ = writer.shutdown().await;
}
