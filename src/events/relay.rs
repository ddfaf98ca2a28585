//! A sink that may be slow, such as a syslog collector across the network, runs on a thread of
//! its own behind a bounded queue, so that it never holds the event writer up, and with it
//! the event file and the other sinks. When its queue is full, the event is dropped for that
//! sink only and counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::Duration;

use super::Throttle;

/// What a relayed sink did with the events handed to it.
#[derive(Debug, Default)]
pub struct RelayCounters {
    pub sent: AtomicU64,
    /// The sink failed to deliver them (collector unreachable).
    pub failed: AtomicU64,
    /// Its queue was full: the sink fell behind.
    pub dropped: AtomicU64,
}

/// The writer's handle on a relayed sink.
pub struct Relay {
    name: &'static str,
    queue: Option<SyncSender<String>>,
    thread: Option<JoinHandle<()>>,
    counters: Arc<RelayCounters>,
    reported: Throttle,
}

impl Relay {
    /// Starts the sink's thread; `deliver` sends one event's JSON line (with its newline).
    pub fn start(
        name: &'static str,
        capacity: usize,
        deliver: impl FnMut(&str) -> Result<(), String> + Send + 'static,
    ) -> std::io::Result<Self> {
        let (queue, lines) = mpsc::sync_channel(capacity);
        let counters = Arc::new(RelayCounters::default());
        let thread = {
            let counters = counters.clone();
            std::thread::Builder::new()
                .name(format!("sinkhole-{name}"))
                .spawn(move || run(name, &lines, deliver, &counters))?
        };
        Ok(Self {
            name,
            queue: Some(queue),
            thread: Some(thread),
            counters,
            reported: Throttle::default(),
        })
    }

    pub fn counters(&self) -> Arc<RelayCounters> {
        self.counters.clone()
    }

    /// Hands a line to the sink without waiting.
    pub fn push(&mut self, line: &str) {
        let Some(queue) = &self.queue else {
            return;
        };
        match queue.try_send(line.to_owned()) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                let dropped = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if self.reported.due() {
                    tracing::warn!(
                        sink = self.name,
                        dropped_total = dropped,
                        "event sink falls behind: events dropped for it"
                    );
                }
            }
        }
    }

    /// Lets the sink send what is queued, for at most `grace`, then leaves it.
    pub fn finish(mut self, grace: Duration) {
        self.queue = None;
        let Some(thread) = self.thread.take() else {
            return;
        };
        let (done_tx, done_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = thread.join();
            let _ = done_tx.send(());
        });
        if done_rx.recv_timeout(grace).is_err() {
            tracing::warn!(sink = self.name, "event sink not finished in time");
        }
    }
}

fn run(
    name: &'static str,
    lines: &Receiver<String>,
    mut deliver: impl FnMut(&str) -> Result<(), String>,
    counters: &RelayCounters,
) {
    let mut reported = Throttle::default();
    for line in lines {
        let Err(error) = deliver(&line) else {
            counters.sent.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let failed = counters.failed.fetch_add(1, Ordering::Relaxed) + 1;
        if reported.due() {
            tracing::warn!(sink = name, %error, failed_total = failed, "events not sent");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_slow_sink_never_holds_the_caller_up() {
        let mut relay = Relay::start("slow", 10, |_| {
            std::thread::sleep(Duration::from_millis(20));
            Ok(())
        })
        .unwrap();
        let started = Instant::now();
        (0..1000).for_each(|n| relay.push(&format!("{{\"n\":{n}}}\n")));
        assert!(started.elapsed() < Duration::from_secs(1), "push waited");
        let counters = relay.counters();
        relay.finish(Duration::from_secs(5));
        let sent = counters.sent.load(Ordering::Relaxed);
        let dropped = counters.dropped.load(Ordering::Relaxed);
        assert!(dropped >= 900, "{dropped}");
        assert_eq!(sent + dropped, 1000, "every line is sent or counted");
    }

    #[test]
    fn failures_are_counted_and_the_queue_is_drained_at_finish() {
        let mut relay = Relay::start("failing", 100, |line| {
            if line.contains("bad") {
                Err("refused".to_owned())
            } else {
                Ok(())
            }
        })
        .unwrap();
        for line in ["good\n", "bad\n", "good\n"] {
            relay.push(line);
        }
        let counters = relay.counters();
        relay.finish(Duration::from_secs(5));
        assert_eq!(counters.sent.load(Ordering::Relaxed), 2);
        assert_eq!(counters.failed.load(Ordering::Relaxed), 1);
        assert_eq!(counters.dropped.load(Ordering::Relaxed), 0);
    }
}
