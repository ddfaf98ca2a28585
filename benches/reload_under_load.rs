//! Reloads under load: queries run without a pause while a large list is replaced again and
//! again; no query may fail, and each new list must be in force within a second.
//!
//! `cargo bench --bench reload_under_load` starts the release `sinkhole` on loopback with a
//! stub upstream of its own, loads a 1,000,000-name list, replaces it 10 times (a new file
//! renamed over the old one, as feed downloaders do) while 8 clients query without a pause
//! (half listed names, half names that go upstream), and reports: queries answered, failed
//! (SERVFAIL or anything but the expected answer), dropped (no answer within a second); for
//! each replacement, the time until a name only the new file lists is blocked; and the
//! process's resident memory at rest and its peak. It exits 1 when a query failed or was
//! dropped, or a replacement took a second or more.
//!
//! Under `cargo test` (no `--bench` argument) the same runs with 50,000 names and 3
//! replacements against the debug build, so CI keeps it working; it then checks failures and
//! drops only, not times, and waits 3 s for an answer rather than 1 s.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::net::UdpSocket;

const CLIENTS: usize = 8;
const MAX_QUERIES: u64 = 5_000_000;
const MAX_TIME: Duration = Duration::from_secs(120);
/// How long an answer may take before its query counts as dropped, when timed.
const ANSWER_WAIT: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Counts {
    answered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

struct Scale {
    names: usize,
    rounds: usize,
    timed: bool,
    answer_wait: Duration,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let bench = std::env::args().any(|arg| arg == "--bench");
    let scale = if bench {
        Scale {
            names: 1_000_000,
            rounds: 10,
            timed: true,
            answer_wait: ANSWER_WAIT,
        }
    } else {
        Scale {
            names: 50_000,
            rounds: 3,
            timed: false,
            answer_wait: 3 * ANSWER_WAIT,
        }
    };
    let ok = run(&scale).await;
    std::process::exit(if ok { 0 } else { 1 });
}

async fn run(scale: &Scale) -> bool {
    let dir = tempfile::tempdir().expect("scratch folder");
    let upstream = start_stub_upstream().await;
    let lists = [list_text(scale.names, 'a'), list_text(scale.names, 'b')];
    write_list(dir.path(), &lists[0], 0);
    let config = dir.path().join("sinkhole.toml");
    let text = format!(
        "[upstream]\nservers = [\"{upstream}\"]\n[events]\npath = \"events.ndjson\"\nheartbeat_interval_s = 0\n[[blocklist]]\nname = \"big\"\npath = \"list.txt\"\n"
    );
    std::fs::write(&config, text).expect("write config");
    let (mut child, addr) = start_sinkhole(&config);

    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let (counts, stop) = (counts.clone(), stop.clone());
            tokio::spawn(query_loop(addr, client, scale.answer_wait, counts, stop))
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(500)).await;
    let steady = memory(child.id());
    let mut took = Vec::new();
    for round in 1..=scale.rounds {
        write_list(dir.path(), &lists[round % 2], round);
        // From the rename, the moment a feed downloader publishes.
        let started = Instant::now();
        took.push(
            wait_blocked(addr, &marker(round))
                .await
                .map(|()| started.elapsed()),
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        let _ = client.await;
    }
    let after = memory(child.id());
    let _ = child.kill();
    let _ = child.wait();

    report(scale, &counts, &took, steady, after)
}

fn report(
    scale: &Scale,
    counts: &Counts,
    took: &[Option<Duration>],
    steady: (f64, f64),
    after: (f64, f64),
) -> bool {
    let answered = counts.answered.load(Ordering::Relaxed);
    let failed = counts.failed.load(Ordering::Relaxed);
    let dropped = counts.dropped.load(Ordering::Relaxed);
    let mut times = String::new();
    for (round, time) in took.iter().enumerate() {
        match time {
            Some(time) => write!(times, " {}:{:.0}ms", round + 1, time.as_secs_f64() * 1000.0),
            None => write!(times, " {}:never", round + 1),
        }
        .unwrap_or_default();
    }
    println!(
        "reload under load: {} names, {} replacements",
        scale.names, scale.rounds
    );
    println!("queries: {answered} answered, {failed} failed, {dropped} dropped");
    println!("new list in force after:{times}");
    println!(
        "RSS: {:.1} MiB at rest before the replacements, {:.1} MiB after; peak {:.1} MiB",
        steady.0, after.0, after.1
    );
    let slow = took
        .iter()
        .any(|time| time.is_none_or(|time| scale.timed && time >= Duration::from_secs(1)));
    let ok = failed == 0 && dropped == 0 && !slow && answered > 0;
    println!("{}", if ok { "result: ok" } else { "result: FAILED" });
    ok
}

/// `count` names, `prefix` telling the two lists apart.
fn list_text(count: usize, prefix: char) -> String {
    let mut text = String::with_capacity(count * 24);
    for i in 0..count {
        let _ = writeln!(text, "{prefix}{i}.n{}.bench-list.test", i % 1000);
    }
    text
}

fn marker(round: usize) -> String {
    format!("marker{round}.bench-list.test")
}

/// Writes the list with this round's marker to a new file and renames it over the list.
fn write_list(dir: &Path, text: &str, round: usize) {
    let temp = dir.join(".list.txt.new");
    let body = format!("{}\n{text}", marker(round));
    std::fs::write(&temp, body).expect("write list");
    std::fs::rename(&temp, dir.join("list.txt")).expect("replace list");
}

fn start_sinkhole(config: &Path) -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sinkhole"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sinkhole");
    let stderr = child.stderr.take().expect("stderr");
    let (found, addr) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(at) = line.find("listening on udp ") {
                let _ = found.send(line[at + 17..].trim().to_owned());
            }
        }
    });
    let addr = addr
        .recv_timeout(Duration::from_secs(60))
        .expect("sinkhole listening")
        .parse()
        .expect("address");
    (child, addr)
}

