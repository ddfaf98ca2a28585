//! Events to a real syslog collector: rsyslog from Debian, started on loopback by the test,
//! receiving RFC 5424 messages with a JSON body over UDP and a CEF body over TCP.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;

use crate::harness::{REMUS, Setup};
use crate::upstream::Upstream;

const RSYSLOGD: &str = "/usr/sbin/rsyslogd";

struct Collector {
    child: Child,
    dir: tempfile::TempDir,
    udp: u16,
    tcp: u16,
}

impl Collector {
    fn start() -> Self {
        assert!(
            Path::new(RSYSLOGD).exists(),
            "rsyslog is needed for this test: apt-get install rsyslog (.ci/run installs it)"
        );
        let dir = tempfile::tempdir().unwrap();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let tcp = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let path = dir.path().display();
        let conf = format!(
            "global(workDirectory=\"{path}\")\nmodule(load=\"imudp\")\nmodule(load=\"imtcp\")\ninput(type=\"imudp\" address=\"127.0.0.1\" port=\"{udp}\")\ninput(type=\"imtcp\" address=\"127.0.0.1\" port=\"{tcp}\")\ntemplate(name=\"raw\" type=\"string\" string=\"%rawmsg%\\n\")\n*.* action(type=\"omfile\" file=\"{path}/received.log\" template=\"raw\")\n"
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
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", tcp)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "rsyslogd did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            dir,
            udp,
            tcp,
        }
    }

    /// Waits until a received line holds `needle`; returns that line.
    fn wait_for(&self, needle: &str) -> String {
        let started = Instant::now();
        loop {
            let text =
                std::fs::read_to_string(self.dir.path().join("received.log")).unwrap_or_default();
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

#[tokio::test(flavor = "multi_thread")]
async fn events_reach_rsyslog_as_json_over_udp_and_cef_over_tcp() {
    let upstream = Upstream::start().await;
    let collector = Collector::start();

    let json_config = format!(
        "[events.syslog]\naddress = \"127.0.0.1:{}\"\n\n[[blocklist]]\nname = \"remus\"\npath = \"remus.txt\"\nfamily = \"Remus\"\n",
        collector.udp
    );
    let setup = Setup::bare(vec![upstream.addr], &json_config);
    setup.write("remus.txt", REMUS);
    let json_sinkhole = setup.start();
    json_sinkhole.udp("json.posdteu.shop", RecordType::A).await;
    let line = collector.wait_for("json.posdteu.shop");
    assert!(
        line.starts_with("<132>1 "),
        "local0.warning, version 1: {line}"
    );
    assert!(line.contains(" sinkhole "), "{line}");
    assert!(line.contains(" Query - {"), "{line}");
    let body = &line[line.find('{').unwrap()..];
    let event: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(event["DvcAction"], "Blocked");
    assert_eq!(event["RuleName"], "remus");

    let cef_config = format!(
        "[events.syslog]\naddress = \"127.0.0.1:{}\"\ntransport = \"tcp\"\nformat = \"cef\"\n\n[[blocklist]]\nname = \"remus\"\npath = \"remus.txt\"\nfamily = \"Remus\"\n",
        collector.tcp
    );
    let setup = Setup::bare(vec![upstream.addr], &cef_config);
    setup.write("remus.txt", REMUS);
    let cef_sinkhole = setup.start();
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
