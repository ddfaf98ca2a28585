//! Behaviour 7: one ASIM DNS event per sinkholed query, and Allowed events for exceptions.

use hickory_proto::rr::RecordType;
use serde_json::Value;

use crate::harness::{Setup, query, read_events, udp_raw};
use crate::upstream::{self, Upstream};

fn find<'a>(events: &'a [Value], query: &str, qtype: &str) -> &'a Value {
    events
        .iter()
        .find(|event| event["DnsQuery"] == query && event["DnsQueryTypeName"] == qtype)
        .unwrap_or_else(|| panic!("no event for {query} {qtype}: {events:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn blocked_query_writes_one_asim_event_with_the_iocs_metadata() {
    let upstream = Upstream::start().await;
    let sinkhole = Setup::standard(upstream.addr).start();
    let answer = sinkhole.udp("WWW.Posdteu.Shop.", RecordType::A).await;
    let events = sinkhole.events(1).await;
    assert_eq!(events.len(), 1);
    let event = &events[0];

    let text = [
        ("EventType", "Query"),
        ("EventSubType", "response"),
        ("EventResult", "Success"),
        ("EventResultDetails", "NOERROR"),
        ("EventSeverity", "High"),
        ("EventProduct", "sinkhole"),
        ("EventVendor", "sinkhole"),
        ("EventSchema", "Dns"),
        ("EventSchemaVersion", "0.1.7"),
        ("EventProductVersion", env!("CARGO_PKG_VERSION")),
        ("DvcAction", "Blocked"),
        ("DvcOriginalAction", "sinkhole"),
        ("SrcIpAddr", "127.0.0.1"),
        ("DstIpAddr", "127.0.0.1"),
        ("NetworkProtocol", "UDP"),
        ("DnsQuery", "www.posdteu.shop"),
        ("DnsQueryTypeName", "A"),
        ("DnsResponseName", "0.0.0.0"),
        ("RuleName", "threatfox-remus"),
        ("ThreatField", "Domain"),
        ("ThreatName", "Remus"),
        ("ThreatCategory", "botnet_cc"),
        ("ThreatFirstReportedTime", "2026-06-06T00:00:00Z"),
    ];
    for (field, value) in text {
        assert_eq!(event[field], value, "{field}");
    }
    assert_eq!(event["EventCount"], 1);
    assert_eq!(event["DnsQueryType"], 1);
    assert_eq!(event["DnsResponseCode"], 0);
    assert_eq!(event["ThreatConfidence"], 100);
    assert_eq!(event["DstPortNumber"], sinkhole.addr.port());
    assert!(event["SrcPortNumber"].as_u64().unwrap() > 0);
    assert_eq!(
        event["TransactionIdHex"],
        format!("{:04x}", answer.metadata.id)
    );
    assert_eq!(event["AdditionalFields"]["matched_ioc"], "posdteu.shop");
    assert_eq!(event["AdditionalFields"]["source"], "ThreatFox");
    for field in ["TimeGenerated", "EventStartTime", "EventEndTime"] {
        let time = event[field].as_str().unwrap();
        assert!(time.ends_with('Z') && time.len() == 24, "{field}: {time}");
    }
    for field in ["Dvc", "DvcHostname"] {
        assert!(!event[field].as_str().unwrap().is_empty(), "{field}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn events_carry_the_rcode_sent_and_the_transport() {
    let upstream = Upstream::start().await;
    let sinkhole = Setup::standard(upstream.addr).start();
    sinkhole.tcp("a.nx-listed.test", RecordType::MX).await;
    sinkhole.udp("mathlah.com", RecordType::TXT).await;
    let events = sinkhole.events(2).await;

    let nx = find(&events, "a.nx-listed.test", "MX");
    assert_eq!(nx["NetworkProtocol"], "TCP");
    assert_eq!(nx["DnsResponseCode"], 3);
    assert_eq!(nx["EventResultDetails"], "NXDOMAIN");
    assert_eq!(nx["EventResult"], "Failure");
    assert_eq!(nx["DvcOriginalAction"], "nxdomain");
    assert!(nx.get("DnsResponseName").is_none());

    let txt = find(&events, "mathlah.com", "TXT");
    assert_eq!(txt["DnsResponseCode"], 0);
    assert!(
        txt.get("DnsResponseName").is_none(),
        "no address in a NODATA answer"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn exceptions_write_allowed_events_with_the_reason() {
    let upstream = Upstream::start().await;
    let sinkhole = Setup::standard(upstream.addr).start();

    sinkhole.udp(upstream::UPDATE, RecordType::A).await;
    let asked = query("mathlah.com", RecordType::A);
    udp_raw(sinkhole.addr, &asked.to_vec().unwrap(), "127.0.0.7:0")
        .await
        .unwrap();
    sinkhole.udp(upstream::WWW, RecordType::A).await;
    let events = sinkhole.events(2).await;
    assert_eq!(events.len(), 2, "no event for a query no blocklist matches");

    let allowlisted = find(&events, upstream::UPDATE, "A");
    assert_eq!(allowlisted["DvcAction"], "Allowed");
    assert_eq!(allowlisted["DvcOriginalAction"], "allowlist");
    assert_eq!(allowlisted["RuleName"], "trackers");
    assert_eq!(
        allowlisted["DnsResponseName"], "192.0.2.30",
        "the upstream's answer"
    );
    let reason = allowlisted["AdditionalFields"]["allow_reason"]
        .as_str()
        .unwrap();
    assert!(reason.contains("microsoft-update"), "{reason}");

    let exempt = find(&events, "mathlah.com", "A");
    assert_eq!(exempt["DvcAction"], "Allowed");
    assert_eq!(exempt["DvcOriginalAction"], "exempt-client");
    assert_eq!(exempt["SrcIpAddr"], "127.0.0.7");
    assert_eq!(exempt["DnsResponseCode"], 5, "the upstream refused it");
    let reason = exempt["AdditionalFields"]["allow_reason"].as_str().unwrap();
    assert!(reason.contains("veeam-backup"), "{reason}");
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_flushes_every_event() {
    let upstream = Upstream::start().await;
    let mut sinkhole = Setup::standard(upstream.addr).start();
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let total = 10_000;
    for i in 0..total {
        let name = format!("n{i}.posdteu.shop");
        socket
            .send_to(
                &query(&name, RecordType::A).to_vec().unwrap(),
                sinkhole.addr,
            )
            .await
            .unwrap();
        if i % 100 == 99 {
            // Read the answers so the socket buffers never overflow.
            let mut buf = [0u8; 512];
            for _ in 0..100 {
                tokio::time::timeout(crate::harness::WAIT, socket.recv_from(&mut buf))
                    .await
                    .unwrap()
                    .unwrap();
            }
        }
    }
    assert_eq!(sinkhole.stop(), Some(0), "clean exit on SIGTERM");
    let mut events = read_events(&sinkhole.events_path());
    events.retain(|event| event["EventType"] == "Query");
    assert_eq!(events.len(), total, "every event written before exit");
    let names: std::collections::HashSet<&str> = events
        .iter()
        .filter_map(|event| event["DnsQuery"].as_str())
        .collect();
    assert_eq!(names.len(), total, "each query once");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_query_is_logged_with_queries_all() {
    let upstream = Upstream::start().await;
    let config =
        "[events]\nqueries = \"all\"\n\n[[blocklist]]\nname = \"remus\"\npath = \"remus.txt\"\n";
    let setup = Setup::bare(vec![upstream.addr], config);
    setup.write("remus.txt", crate::harness::REMUS);
    let sinkhole = setup.start();

    sinkhole.udp(upstream::WWW, RecordType::A).await;
    sinkhole.udp(upstream::WWW, RecordType::A).await;
    sinkhole.udp("posdteu.shop", RecordType::A).await;

    let events = sinkhole.events(3).await;
    let forwarded = &events[0];
    assert_eq!(forwarded["DnsQuery"], upstream::WWW);
    assert_eq!(forwarded["DvcAction"], "Allowed");
    assert_eq!(forwarded["EventSeverity"], "Informational");
    assert_eq!(forwarded["DnsResponseName"], "192.0.2.10");
    assert!(
        forwarded.get("DnsNetworkDuration").is_some(),
        "went upstream"
    );
    assert!(forwarded.get("RuleName").is_none());
    assert_eq!(forwarded["AdditionalFields"]["policy_version"], 1);
    let cached = &events[1];
    assert_eq!(cached["DnsQuery"], upstream::WWW);
    assert!(cached.get("DnsNetworkDuration").is_none(), "from the cache");
    assert_eq!(events[2]["DvcAction"], "Blocked");
    assert_eq!(events[2]["RuleName"], "remus");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_event_file_rotates_and_old_files_are_deleted() {
    let upstream = Upstream::start().await;
    let config = "[events]\nrotate_bytes = 6000\nkeep = 2\n\n[[blocklist]]\nname = \"remus\"\npath = \"remus.txt\"\n";
    let setup = Setup::bare(vec![upstream.addr], config);
    setup.write("remus.txt", crate::harness::REMUS);
    let mut sinkhole = setup.start();
    for i in 0..40 {
        sinkhole
            .udp(&format!("n{i}.posdteu.shop"), RecordType::A)
            .await;
    }
    sinkhole.wait_for_nth_log("event file rotated", 3);
    // Stopped, so no rotation is halfway when the folder is read.
    assert_eq!(sinkhole.stop(), Some(0));
    let rotated: Vec<String> = std::fs::read_dir(sinkhole.setup.dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("events.ndjson."))
        .collect();
    assert_eq!(rotated.len(), 2, "{rotated:?}");
    assert!(
        rotated.iter().all(|name| !name.ends_with(".ndjson")),
        "{rotated:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn beaconing_repeats_are_summed_into_one_event() {
    let upstream = Upstream::start().await;
    let config =
        "[events]\ndedup_window_s = 1\n\n[[blocklist]]\nname = \"remus\"\npath = \"remus.txt\"\n";
    let setup = Setup::bare(vec![upstream.addr], config);
    setup.write("remus.txt", crate::harness::REMUS);
    let sinkhole = setup.start();
    for _ in 0..6 {
        sinkhole.udp("beacon.posdteu.shop", RecordType::A).await;
    }
    sinkhole.udp("once.mathlah.com", RecordType::A).await;

    let events = sinkhole.events(3).await;
    let beacon: Vec<&Value> = events
        .iter()
        .filter(|event| event["DnsQuery"] == "beacon.posdteu.shop")
        .collect();
    assert_eq!(
        beacon.len(),
        2,
        "the first at once, then one summary: {events:?}"
    );
    assert_eq!(beacon[0]["EventCount"], 1);
    assert_eq!(beacon[1]["EventCount"], 5);
    let (start, end) = (&beacon[1]["EventStartTime"], &beacon[1]["EventEndTime"]);
    assert!(
        start.as_str().unwrap() <= end.as_str().unwrap(),
        "{start} {end}"
    );
    let once = find(&events, "once.mathlah.com", "A");
    assert_eq!(once["EventCount"], 1);
}
