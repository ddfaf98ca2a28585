//! Starts the real `sinkhole` binary on a loopback port, talks DNS to it over UDP and TCP, and
//! reads its event log. The binary's log is printed when a test fails.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// How long a test waits for an answer, an event or a log line.
pub const WAIT: Duration = Duration::from_secs(5);

/// The standard blocklist of the tests.
pub const REMUS: &str = "posdteu.shop\nmathlah.com\ngauravitechnologies.com\nonesevenapps.com\n";

/// A config and its lists, written to a scratch folder.
pub struct Setup {
    pub dir: TempDir,
    pub config: String,
    pub upstreams: Vec<SocketAddr>,
    /// Environment variables sinkhole is started with.
    pub env: Vec<(String, String)>,
}

impl Setup {
    /// The standard setup: the Remus list, a CNAME-cloaking list, an allowlist that also
    /// covers a blocklisted name, and an exempt client.
    pub fn standard(upstream: SocketAddr) -> Self {
        let setup = Self::bare(vec![upstream], STANDARD_CONFIG);
        setup.write("remus.txt", REMUS);
        setup.write(
            "trackers.txt",
            "# hosts format\n0.0.0.0 tracker.test\n0.0.0.0\tupdate.example.test\n",
        );
        setup.write("nx.txt", "nx-listed.test\n");
        setup.write("allow.txt", "update.example.test\n");
        setup
    }

    /// A setup with a config of its own; lists are written by the test.
    pub fn bare(upstreams: Vec<SocketAddr>, config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self {
            dir,
            config: config.to_owned(),
            upstreams,
            env: Vec::new(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path(name), text).unwrap();
    }

    /// Writes a file the way editors do: a new file renamed over the old one.
    pub fn replace(&self, name: &str, text: &str) {
        let temp = self.path(&format!(".{name}.tmp"));
        std::fs::write(&temp, text).unwrap();
        std::fs::rename(&temp, self.path(name)).unwrap();
    }

    pub fn config_path(&self) -> PathBuf {
        let path = self.path("sinkhole.toml");
        std::fs::write(&path, &self.config).unwrap();
        path
    }

    pub fn start(self) -> Sinkhole {
        Sinkhole::start(self)
    }
}

const STANDARD_CONFIG: &str = r#"
[upstream]
timeout_ms = 1500
attempt_timeout_ms = 700

[sinkhole]
ttl = 60

[[blocklist]]
name = "threatfox-remus"
path = "remus.txt"
source = "ThreatFox"
family = "Remus"
threat_type = "botnet_cc"
confidence = 100
first_seen = "2026-06-06"

[[blocklist]]
name = "trackers"
path = "trackers.txt"
ipv4 = "192.0.2.53"
ipv6 = "2001:db8::53"
ttl = 120

[[blocklist]]
name = "nx-list"
path = "nx.txt"
action = "nxdomain"

[[allowlist]]
name = "microsoft-update"
path = "allow.txt"

[[exempt]]
name = "veeam-backup"
clients = ["127.0.0.7"]
"#;

/// A running sinkhole process.
pub struct Sinkhole {
    pub setup: Setup,
    pub addr: SocketAddr,
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Sinkhole {
    fn start(setup: Setup) -> Self {
        let (child, log) = Self::spawn(&setup);
        let mut sinkhole = Self {
            setup,
            addr: "127.0.0.1:0".parse().unwrap(),
            child,
            log,
        };
        sinkhole.wait_until_serving();
        sinkhole
    }

    /// Stops the process and starts a new one on the same folder and config.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (child, log) = Self::spawn(&self.setup);
        self.child = child;
        self.log = log;
        self.wait_until_serving();
    }

    fn wait_until_serving(&mut self) {
        let line = self.wait_for_log("listening on udp ");
        // Changes the test makes from now on are seen by the watcher.
        self.wait_for_log("watching list files");
        let addr = line.rsplit(' ').next().unwrap();
        self.addr = addr.parse().expect("bound address in log");
    }

    fn spawn(setup: &Setup) -> (Child, Arc<Mutex<String>>) {
        let config = setup.config_path();
        let mut command = Command::new(env!("CARGO_BIN_EXE_sinkhole"));
        command
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .args(["--listen", "127.0.0.1:0"])
            .arg("--events")
            .arg(setup.path("events.ndjson"))
            .env("RUST_LOG", "info,sinkhole=debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for upstream in &setup.upstreams {
            command.arg("--upstream").arg(upstream.to_string());
        }
        command.envs(setup.env.iter().map(|(name, value)| (name, value)));
        let mut child = command.spawn().expect("start sinkhole");

        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });

        (child, log)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process's log so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits for a log line containing `needle`, after any earlier ones, and returns it.
    pub fn wait_for_log(&self, needle: &str) -> String {
        self.wait_for_nth_log(needle, 1)
    }

    /// Waits until `count` log lines contain `needle`; returns the last.
    pub fn wait_for_nth_log(&self, needle: &str, count: usize) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let log = self.log();
            let lines: Vec<&str> = log.lines().filter(|line| line.contains(needle)).collect();
            if lines.len() >= count {
                return lines[count - 1].to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "no log line {needle:?} (x{count}) in:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn events_path(&self) -> PathBuf {
        self.setup.path("events.ndjson")
    }

