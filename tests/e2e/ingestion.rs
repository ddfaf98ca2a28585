//! Events sent to the Logs Ingestion API, against a stand-in for Entra ID and Azure Monitor
//! that the test runs on loopback. The stand-in checks each request as the service documents
//! it (path, api-version, bearer token, headers, gzip, a JSON array of objects, at most 1 MB)
//! and plays outages, 429s with Retry-After, refused tokens and slow answers.

use std::collections::{BTreeSet, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use rcgen::ExtendedKeyUsagePurpose;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::certs::Authority;

use crate::harness::{Setup, Sinkhole};
use crate::upstream::Upstream;

const DCR: &str = "dcr-0123456789abcdef0123456789abcdef";
const STREAM: &str = "Custom-SinkholeEvents";
const TENANT: &str = "tenant-test";
const CLIENT: &str = "client-test";
const SECRET: &str = "Zx8Q~not-a-real-secret-2c9f";
const MAX_BODY: usize = 1_000_000;

/// How the stand-in answers the next upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    Accept,
    Unavailable,
    TooMany {
        retry_after_s: u64,
    },
    Unauthorized,
    BadRequest,
    /// Answers 204 after this long: later than sinkhole's timeout, which gives up first.
    Slow(Duration),
}

#[derive(Debug)]
struct Upload {
    at: Instant,
    status: u16,
    events: Vec<serde_json::Value>,
    /// The body's size once gunzipped.
    json_bytes: usize,
}

#[derive(Debug, Default)]
struct Azure {
    /// Replies for the next uploads, then `otherwise` for every further one.
    script: VecDeque<Reply>,
    otherwise: Option<Reply>,
    tokens_issued: u32,
    uploads: Vec<Upload>,
    /// Every way a request differed from what the service documents.
    problems: Vec<String>,
}

/// Entra ID's token endpoint and a data collection endpoint, one thread per connection,
/// over plain HTTP or over TLS with a certificate of the test's own CA.
struct AzureStub {
    addr: SocketAddr,
    scheme: &'static str,
    state: Arc<Mutex<Azure>>,
    stop: Arc<AtomicBool>,
}

impl AzureStub {
    fn start() -> Self {
        Self::listen(None)
    }

    /// Over TLS, with a certificate for 127.0.0.1 that `ca` issued.
    fn start_tls(ca: &Authority) -> Self {
        let identity = ca.issue(&["127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth);
        let chain = CertificateDer::pem_slice_iter(identity.certificate.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(identity.key.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        Self::listen(Some(Arc::new(config)))
    }

    fn listen(tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(Azure::default()));
        let shared = state.clone();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                if stopped.load(Ordering::Relaxed) {
                    return;
                }
                let state = shared.clone();
                let tls = tls.clone();
                std::thread::spawn(move || match tls {
                    None => serve(stream, &state),
                    Some(config) => {
                        let Ok(connection) = rustls::ServerConnection::new(config) else {
                            return;
                        };
                        let mut stream = rustls::StreamOwned::new(connection, stream);
                        serve(&mut stream, &state);
                        stream.conn.send_close_notify();
                        let _ = stream.flush();
                    }
                });
            }
        });
        Self {
            addr,
            scheme,
            state,
            stop,
        }
    }

    fn script(&self, replies: &[Reply], otherwise: Reply) {
        let mut state = self.state.lock().unwrap();
        state.script = replies.iter().copied().collect();
        state.otherwise = Some(otherwise);
    }

