//! An RPZ zone transferred from a real primary: NSD from Debian, started on loopback by the
//! test. The zone is transferred at start, a new serial arrives by NOTIFY, and a restart with
//! the primary gone enforces the last good copy.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::harness::{Setup, Sinkhole, free_port};
use crate::upstream::Upstream;

const NSD: &str = "/usr/sbin/nsd";

/// An NSD primary for `rpz.example` on a loopback port, in a folder of its own.
struct Primary {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Primary {
    /// Writes the config and zone (serial 1) and starts NSD in the foreground.
    fn start(port: u16, notify: std::net::SocketAddr) -> Self {
        Self::start_with(port, notify, None)
    }

    /// As [`Primary::start`]; with a key, NSD transfers the zone only to requests signed
    /// with it.
    fn start_with(port: u16, notify: std::net::SocketAddr, key: Option<&str>) -> Self {
        assert!(
            Path::new(NSD).exists(),
            "NSD is needed for this test: apt-get install nsd (.ci/run installs it)"
        );
        let dir = tempfile::tempdir().unwrap();
        let conf = format!(
            "{key_section}server:\n  ip-address: 127.0.0.1@{port}\n  port: {port}\n  username: \"\"\n  chroot: \"\"\n  zonesdir: \"{dir}\"\n  pidfile: \"{dir}/nsd.pid\"\n  database: \"\"\n  xfrdfile: \"{dir}/xfrd.state\"\n  zonelistfile: \"{dir}/zone.list\"\n  logfile: \"{dir}/nsd.log\"\n  server-count: 1\n  verbosity: 2\nremote-control:\n  control-enable: no\nzone:\n  name: rpz.example\n  zonefile: rpz.example.zone\n  provide-xfr: 127.0.0.0/8 {xfr_key}\n  notify: {notify_ip}@{notify_port} NOKEY\n",
            dir = dir.path().display(),
            notify_ip = notify.ip(),
            notify_port = notify.port(),
            key_section = key.map_or(String::new(), |secret| format!(
                "key:\n  name: sinkhole-xfr\n  algorithm: hmac-sha256\n  secret: \"{secret}\"\n"
            )),
            xfr_key = if key.is_some() {
                "sinkhole-xfr"
            } else {
                "NOKEY"
            },
        );
        std::fs::write(dir.path().join("nsd.conf"), conf).unwrap();
        write_zone(dir.path(), 1, &["c2.feed.example CNAME ."]);
        let child = Command::new(NSD)
            .args(["-d", "-c"])
            .arg(dir.path().join("nsd.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nsd");
        let primary = Self { child, dir, port };
        primary.wait_serving();
        primary
    }

    fn wait_serving(&self) {
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "nsd did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nsd.log")).unwrap_or_default()
    }

    /// A new version of the zone; SIGHUP makes NSD load it and send NOTIFY.
    fn publish(&self, serial: u32, records: &[&str]) {
        write_zone(self.dir.path(), serial, records);
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    }
}

impl Drop for Primary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_zone(dir: &Path, serial: u32, records: &[&str]) {
    let mut zone = format!(
        "$ORIGIN rpz.example.\n$TTL 60\n@ SOA ns.rpz.example. admin.rpz.example. {serial} 3600 600 86400 60\n@ NS localhost.\n"
    );
    for record in records {
        zone.push_str(record);
        zone.push('\n');
    }
    std::fs::write(dir.join("rpz.example.zone"), zone).unwrap();
}

/// Whether sinkhole answers NXDOMAIN itself: the names used are outside the test upstream's
/// zone, which answers REFUSED for them.
async fn nxdomain(sinkhole: &Sinkhole, name: &str) -> bool {
    let answer = sinkhole.udp(name, RecordType::A).await;
    answer.metadata.response_code == ResponseCode::NXDomain && answer.answers.is_empty()
}

