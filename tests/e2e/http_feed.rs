//! Lists downloaded over HTTP from a feed server the test runs: ETags and 304, failures,
//! slow and oversized answers, bodies that are not lists, and a restart with the feed down.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::{REMUS, Setup};
use crate::upstream::Upstream;

/// How the feed server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Normal,
    ServerError,
    Slow,
    Huge,
    NotAList,
}

#[derive(Debug)]
struct Feed {
    body: String,
    etag: String,
    mode: Mode,
    /// Each request's `If-None-Match`, and the status sent.
    seen: Vec<(Option<String>, u16)>,
}

/// A small HTTP/1.1 server on loopback, one thread per connection.
struct FeedServer {
    addr: SocketAddr,
    feed: Arc<Mutex<Feed>>,
    stop: Arc<AtomicBool>,
}

impl FeedServer {
    fn start(body: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let feed = Arc::new(Mutex::new(Feed {
            body: body.to_owned(),
            etag: "\"v1\"".to_owned(),
            mode: Mode::Normal,
            seen: Vec::new(),
        }));
        let shared = feed.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                if stopped.load(Ordering::Relaxed) {
                    return;
                }
                let feed = shared.clone();
                std::thread::spawn(move || answer(stream, &feed));
            }
        });
        Self { addr, feed, stop }
    }

    fn url(&self) -> String {
        format!("http://{}/export/recent.txt", self.addr)
    }

    fn set(&self, mode: Mode) {
        self.feed.lock().unwrap().mode = mode;
    }

    fn publish(&self, body: &str, etag: &str) {
        let mut feed = self.feed.lock().unwrap();
        feed.body = body.to_owned();
        feed.etag = etag.to_owned();
    }

    fn seen(&self) -> Vec<(Option<String>, u16)> {
        self.feed.lock().unwrap().seen.clone()
    }
}

impl Drop for FeedServer {
    /// Stops the accept loop: it sees the flag at the connection made to wake it.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
    }
}

fn answer(stream: TcpStream, feed: &Mutex<Feed>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut if_none_match = None;
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|read| read > 0) {
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("if-none-match")
        {
            if_none_match = Some(value.trim().to_owned());
        }
        line.clear();
    }
    let (mode, body, etag) = {
        let feed = feed.lock().unwrap();
        (feed.mode, feed.body.clone(), feed.etag.clone())
    };
    let (status, body) = match mode {
        Mode::Normal if if_none_match.as_deref() == Some(etag.as_str()) => (304, String::new()),
        Mode::Normal => (200, body),
        Mode::ServerError => (500, "internal error\n".to_owned()),
        Mode::Slow => {
            std::thread::sleep(Duration::from_secs(2));
            (200, body)
        }
        Mode::Huge => (200, "big.example.test\n".repeat(1000)),
        Mode::NotAList => (
            200,
            "<html><body>Service unavailable</body></html>\n".to_owned(),
        ),
    };
    feed.lock().unwrap().seen.push((if_none_match, status));
    let reason = match status {
        200 => "OK",
        304 => "Not Modified",
        _ => "Internal Server Error",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nETag: {etag}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut stream = stream;
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body.as_bytes());
}

fn config(url: &str) -> String {
    format!(
        "[events]\nheartbeat_interval_s = 1\n\n[[blocklist]]\nname = \"feed\"\npath = \"feed.txt\"\nurl = \"{url}\"\nrefresh = \"1s\"\nfetch_timeout_ms = 500\nmax_bytes = 4096\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_downloaded_list_is_enforced_refreshed_and_kept_through_bad_answers() {
    let upstream = Upstream::start().await;
    let feed = FeedServer::start(REMUS);
    let setup = Setup::bare(vec![upstream.addr], &config(&feed.url()));
    let sinkhole = setup.start();

    // Not on disk yet: downloaded, stored and enforced.
    sinkhole.until_blocked("posdteu.shop", true).await;
    let stored = std::fs::read_to_string(sinkhole.setup.path("feed.txt")).unwrap();
    assert_eq!(stored, REMUS);

    // The next refreshes ask with the ETag and get 304.
    let started = Instant::now();
    while !feed.seen().iter().any(|(_, status)| *status == 304) {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            feed.seen()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (tag, _) = feed.seen().into_iter().find(|(_, s)| *s == 304).unwrap();
    assert_eq!(tag.as_deref(), Some("\"v1\""));

    // A new version is picked up.
    feed.publish("fresh-c2.test\n", "\"v2\"");
    sinkhole.until_blocked("fresh-c2.test", true).await;
    sinkhole.until_blocked("posdteu.shop", false).await;

    // Failures of every kind keep the last good copy.
    for (mode, reason) in [
        (Mode::ServerError, "HTTP status 500"),
        (Mode::NotAList, "no valid entry"),
        (Mode::Huge, "larger than max_bytes"),
        (Mode::Slow, "timed out"),
    ] {
        // A failure of the previous mode may still be on its way: the second one from now on
        // is this mode's.
        let failures = sinkhole.log().matches("download failed").count();
        feed.publish("other-c2.test\n", &format!("\"{mode:?}\""));
        feed.set(mode);
        sinkhole.wait_for_nth_log("download failed", failures + 2);
        sinkhole.wait_for_log(reason);
        assert!(sinkhole.blocked("fresh-c2.test").await, "{mode:?}");
        assert!(!sinkhole.blocked("other-c2.test").await, "{mode:?}");
    }
    let stored = std::fs::read_to_string(sinkhole.setup.path("feed.txt")).unwrap();
    assert_eq!(stored, "fresh-c2.test\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_with_the_feed_down_enforces_the_last_good_copy() {
    let upstream = Upstream::start().await;
    let feed = FeedServer::start(REMUS);
    let setup = Setup::bare(vec![upstream.addr], &config(&feed.url()));
    let mut sinkhole = setup.start();
    sinkhole.until_blocked("mathlah.com", true).await;

    // The feed goes down: every request fails from now on.
    feed.set(Mode::ServerError);
    sinkhole.restart();
    assert!(sinkhole.blocked("mathlah.com").await, "enforced at once");
    sinkhole.wait_for_log("download failed; the last good copy stays in force");
    assert!(sinkhole.blocked("mathlah.com").await);

    // Heartbeats show the feed failing, and the age of the copy in force.
    let started = Instant::now();
    loop {
        let beats = sinkhole.events_of("Heartbeat", 1).await;
        let list = &beats.last().unwrap()["AdditionalFields"]["lists"][0];
        if let Some(error) = list["last_error"].as_str() {
            assert!(error.contains("download: HTTP status 500"), "{error}");
            assert_eq!(list["source"], feed.url().as_str());
            assert!(list["age_s"].as_u64().is_some());
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no heartbeat with the error"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