    /// The query events accepted so far, by `DnsQuery`.
    fn accepted_queries(&self) -> Vec<String> {
        let state = self.state.lock().unwrap();
        let accepted = state.uploads.iter().filter(|upload| upload.status == 204);
        accepted
            .flat_map(|upload| &upload.events)
            .filter(|event| event["EventType"] == "Query")
            .map(|event| event["DnsQuery"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Waits until every name in `names` was accepted; fails after `within`.
    fn wait_for_all(&self, names: &BTreeSet<String>, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let accepted: BTreeSet<String> = self.accepted_queries().into_iter().collect();
            let missing = names.difference(&accepted).count();
            if missing == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{missing} of {} events never arrived; uploads: {:?}",
                names.len(),
                self.statuses()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn statuses(&self) -> Vec<u16> {
        let state = self.state.lock().unwrap();
        state.uploads.iter().map(|upload| upload.status).collect()
    }

    fn assert_no_problems(&self) {
        let state = self.state.lock().unwrap();
        assert!(state.problems.is_empty(), "{:#?}", state.problems);
    }

    /// The config of the tests: credentials in the config and the secret in a file.
    fn config(&self, extra: &str) -> String {
        let credentials = format!(
            "tenant_id = \"{TENANT}\"\nclient_id = \"{CLIENT}\"\nclient_secret_file = \"azure-secret\"\n"
        );
        self.config_with(&format!("{credentials}{extra}"))
    }

    /// The test timings, each unless `extra` sets it: batches sealed after 200 ms, requests
    /// given 1 s, retries at most 2 s apart.
    fn config_with(&self, extra: &str) -> String {
        let timings: String = [
            "flush_interval_ms = 200",
            "timeout_ms = 1000",
            "max_backoff_ms = 2000",
        ]
        .iter()
        .filter(|line| !extra.contains(line.split(' ').next().unwrap()))
        .map(|line| format!("{line}\n"))
        .collect();
        format!(
            "[events]\nheartbeat_interval_s = 1\n\n[events.logs_ingestion]\n\
             endpoint = \"{1}://{0}\"\nauthority = \"{1}://{0}/\"\n\
             dcr_immutable_id = \"{DCR}\"\n{timings}{extra}\n\n\
             [[blocklist]]\nname = \"remus\"\npath = \"remus.txt\"\nfamily = \"Remus\"\n",
            self.addr, self.scheme
        )
    }
}

impl Drop for AzureStub {
    /// Stops the accept loop: it sees the flag at the connection made to wake it.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = std::net::TcpStream::connect(self.addr);
    }
}

struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

fn read_request(stream: &mut impl Read) -> Option<Request> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let length: usize = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        target,
        headers,
        body,
    })
}

fn respond(stream: &mut impl Write, status: u16, headers: &str, body: &str) {
    let reason = match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        429 => "Too Many Requests",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body.as_bytes());
}

fn serve<S: Read + Write>(mut stream: S, state: &Mutex<Azure>) {
    let Some(request) = read_request(&mut stream) else {
        return;
    };
    let token_path = format!("/{TENANT}/oauth2/v2.0/token");
    if request.target == token_path {
        issue_token(&mut stream, &request, state);
    } else {
        upload(&mut stream, &request, state);
    }
}