/// Queries without a pause until `stop`: even queries ask for a name under an entry of the
/// first list, blocked while that list is in force and answered by the stub upstream while
/// the second one is; odd ones for a name no list holds, always answered upstream.
async fn query_loop(
    addr: SocketAddr,
    client: usize,
    answer_wait: Duration,
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("client socket");
    let started = Instant::now();
    let mut buf = vec![0u8; 4096];
    let mut id = (client as u16) << 12;
    while !stop.load(Ordering::Relaxed) && started.elapsed() < MAX_TIME {
        if counts.answered.load(Ordering::Relaxed) >= MAX_QUERIES {
            break;
        }
        id = id.wrapping_add(1);
        let name = if id % 2 == 0 {
            format!("x.a{}.n{}.bench-list.test", id % 1000, id % 1000)
        } else {
            format!("free{id}.example.test")
        };
        let query = message(id, &name);
        if socket.send_to(&query, addr).await.is_err() {
            counts.failed.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let counter = match receive(&socket, &mut buf, id, answer_wait).await {
            Some(answer) if good(&answer, id) => &counts.answered,
            Some(_) => &counts.failed,
            None => &counts.dropped,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The answer to `id`; answers to earlier queries that came too late are passed over.
async fn receive(socket: &UdpSocket, buf: &mut [u8], id: u16, wait: Duration) -> Option<Message> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let len = tokio::time::timeout_at(deadline, socket.recv(buf))
            .await
            .ok()?
            .ok()?;
        match Message::from_vec(&buf[..len]) {
            Ok(answer) if answer.metadata.id != id => continue,
            Ok(answer) => return Some(answer),
            // Not DNS: counted as a wrong answer.
            Err(_) => return Some(Message::new(id, MessageType::Response, OpCode::Query)),
        }
    }
}

/// The stub's NXDOMAIN, or for a listed name (even ids) the sinkhole's address; never
/// SERVFAIL, never anything else.
fn good(answer: &Message, id: u16) -> bool {
    let sinkholed = || {
        !answer.answers.is_empty()
            && answer
                .answers
                .iter()
                .all(|record| matches!(&record.data, RData::A(a) if a.0.is_unspecified()))
    };
    match answer.metadata.response_code {
        ResponseCode::NXDomain => true,
        ResponseCode::NoError => id % 2 == 0 && sinkholed(),
        _ => false,
    }
}

fn message(id: u16, name: &str) -> Vec<u8> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    let name = Name::from_ascii(name).expect("valid name");
    message.add_query(Query::query(name, RecordType::A));
    message.to_vec().expect("encodes")
}

/// Polls until `name` is blocked; `None` after 10 s.
async fn wait_blocked(addr: SocketAddr, name: &str) -> Option<()> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.ok()?;
    let started = Instant::now();
    let mut buf = vec![0u8; 4096];
    let mut id = 0x7000u16;
    while started.elapsed() < Duration::from_secs(10) {
        id = id.wrapping_add(1);
        socket.send_to(&message(id, name), addr).await.ok()?;
        if let Ok(Ok(len)) = tokio::time::timeout(ANSWER_WAIT, socket.recv(&mut buf)).await
            && let Ok(answer) = Message::from_vec(&buf[..len])
            && answer.metadata.id == id
            && matches!(answer.answers.first().map(|r| &r.data), Some(RData::A(a)) if a.0.is_unspecified())
        {
            return Some(());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

/// A stub upstream: NXDOMAIN, without records, for every question.
async fn start_stub_upstream() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("stub socket");
    let addr = socket.local_addr().expect("stub address");
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((len, from)) = socket.recv_from(&mut buf).await else {
                continue;
            };
            if let Some(answer) = nxdomain(&buf[..len]) {
                let _ = socket.send_to(&answer, from).await;
            }
        }
    });
    addr
}

/// The query's header and question, turned into an NXDOMAIN answer.
fn nxdomain(query: &[u8]) -> Option<Vec<u8>> {
    let mut end = 12;
    loop {
        let len = usize::from(*query.get(end)?);
        end += 1 + len;
        if len == 0 {
            break;
        }
    }
    end += 4;
    let mut answer = query.get(..end)?.to_vec();
    answer[2] |= 0x80;
    answer[3] = 0x80 | 3;
    answer[4..12].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    Some(answer)
}

/// VmRSS and VmHWM of a process, in MiB.
fn memory(pid: u32) -> (f64, f64) {
    let memory = sinkhole::memory::Memory::of_process(pid);
    (memory.rss_mib, memory.peak_mib)
}