async fn until_nxdomain(sinkhole: &Sinkhole, name: &str, within: Duration) -> Duration {
    let started = Instant::now();
    while !nxdomain(sinkhole, name).await {
        assert!(
            started.elapsed() < within,
            "{name} not blocked after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

fn stored(sinkhole: &Sinkhole) -> PathBuf {
    sinkhole.setup.path("rpz.zone")
}

#[tokio::test(flavor = "multi_thread")]
async fn an_rpz_zone_is_transferred_updated_by_notify_and_kept() {
    let upstream = Upstream::start().await;
    let port = free_port();
    // `refresh` is long: only NOTIFY can bring the second serial in time.
    let config = format!(
        "[[blocklist]]\nname = \"rpz\"\npath = \"rpz.zone\"\nprimary = \"127.0.0.1:{port}\"\norigin = \"rpz.example\"\nrefresh = \"1h\"\nfetch_timeout_ms = 2000\n"
    );
    let mut sinkhole = Setup::bare(vec![upstream.addr], &config).start();
    let primary = Primary::start(port, sinkhole.addr);

    // The first check failed (NSD was not up yet); the retry transfers serial 1.
    until_nxdomain(&sinkhole, "c2.feed.example", Duration::from_secs(8)).await;
    sinkhole.wait_for_log("zone transferred");
    assert!(
        std::fs::read_to_string(stored(&sinkhole))
            .unwrap()
            .contains("c2.feed.example")
    );

    primary.publish(
        2,
        &["c2.feed.example CNAME .", "*.notified.example CNAME ."],
    );
    let took = until_nxdomain(&sinkhole, "a.notified.example", Duration::from_secs(5)).await;
    assert!(
        took < Duration::from_secs(3),
        "NOTIFY applied after {took:?}"
    );
    sinkhole.wait_for_log("NOTIFY received");
    assert!(nxdomain(&sinkhole, "b.notified.example").await);
    assert_eq!(
        upstream.count("b.notified.example"),
        0,
        "never left the host"
    );

    // The primary goes away: a restart enforces the copy on disk at once.
    drop(primary);
    sinkhole.restart();
    assert!(
        nxdomain(&sinkhole, "x.notified.example").await,
        "last good copy in force"
    );
    sinkhole.wait_for_log("zone transfer failed; the last good copy stays in force");
    assert!(nxdomain(&sinkhole, "c2.feed.example").await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_notify_from_a_stranger_is_refused() {
    use hickory_proto::op::{Message, MessageType, OpCode, Query};
    use hickory_proto::rr::Name;

    let upstream = Upstream::start().await;
    let config = "[[blocklist]]\nname = \"rpz\"\npath = \"rpz.zone\"\nprimary = \"127.0.0.2:53\"\norigin = \"rpz.example\"\nfetch_timeout_ms = 200\n";
    let sinkhole = Setup::bare(vec![upstream.addr], config).start();

    let mut notify = Message::new(0x4242, MessageType::Query, OpCode::Notify);
    notify.add_query(Query::query(
        Name::from_ascii("rpz.example.").unwrap(),
        RecordType::SOA,
    ));
    let bytes = notify.to_vec().unwrap();
    for (from, expected) in [
        ("127.0.0.1:0", ResponseCode::Refused),
        ("127.0.0.2:0", ResponseCode::NoError),
    ] {
        let answer = crate::harness::udp_raw(sinkhole.addr, &bytes, from)
            .await
            .unwrap();
        let answer = Message::from_vec(&answer).unwrap();
        assert_eq!(answer.metadata.op_code, OpCode::Notify, "{from}");
        assert_eq!(answer.metadata.response_code, expected, "{from}");
        assert_eq!(answer.metadata.id, 0x4242);
    }
}

const SECRET: &str = "c2lua2hvbGUtdHNpZy10ZXN0LWtleS0zMi1ieXRlcyE=";

#[tokio::test(flavor = "multi_thread")]
async fn transfers_are_signed_with_tsig() {
    let upstream = Upstream::start().await;
    let port = free_port();
    let config = format!(
        "[[blocklist]]\nname = \"rpz\"\npath = \"rpz.zone\"\nprimary = \"127.0.0.1:{port}\"\norigin = \"rpz.example\"\nfetch_timeout_ms = 2000\ntsig_key = \"sinkhole-xfr\"\ntsig_secret_file = \"xfr.key\"\n"
    );
    let setup = Setup::bare(vec![upstream.addr], &config);
    // As `tsig-keygen` writes it.
    setup.write(
        "xfr.key",
        &format!(
            "key \"sinkhole-xfr\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{SECRET}\";\n}};\n"
        ),
    );
    let sinkhole = setup.start();
    let _primary = Primary::start_with(port, sinkhole.addr, Some(SECRET));
    until_nxdomain(&sinkhole, "c2.feed.example", Duration::from_secs(8)).await;

    // A wrong secret is refused by the primary and never transferred.
    let port = free_port();
    let config = config.replace(&format!(":{}", sinkhole_port(&config)), &format!(":{port}"));
    let setup = Setup::bare(vec![upstream.addr], &config);
    setup.write("xfr.key", "c29tZSBvdGhlciBzZWNyZXQgb2YgMzIgYnl0ZXMhISE=\n");
    let wrong = setup.start();
    let _other = Primary::start_with(port, wrong.addr, Some(SECRET));
    // Earlier failures may be the primary not listening yet; wait for the refusal itself.
    let deadline = Instant::now() + crate::harness::WAIT * 3;
    while !wrong.log().lines().any(|line| {
        line.contains("zone transfer failed")
            && (line.contains("TSIG") || line.contains("Not Authorized"))
    }) {
        assert!(
            Instant::now() < deadline,
            "no TSIG refusal in:\n{}",
            wrong.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!nxdomain(&wrong, "c2.feed.example").await);
    assert!(!wrong.setup.path("rpz.zone").exists());
}

/// The primary's port in a config written above.
fn sinkhole_port(config: &str) -> u16 {
    let at = config.find("127.0.0.1:").unwrap() + "127.0.0.1:".len();
    config[at..].split('"').next().unwrap().parse().unwrap()
}

const KNOTD: &str = "/usr/sbin/knotd";

/// A Knot DNS primary that keeps the zone's history, so it answers IXFR with the changes.
struct KnotPrimary {
    child: Child,
    dir: tempfile::TempDir,
}

impl KnotPrimary {
    fn start(port: u16, notify: std::net::SocketAddr) -> Self {
        assert!(
            Path::new(KNOTD).exists(),
            "Knot is needed for this test: apt-get install knot (.ci/run installs it)"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().display();
        let conf = format!(
            "server:\n    listen: 127.0.0.1@{port}\n    rundir: {path}\ncontrol:\n    listen: {path}/knot.sock\nlog:\n  - target: {path}/knot.log\n    any: info\ndatabase:\n    storage: {path}\nremote:\n  - id: sinkhole\n    address: {notify}\nacl:\n  - id: xfr\n    address: 127.0.0.0/8\n    action: transfer\ntemplate:\n  - id: default\n    storage: {path}\n    zonefile-sync: -1\n    zonefile-load: difference\n    journal-content: changes\nzone:\n  - domain: rpz.example\n    file: rpz.example.zone\n    acl: xfr\n    notify: sinkhole\n",
            notify = format_args!("{}@{}", notify.ip(), notify.port()),
        );
        std::fs::write(dir.path().join("knot.conf"), conf).unwrap();
        write_zone(
            dir.path(),
            1,
            &["c2.feed.example CNAME .", "old.feed.example CNAME ."],
        );
        let child = Command::new(KNOTD)
            .arg("-c")
            .arg(dir.path().join("knot.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start knotd");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "knotd did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, dir }
    }

    /// A new version of the zone file; Knot loads the difference and sends NOTIFY.
    fn publish(&self, serial: u32, records: &[&str]) {
        write_zone(self.dir.path(), serial, records);
        let status = Command::new("/usr/sbin/knotc")
            .arg("-c")
            .arg(self.dir.path().join("knot.conf"))
            .args(["zone-reload", "rpz.example"])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "knotc zone-reload");
    }
}

impl Drop for KnotPrimary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn changes_come_by_ixfr_where_the_primary_offers_it() {
    let upstream = Upstream::start().await;
    let port = free_port();
    let config = format!(
        "[[blocklist]]\nname = \"rpz\"\npath = \"rpz.zone\"\nprimary = \"127.0.0.1:{port}\"\norigin = \"rpz.example\"\nrefresh = \"1h\"\nfetch_timeout_ms = 2000\n"
    );
    let sinkhole = Setup::bare(vec![upstream.addr], &config).start();
    let primary = KnotPrimary::start(port, sinkhole.addr);
    until_nxdomain(&sinkhole, "old.feed.example", Duration::from_secs(8)).await;
    sinkhole.wait_for_log("kind=\"AXFR\"");

    primary.publish(2, &["c2.feed.example CNAME .", "new.feed.example CNAME ."]);
    until_nxdomain(&sinkhole, "new.feed.example", Duration::from_secs(5)).await;
    sinkhole.wait_for_log("kind=\"IXFR\"");
    assert!(
        !nxdomain(&sinkhole, "old.feed.example").await,
        "deleted by the change"
    );
    assert!(nxdomain(&sinkhole, "c2.feed.example").await, "kept");
    let copy = std::fs::read_to_string(stored(&sinkhole)).unwrap();
    assert!(copy.contains("new.feed.example") && !copy.contains("old.feed.example"));
}
