//! Events to a real syslog collector: rsyslog from Debian, started on loopback by the test,
//! receiving RFC 5424 messages with a JSON body over UDP, a CEF body over TCP, and a JSON body
//! over TLS (RFC 5425) from certificates the test issues.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use rcgen::ExtendedKeyUsagePurpose;

use crate::certs::{Authority, Identity};

use crate::harness::{REMUS, Setup, Sinkhole, free_port};
use crate::upstream::Upstream;

const RSYSLOGD: &str = "/usr/sbin/rsyslogd";

struct Collector {
    child: Child,
    dir: tempfile::TempDir,
    /// The ports of its two inputs, in the order of its config.
    ports: [u16; 2],
}

impl Collector {
    /// rsyslogd with a UDP input and a TCP input.
    fn plain() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::start(dir, "", |[udp, tcp]| {
            format!(
                r#"module(load="imudp")
module(load="imtcp")
input(type="imudp" address="127.0.0.1" port="{udp}")
input(type="imtcp" address="127.0.0.1" port="{tcp}")
"#
            )
        })
    }

    /// rsyslogd with two TLS inputs presenting `identity`, a certificate `ca` signs: the first
    /// takes any client, the second only clients with a certificate `ca` signs.
    fn tls(ca: &Authority, identity: &Identity) -> Self {
        assert!(
            gtls_installed(),
            "rsyslog's TLS driver is needed for this test: apt-get install rsyslog-gnutls \
             (.ci/run installs it)"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.path().join("collector.pem"), &identity.certificate).unwrap();
        std::fs::write(dir.path().join("collector.key"), &identity.key).unwrap();
        let path = dir.path().display();
        let global = format!(
            r#"
    defaultNetstreamDriverCAFile="{path}/ca.pem"
    defaultNetstreamDriverCertFile="{path}/collector.pem"
    defaultNetstreamDriverKeyFile="{path}/collector.key""#
        );
        Self::start(dir, &global, |[tls, mutual]| {
            format!(
                r#"module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1"
    streamDriver.authMode="anon")
input(type="imtcp" address="127.0.0.1" port="{tls}")
input(type="imtcp" address="127.0.0.1" port="{mutual}" streamDriver.authMode="x509/certvalid")
"#
            )
        })
    }

    /// Starts rsyslogd in `dir` with `global` settings and the `inputs` on two free ports;
    /// every message it gets is written raw to `received.log`.
    fn start(dir: tempfile::TempDir, global: &str, inputs: impl Fn([u16; 2]) -> String) -> Self {
        assert!(
            Path::new(RSYSLOGD).exists(),
            "rsyslog is needed for this test: apt-get install rsyslog (.ci/run installs it)"
        );
        let ports = [free_port(), free_port()];
        let path = dir.path().display();
        let conf = format!(
            r#"global(workDirectory="{path}"{global})
{}template(name="raw" type="string" string="%rawmsg%\n")
*.* action(type="omfile" file="{path}/received.log" template="raw")
"#,
            inputs(ports)
        );
        std::fs::write(dir.path().join("rsyslog.conf"), conf).unwrap();
        let child = Command::new(RSYSLOGD)
            .args(["-n", "-f"])
            .arg(dir.path().join("rsyslog.conf"))
            .arg("-i")
            .arg(dir.path().join("rsyslog.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rsyslogd");
        let collector = Self { child, dir, ports };
        collector.wait_until_listening();
        collector
    }

    /// Waits until the second input takes connections: it is TCP in both configs, and
    /// rsyslogd opens the inputs in order.
    fn wait_until_listening(&self) {
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.ports[1])).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "rsyslogd did not start; it logged:\n{}",
                self.received()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Everything received so far, rsyslogd's own messages included.
    fn received(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("received.log")).unwrap_or_default()
    }

    /// Waits until a received line holds `needle`; returns that line.
    fn wait_for(&self, needle: &str) -> String {
        let started = Instant::now();
        loop {
            let text = self.received();
            if let Some(line) = text.lines().find(|line| line.contains(needle)) {
                return line.to_owned();
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "rsyslog never received {needle:?}; it has:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether Debian's `rsyslog-gnutls` is installed: its GnuTLS stream driver, in the
/// architecture's library folder.
fn gtls_installed() -> bool {
    let Ok(folders) = std::fs::read_dir("/usr/lib") else {
        return false;
    };
    folders
        .filter_map(Result::ok)
        .any(|folder| folder.path().join("rsyslog/lmnsd_gtls.so").exists())
}

/// A config that sends events to syslog with `syslog` (the table's lines) and blocks REMUS.
fn syslog_config(syslog: &str) -> String {
    format!(
        r#"[events.syslog]
{syslog}
[[blocklist]]
name = "remus"
path = "remus.txt"
family = "Remus"
"#
    )
}

/// The JSON body of a received RFC 5424 line.
fn json_body(line: &str) -> serde_json::Value {
    let body = &line[line.find('{').expect("a JSON body")..];
    serde_json::from_str(body).unwrap()
}

/// Starts sinkhole blocking REMUS, with `syslog` as the lines of `[events.syslog]` and
/// `files` (name, text) written beside its config.
fn start_sinkhole(upstream: &Upstream, syslog: &str, files: &[(&str, &str)]) -> Sinkhole {
    let setup = Setup::bare(vec![upstream.addr], &syslog_config(syslog));
    setup.write("remus.txt", REMUS);
    for (name, text) in files {
        setup.write(name, text);
    }
    setup.start()
}

#[tokio::test(flavor = "multi_thread")]
async fn events_reach_rsyslog_as_json_over_udp_and_cef_over_tcp() {
    let upstream = Upstream::start().await;
    let collector = Collector::plain();
    let [udp, tcp] = collector.ports;

    let table = format!("address = \"127.0.0.1:{udp}\"\n");
    let json_sinkhole = start_sinkhole(&upstream, &table, &[]);
    json_sinkhole.udp("json.posdteu.shop", RecordType::A).await;
    let line = collector.wait_for("json.posdteu.shop");
    assert!(
        line.starts_with("<132>1 "),
        "local0.warning, version 1: {line}"
    );
    assert!(line.contains(" sinkhole "), "{line}");
    assert!(line.contains(" Query - {"), "{line}");
    let event = json_body(&line);
    assert_eq!(event["DvcAction"], "Blocked");
    assert_eq!(event["RuleName"], "remus");

    let table = format!("address = \"127.0.0.1:{tcp}\"\ntransport = \"tcp\"\nformat = \"cef\"\n");
    let cef_sinkhole = start_sinkhole(&upstream, &table, &[]);
    cef_sinkhole.udp("cef.mathlah.com", RecordType::A).await;
    let line = collector.wait_for("destinationDnsDomain=cef.mathlah.com");
    assert!(line.contains("CEF:0|sinkhole|sinkhole|"), "{line}");
    assert!(line.contains("|dns-blocked|DNS query blocked|"), "{line}");
    for part in [
        "act=Blocked",
        "proto=UDP",
        "src=127.0.0.1",
        "cs3=remus",
        "cs4=Remus",
        "cs1=A",
    ] {
        assert!(line.contains(part), "{part}: {line}");
    }
    // The policy events of each start went too.
    collector.wait_for("PolicyReload");
}

/// Over TLS the collector's certificate is checked against `ca_file`, for the address's IP by
/// default. A collector that wants a client certificate refuses sinkhole without one, and
/// takes the one of `cert_file` and `key_file`.
#[tokio::test(flavor = "multi_thread")]
async fn events_reach_rsyslog_over_tls_and_mutual_tls() {
    let upstream = Upstream::start().await;
    let ca = Authority::new("sinkhole test CA");
    let identity = ca.issue(&["127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth);
    let collector = Collector::tls(&ca, &identity);
    let [tls, mutual] = collector.ports;
    let ca_pem = ca.pem();
    let ca_file = ("ca.pem", ca_pem.as_str());

    let table =
        format!("address = \"127.0.0.1:{tls}\"\ntransport = \"tls\"\nca_file = \"ca.pem\"\n");
    let sinkhole = start_sinkhole(&upstream, &table, &[ca_file]);
    assert!(sinkhole.blocked("tls.posdteu.shop").await);
    let line = collector.wait_for("tls.posdteu.shop");
    assert!(line.starts_with("<132>1 "), "{line}");
    let event = json_body(&line);
    assert_eq!(event["DnsQuery"], "tls.posdteu.shop");
    assert_eq!(event["DvcAction"], "Blocked");
    assert_eq!(event["ThreatName"], "Remus");

    // Without a client certificate the mutual input drops the connection (after the TLS 1.3
    // handshake, so sinkhole learns it at a later write): the input does ask for one.
    let table =
        format!("address = \"127.0.0.1:{mutual}\"\ntransport = \"tls\"\nca_file = \"ca.pem\"\n");
    let anonymous = start_sinkhole(&upstream, &table, &[ca_file]);
    let started = Instant::now();
    while !anonymous.log().contains("events not sent sink=\"syslog\"") {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{}",
            anonymous.log()
        );
        assert!(anonymous.blocked("anonymous.mathlah.com").await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let client = ca.issue(&["sinkhole.test"], ExtendedKeyUsagePurpose::ClientAuth);
    let files = [
        ca_file,
        ("client.pem", &client.certificate),
        ("client.key", &client.key),
    ];
    let table = format!("{table}cert_file = \"client.pem\"\nkey_file = \"client.key\"\n");
    let sinkhole = start_sinkhole(&upstream, &table, &files);
    assert!(sinkhole.blocked("mutual.mathlah.com").await);
    let event = json_body(&collector.wait_for("mutual.mathlah.com"));
    assert_eq!(event["DnsQuery"], "mutual.mathlah.com");
    assert_eq!(event["DvcAction"], "Blocked");
    let received = collector.received();
    assert!(!received.contains("anonymous.mathlah.com"), "{received}");
}

/// A collector whose certificate `ca_file` does not vouch for gets no event; sinkhole logs why
/// and keeps answering. The same collector, trusted, gets the events: only trust differs.
#[tokio::test(flavor = "multi_thread")]
async fn a_collector_with_an_untrusted_certificate_gets_nothing() {
    let upstream = Upstream::start().await;
    let ours = Authority::new("sinkhole test CA");
    let theirs = Authority::new("another CA");
    let identity = theirs.issue(
        &["127.0.0.1", "collector.test"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let collector = Collector::tls(&theirs, &identity);
    let [tls, _] = collector.ports;

    let table =
        format!("address = \"127.0.0.1:{tls}\"\ntransport = \"tls\"\nca_file = \"ca.pem\"\n");
    let sinkhole = start_sinkhole(&upstream, &table, &[("ca.pem", &ours.pem())]);
    assert!(sinkhole.blocked("untrusted.posdteu.shop").await);
    let warning = sinkhole.wait_for_log("events not sent sink=\"syslog\"");
    assert!(warning.contains("TLS handshake"), "{warning}");
    assert!(warning.contains("invalid peer certificate"), "{warning}");
    assert!(
        sinkhole.blocked("still.posdteu.shop").await,
        "still serving"
    );
    let events = sinkhole.events(2).await;
    assert_eq!(
        events[1]["DnsQuery"], "still.posdteu.shop",
        "the file has them"
    );

    let table = table.replace("ca.pem", "theirs.pem") + "server_name = \"collector.test\"\n";
    let trusting = start_sinkhole(&upstream, &table, &[("theirs.pem", &theirs.pem())]);
    assert!(trusting.blocked("trusted.posdteu.shop").await);
    collector.wait_for("trusted.posdteu.shop");
    let received = collector.received();
    for name in ["untrusted.posdteu.shop", "still.posdteu.shop"] {
        assert!(
            !received.contains(name),
            "{name} reached the untrusted collector: {received}"
        );
    }
}