    /// Waits until the event log holds at least `count` query events and returns them all.
    pub async fn events(&self, count: usize) -> Vec<serde_json::Value> {
        self.events_of("Query", count).await
    }

    /// Waits until the event log holds at least `count` events of `EventType` `kind`.
    pub async fn events_of(&self, kind: &str, count: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            let mut events = read_events(&self.events_path());
            events.retain(|event| event["EventType"] == kind);
            if events.len() >= count {
                return events;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {count} events",
                events.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether `name` gets the default sinkhole answer (A 0.0.0.0).
    pub async fn blocked(&self, name: &str) -> bool {
        let answer = self.udp(name, RecordType::A).await;
        matches!(answer.answers.first().map(|r| &r.data), Some(RData::A(a)) if a.0.is_unspecified())
    }

    /// Polls until `name` is blocked (or not); returns how long it took. Fails after 8 s.
    pub async fn until_blocked(&self, name: &str, want: bool) -> Duration {
        let started = Instant::now();
        while self.blocked(name).await != want {
            assert!(
                started.elapsed() < Duration::from_secs(8),
                "{name} never became {want}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        started.elapsed()
    }

    /// Sends SIGTERM and waits for the process to exit; returns its exit status code.
    pub fn stop(&mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + WAIT * 2;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub async fn udp(&self, name: &str, qtype: RecordType) -> Message {
        udp_query(self.addr, &query(name, qtype))
            .await
            .expect("UDP answer")
    }

    pub async fn tcp(&self, name: &str, qtype: RecordType) -> Message {
        tcp_query(self.addr, &query(name, qtype)).await
    }
}

impl Drop for Sinkhole {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- sinkhole log ----\n{}---- end of log ----", self.log());
        }
    }
}

/// A loopback port nothing listens on right now, over TCP or UDP, for a server a test starts.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let udp = std::net::UdpSocket::bind(listener.local_addr().unwrap());
    // A server listening on both needs the number free for UDP too; another try is cheap.
    match udp {
        Ok(_) => listener.local_addr().unwrap().port(),
        Err(_) => free_port(),
    }
}

pub fn read_events(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_str(line).expect("event line is JSON"))
        .collect()
}

/// A recursive query without EDNS.
pub fn query(name: &str, qtype: RecordType) -> Message {
    let mut message = Message::new(rand_id(), MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    message
}

/// The same query with an EDNS OPT record.
pub fn with_edns(mut message: Message, payload: u16, dnssec_ok: bool) -> Message {
    let mut edns = Edns::new();
    edns.set_max_payload(payload).set_dnssec_ok(dnssec_ok);
    message.edns = Some(edns);
    message
}

fn rand_id() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0x2a00);
    NEXT.fetch_add(7, Ordering::Relaxed)
}

/// Sends one message over UDP and decodes the answer.
pub async fn udp_query(server: SocketAddr, message: &Message) -> Option<Message> {
    let bytes = udp_raw(server, &message.to_vec().unwrap(), "127.0.0.1:0").await?;
    let answer = Message::from_vec(&bytes).expect("answer decodes");
    assert_eq!(
        answer.metadata.id, message.metadata.id,
        "answer has the query's ID"
    );
    Some(answer)
}

/// Sends raw bytes from `from` over UDP; the answer's bytes, or `None` after a short wait.
pub async fn udp_raw(server: SocketAddr, packet: &[u8], from: &str) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind(from).await.unwrap();
    socket.send_to(packet, server).await.unwrap();
    let mut buf = vec![0u8; 65_535];
    let wait = tokio::time::timeout(WAIT, socket.recv_from(&mut buf)).await;
    let (len, _) = wait.ok()?.unwrap();
    Some(buf[..len].to_vec())
}

/// Sends one message over a new TCP connection and decodes the answer.
pub async fn tcp_query(server: SocketAddr, message: &Message) -> Message {
    let mut stream = TcpStream::connect(server).await.unwrap();
    write_tcp_message(&mut stream, message).await;
    read_tcp_message(&mut stream).await
}

/// Writes one message with its two-byte length (RFC 1035 §4.2.2).
pub async fn write_tcp_message(stream: &mut TcpStream, message: &Message) {
    let bytes = message.to_vec().unwrap();
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    stream.write_all(&framed).await.unwrap();
}

pub async fn read_tcp_message(stream: &mut TcpStream) -> Message {
    let read = async {
        let len = stream.read_u16().await.unwrap();
        let mut buf = vec![0u8; usize::from(len)];
        stream.read_exact(&mut buf).await.unwrap();
        buf
    };
    let buf = tokio::time::timeout(WAIT, read)
        .await
        .expect("TCP answer in time");
    Message::from_vec(&buf).expect("answer decodes")
}

/// The Extended DNS Error (info code, text) of an answer, if it has one.
pub fn extended_error(message: &Message) -> Option<(u16, String)> {
    use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
    let edns = message.edns.as_ref()?;
    match edns.option(EdnsCode::from(15u16))? {
        EdnsOption::Unknown(_, data) => {
            let code = u16::from_be_bytes([data[0], data[1]]);
            Some((code, String::from_utf8_lossy(&data[2..]).into_owned()))
        }
        other => panic!("unexpected EDE option {other:?}"),
    }
}