/// The client-credentials grant: form fields checked, a token `token-N` for an hour.
fn issue_token(stream: &mut impl Write, request: &Request, state: &Mutex<Azure>) {
    let form = String::from_utf8_lossy(&request.body).into_owned();
    let fields: BTreeSet<String> = form.split('&').map(decode_form).collect();
    let want: BTreeSet<String> = [
        "grant_type=client_credentials".to_owned(),
        format!("client_id={CLIENT}"),
        format!("client_secret={SECRET}"),
        "scope=https://monitor.azure.com//.default".to_owned(),
    ]
    .into();
    let mut state = state.lock().unwrap();
    if request.method != "POST" || fields != want {
        state
            .problems
            .push(format!("token request {} {form}", request.method));
        drop(state);
        respond(stream, 400, "", r#"{"error":"invalid_request"}"#);
        return;
    }
    state.tokens_issued += 1;
    let body = format!(
        r#"{{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"token-{}"}}"#,
        state.tokens_issued
    );
    drop(state);
    respond(stream, 200, "Content-Type: application/json\r\n", &body);
}

fn decode_form(pair: &str) -> String {
    let mut out = Vec::new();
    let mut bytes = pair.bytes();
    while let Some(byte) = bytes.next() {
        match byte {
            b'+' => out.push(b' '),
            b'%' => {
                let hex: String = [bytes.next().unwrap(), bytes.next().unwrap()]
                    .iter()
                    .map(|&b| b as char)
                    .collect();
                out.push(u8::from_str_radix(&hex, 16).unwrap());
            }
            other => out.push(other),
        }
    }
    String::from_utf8(out).unwrap()
}

fn upload(stream: &mut impl Write, request: &Request, state: &Mutex<Azure>) {
    let mut problems = check_upload(request, &state.lock().unwrap());
    let (events, json_bytes) = match decode_body(&request.body) {
        Ok(decoded) => decoded,
        Err(problem) => {
            problems.push(problem);
            (Vec::new(), 0)
        }
    };
    let reply = {
        let mut state = state.lock().unwrap();
        state.problems.extend(problems);
        let otherwise = state.otherwise.unwrap_or(Reply::Accept);
        state.script.pop_front().unwrap_or(otherwise)
    };
    let (status, headers, body) = match reply {
        Reply::Accept => (204, String::new(), ""),
        Reply::Unavailable => (503, String::new(), ""),
        Reply::TooMany { retry_after_s } => (429, format!("Retry-After: {retry_after_s}\r\n"), ""),
        Reply::Unauthorized => (401, String::new(), ""),
        Reply::BadRequest => (
            400,
            "Content-Type: application/json\r\n".to_owned(),
            r#"{"error":{"code":"InvalidStream","message":"Stream not declared in the DCR."}}"#,
        ),
        Reply::Slow(delay) => {
            std::thread::sleep(delay);
            // Nobody is listening any more: not recorded as accepted.
            (503, String::new(), "")
        }
    };
    state.lock().unwrap().uploads.push(Upload {
        at: Instant::now(),
        status,
        events,
        json_bytes,
    });
    respond(stream, status, &headers, body);
}

/// What the service documents for a call: the path and version, a current bearer token,
/// JSON content, gzip encoding, a request id.
fn check_upload(request: &Request, state: &Azure) -> Vec<String> {
    let mut problems = Vec::new();
    let path = format!("/dataCollectionRules/{DCR}/streams/{STREAM}?api-version=2023-01-01");
    if request.method != "POST" || request.target != path {
        problems.push(format!("{} {}", request.method, request.target));
    }
    let bearer = format!("Bearer token-{}", state.tokens_issued);
    if request.header("Authorization") != Some(bearer.as_str()) {
        problems.push(format!(
            "authorization {:?}",
            request.header("Authorization")
        ));
    }
    let expected = [
        ("Content-Type", "application/json"),
        ("Content-Encoding", "gzip"),
    ];
    for (name, value) in expected {
        if request.header(name) != Some(value) {
            problems.push(format!("{name}: {:?}", request.header(name)));
        }
    }
    if request
        .header("x-ms-client-request-id")
        .is_none_or(|id| id.len() != 36)
    {
        problems.push("no x-ms-client-request-id".to_owned());
    }
    if request.body.len() > MAX_BODY {
        problems.push(format!("{} bytes compressed", request.body.len()));
    }
    problems
}

/// Gunzips the body and checks it is a JSON array of objects of at most 1 MB; returns the
/// objects and the size.
fn decode_body(body: &[u8]) -> Result<(Vec<serde_json::Value>, usize), String> {
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut json)
        .map_err(|error| format!("body is not gzip: {error}"))?;
    if json.len() > MAX_BODY {
        return Err(format!("body of {} bytes", json.len()));
    }
    let value: serde_json::Value =
        serde_json::from_slice(&json).map_err(|error| format!("body is not JSON: {error}"))?;
    let events = value.as_array().ok_or("body is not an array")?.clone();
    if events.is_empty() || !events.iter().all(serde_json::Value::is_object) {
        return Err("array is empty or holds something other than objects".to_owned());
    }
    Ok((events, json.len()))
}

fn setup(upstream: SocketAddr, azure: &AzureStub, extra: &str) -> Setup {
    let setup = Setup::bare(vec![upstream], &azure.config(extra));
    setup.write("remus.txt", "posdteu.shop\nmathlah.com\n");
    setup.write("azure-secret", &format!("{SECRET}\n"));
    setup
}

/// Sends a blocked query for `COUNT` distinct names under posdteu.shop; returns the names.
async fn query_many(sinkhole: &Sinkhole, prefix: &str, count: usize) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for n in 0..count {
        let name = format!("{prefix}{n}.posdteu.shop");
        sinkhole.udp(&name, RecordType::A).await;
        names.insert(name);
    }
    names
}

/// Waits until a file of the spool folder holds `needle`: the writer has handed it to the
/// operating system, where a killed process cannot lose it.
fn wait_until_spooled(spool: &std::path::Path, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_dir(spool).unwrap().any(|entry| {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
        text.contains(needle)
    }) {
        assert!(Instant::now() < deadline, "{needle} never spooled");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for a heartbeat whose `sinks.logs_ingestion` satisfies `want`.
async fn wait_for_beat(
    sinkhole: &Sinkhole,
    want: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let beats = sinkhole.events_of("Heartbeat", 1).await;
        if let Some(beat) = beats
            .into_iter()
            .rev()
            .find(|beat| want(&beat["AdditionalFields"]["sinks"]["logs_ingestion"]))
        {
            return beat;
        }
        assert!(Instant::now() < deadline, "no such heartbeat");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn events_reach_the_logs_ingestion_api_as_documented() {
    let upstream = Upstream::start().await;
    let azure = AzureStub::start();
    // Batches are sealed by size only, the last one by the stop: the interval never passes.
    let mut sinkhole = setup(upstream.addr, &azure, "flush_interval_ms = 600000").start();

    let names = query_many(&sinkhole, "c2-", 2500).await;
    assert_eq!(sinkhole.stop(), Some(0));
    azure.wait_for_all(&names, Duration::from_secs(5));
    azure.assert_no_problems();

    let state = azure.state.lock().unwrap();
    assert_eq!(state.tokens_issued, 1, "the token is cached across batches");
    let accepted: Vec<&Upload> = state.uploads.iter().filter(|u| u.status == 204).collect();
    let full = accepted.iter().filter(|u| u.json_bytes > 900_000).count();
    assert!(full >= 2, "2,500 events fill batches close to 1 MB: {full}");
    let queries: Vec<&serde_json::Value> = accepted
        .iter()
        .flat_map(|upload| &upload.events)
        .filter(|event| event["EventType"] == "Query")
        .collect();
    assert_eq!(queries.len(), 2500, "each event once");
    let event = queries[0];
    assert_eq!(event["DvcAction"], "Blocked");
    assert_eq!(event["ThreatName"], "Remus");
    assert_eq!(event["EventSchema"], "Dns");
    let kinds: BTreeSet<&str> = accepted
        .iter()
        .flat_map(|upload| &upload.events)
        .map(|event| event["EventType"].as_str().unwrap())
        .collect();
    assert!(kinds.contains("PolicyReload"), "{kinds:?}");
    drop(state);

    let log = sinkhole.log();
    assert!(!log.contains(SECRET), "the client secret reached the log");
    assert!(!log.contains("token-1"), "the access token reached the log");
}

#[tokio::test(flavor = "multi_thread")]
async fn outages_429s_refused_tokens_and_slow_answers_lose_nothing() {
    let upstream = Upstream::start().await;
    let azure = AzureStub::start();
    azure.script(
        &[
            Reply::Unauthorized,
            Reply::Unavailable,
            Reply::TooMany { retry_after_s: 2 },
            Reply::Slow(Duration::from_millis(2000)),
        ],
        Reply::Accept,
    );
    // Tenant, client and secret from the environment, as the Azure SDKs read them.
    let mut setup = Setup::bare(vec![upstream.addr], &azure.config_with(""));
    setup.write("remus.txt", "posdteu.shop\nmathlah.com\n");
    setup.env = [
        ("AZURE_TENANT_ID", TENANT),
        ("AZURE_CLIENT_ID", CLIENT),
        ("AZURE_CLIENT_SECRET", SECRET),
    ]
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .to_vec();
    let sinkhole = setup.start();

    let names = query_many(&sinkhole, "retry-", 50).await;
    azure.wait_for_all(&names, Duration::from_secs(40));
    azure.assert_no_problems();

    check_retries(&azure);

    let beat = wait_for_beat(&sinkhole, |api| api["sent"].as_u64() >= Some(50)).await;
    let api = &beat["AdditionalFields"]["sinks"]["logs_ingestion"];
    assert_eq!(api["dropped"], 0, "{api}");
    assert!(
        sinkhole
            .log()
            .contains("events not sent to the Logs Ingestion API")
    );
}

/// The uploads of `outages_429s_refused_tokens_and_slow_answers_lose_nothing`, in order.
fn check_retries(azure: &AzureStub) {
    let state = azure.state.lock().unwrap();
    let statuses: Vec<u16> = state.uploads.iter().map(|u| u.status).collect();
    assert_eq!(&statuses[..5], [401, 503, 429, 503, 204], "{statuses:?}");
    assert_eq!(state.tokens_issued, 2, "a refused token is fetched again");
    let after_429 = state.uploads[3].at.duration_since(state.uploads[2].at);
    // The slow answer is recorded when it ends, 2 s after its request was sent.
    assert!(
        after_429 >= Duration::from_millis(2000 + 2000 - 100),
        "Retry-After: 2 not honoured: {after_429:?}"
    );
    let accepted = state.uploads.iter().filter(|u| u.status == 204);
    let queries = accepted
        .flat_map(|upload| &upload.events)
        .filter(|event| event["EventType"] == "Query")
        .count();
    assert_eq!(queries, 50, "the batch went through once");
}

#[tokio::test(flavor = "multi_thread")]
async fn spooled_events_survive_a_stop_and_a_crash() {
    let upstream = Upstream::start().await;
    let azure = AzureStub::start();
    azure.script(&[], Reply::Unavailable);
    let mut sinkhole = setup(upstream.addr, &azure, "").start();

    let first = query_many(&sinkhole, "stopped-", 30).await;
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sinkhole.stop(), Some(0));
    let statuses = azure.statuses();
    assert!(!statuses.is_empty() && statuses.iter().all(|&status| status == 503));
    let spool = sinkhole.setup.path("events.ndjson.spool");
    let batches = std::fs::read_dir(&spool).unwrap().count();
    assert!(batches > 0, "nothing in {}", spool.display());

    azure.script(&[], Reply::Accept);
    sinkhole.restart();
    azure.wait_for_all(&first, Duration::from_secs(20));

    // A crash (SIGKILL) while Azure is down: the batch it left open is sent after the restart.
    azure.script(&[], Reply::Unavailable);
    let second = query_many(&sinkhole, "killed-", 20).await;
    wait_until_spooled(&spool, "killed-19.posdteu.shop");
    sinkhole.restart();
    azure.script(&[], Reply::Accept);
    azure.wait_for_all(&second, Duration::from_secs(20));
    azure.assert_no_problems();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_spool_drops_the_oldest_and_counts_them() {
    let upstream = Upstream::start().await;
    let azure = AzureStub::start();
    azure.script(&[], Reply::Unavailable);
    let sinkhole = setup(upstream.addr, &azure, "spool_max_bytes = 1000000").start();

    let names = query_many(&sinkhole, "flood-", 2000).await;
    let spool = sinkhole.setup.path("events.ndjson.spool");
    let beat = wait_for_beat(&sinkhole, |api| api["dropped"] != 0).await;
    let api = &beat["AdditionalFields"]["sinks"]["logs_ingestion"];
    assert!(api["backlog_bytes"].as_u64().unwrap() <= 1_000_000, "{api}");
    assert!(
        api["last_error"].as_str().unwrap().starts_with("HTTP 503"),
        "{api}"
    );
    let sealed: u64 = std::fs::read_dir(&spool)
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.file_name().to_string_lossy().ends_with(".ndjson"))
        .map(|entry| entry.metadata().unwrap().len())
        .sum();
    assert!(sealed <= 1_000_000, "{sealed} bytes spooled");

    azure.script(&[], Reply::Accept);
    let newest: BTreeSet<String> = (1990..2000)
        .map(|n| format!("flood-{n}.posdteu.shop"))
        .collect();
    azure.wait_for_all(&newest, Duration::from_secs(20));
    let accepted: BTreeSet<String> = azure.accepted_queries().into_iter().collect();
    assert!(
        !accepted.contains("flood-0.posdteu.shop"),
        "the oldest were dropped"
    );
    assert!(accepted.len() < names.len());
    assert!(sinkhole.log().contains("spool full"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_the_service_refuses_is_dropped_and_logged() {
    let upstream = Upstream::start().await;
    let azure = AzureStub::start();
    azure.script(&[Reply::BadRequest], Reply::Accept);
    let sinkhole = setup(upstream.addr, &azure, "").start();

    // The PolicyReload event of the start is the batch refused.
    let line = sinkhole.wait_for_log("refused a batch");
    assert!(line.contains("HTTP 400: InvalidStream"), "{line}");
    let names = query_many(&sinkhole, "after-", 5).await;
    azure.wait_for_all(&names, Duration::from_secs(10));
    azure.assert_no_problems();
}

#[tokio::test(flavor = "multi_thread")]
async fn https_with_a_private_ca_needs_ca_file() {
    let upstream = Upstream::start().await;
    let ca = Authority::new("Proxy inspection CA");
    let azure = AzureStub::start_tls(&ca);

    // Only the public CAs: the stand-in's certificate is refused, nothing is sent.
    let mut sinkhole = setup(upstream.addr, &azure, "").start();
    let mut names = query_many(&sinkhole, "untrusted-", 3).await;
    let beat = wait_for_beat(&sinkhole, |api| {
        api["last_error"]
            .as_str()
            .is_some_and(|error| error.contains("certificate"))
    })
    .await;
    assert_eq!(
        beat["AdditionalFields"]["sinks"]["logs_ingestion"]["sent"],
        0
    );
    assert!(azure.accepted_queries().is_empty());

    // With the CA in ca_file, what waited in the spool goes through, and the new events.
    sinkhole.setup.write("proxy-ca.pem", &ca.pem());
    sinkhole.setup.config = azure.config("ca_file = \"proxy-ca.pem\"");
    sinkhole.restart();
    names.extend(query_many(&sinkhole, "trusted-", 3).await);
    azure.wait_for_all(&names, Duration::from_secs(20));
    azure.assert_no_problems();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clean_stop_sends_the_batch_being_filled() {
    let upstream = Upstream::start().await;
    let azure = AzureStub::start();
    // A batch that never fills up in time: only the stop seals it.
    let mut sinkhole = setup(upstream.addr, &azure, "flush_interval_ms = 600000").start();
    let names = query_many(&sinkhole, "last-", 20).await;
    std::thread::sleep(Duration::from_millis(300));
    assert!(azure.accepted_queries().is_empty());

    assert_eq!(sinkhole.stop(), Some(0));
    azure.wait_for_all(&names, Duration::from_secs(1));
    let log = sinkhole.log();
    assert!(log.contains("logs ingestion stopped"), "{log}");
}
