//! Feeds in every format, per-entry metadata and actions, IP triggers, log-only lists and
//! conflicts, through the real binary.

use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use tokio::net::UdpSocket;

use crate::harness::{
    Setup, Sinkhole, extended_error, query, tcp_query, udp_query, udp_raw, with_edns,
};
use crate::upstream::{self, Upstream};

const THREATFOX_CSV: &str = include_str!("fixtures/threatfox.csv");
const THREATFOX_API: &str = include_str!("fixtures/threatfox-api.json");
const RPZ_ZONE: &str = include_str!("fixtures/policy.rpz.zone");
const ADBLOCK: &str = include_str!("fixtures/ads.adblock.txt");
const HOSTS: &str = include_str!("fixtures/local.hosts");

fn addresses(message: &Message) -> Vec<String> {
    message
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::A(a) => Some(a.0.to_string()),
            RData::AAAA(aaaa) => Some(aaaa.0.to_string()),
            _ => None,
        })
        .collect()
}

/// Sends a query over UDP and says whether any answer came within a short wait.
async fn answered(sinkhole: &Sinkhole, name: &str) -> bool {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let packet = query(name, RecordType::A).to_vec().unwrap();
    socket.send_to(&packet, sinkhole.addr).await.unwrap();
    let mut buf = [0u8; 512];
    let wait = Duration::from_millis(800);
    tokio::time::timeout(wait, socket.recv_from(&mut buf))
        .await
        .is_ok()
}

fn threatfox_setup(upstream: &Upstream) -> Setup {
    let config = r#"
[[blocklist]]
name = "threatfox-csv"
path = "threatfox.csv"
source = "ThreatFox"
min_confidence = 50
max_age = "365d"

[[blocklist]]
name = "threatfox-api"
path = "threatfox.json"
format = "threatfox-json"
source = "ThreatFox API"
"#;
    let setup = Setup::bare(vec![upstream.addr], config);
    setup.write("threatfox.csv", THREATFOX_CSV);
    setup.write("threatfox.json", THREATFOX_API);
    setup
}

#[tokio::test(flavor = "multi_thread")]
async fn threatfox_exports_block_with_each_indicators_metadata() {
    let upstream = Upstream::start().await;
    let sinkhole = threatfox_setup(&upstream).start();

    let answer = sinkhole.udp("c2.posdteu.shop", RecordType::A).await;
    assert_eq!(addresses(&answer), ["0.0.0.0"], "domain IOC");
    let answer = sinkhole.udp("evil-gate.test", RecordType::A).await;
    assert_eq!(addresses(&answer), ["0.0.0.0"], "a URL IOC blocks its host");
    let answer = sinkhole.udp("mathlah.com", RecordType::AAAA).await;
    assert_eq!(addresses(&answer), ["::"], "API response IOC");

    // Under min_confidence, and last seen before max_age: not enforced.
    for name in ["lowconf.example.test", "stale.example.test"] {
        let answer = sinkhole.udp(name, RecordType::A).await;
        assert_eq!(
            answer.metadata.response_code,
            ResponseCode::NXDomain,
            "{name}"
        );
        assert_eq!(upstream.count(name), 1, "{name} forwarded");
    }

    let events = sinkhole.events(3).await;
    let domain = &events[0];
    assert_eq!(domain["DnsQuery"], "c2.posdteu.shop");
    assert_eq!(domain["RuleName"], "threatfox-csv");
    assert_eq!(domain["ThreatId"], "9000101");
    assert_eq!(domain["ThreatName"], "Remus");
    assert_eq!(domain["ThreatCategory"], "botnet_cc");
    assert_eq!(domain["ThreatConfidence"], 100);
    assert_eq!(domain["ThreatFirstReportedTime"], "2026-06-06T08:14:02Z");
    assert_eq!(domain["AdditionalFields"]["tags"][1], "RemusStealer");
    assert_eq!(domain["AdditionalFields"]["malware"], "win.remus");
    assert_eq!(domain["AdditionalFields"]["source"], "ThreatFox");
    assert_eq!(domain["AdditionalFields"]["list_format"], "threatfox-csv");

    let url = &events[1];
    assert_eq!(url["ThreatId"], "9000201");
    assert_eq!(url["ThreatCategory"], "payload_delivery");
    assert_eq!(url["AdditionalFields"]["ioc_type"], "url");
    assert_eq!(
        url["AdditionalFields"]["ioc_value"],
        "https://evil-gate.test/a,b/gate.php?x=1"
    );
    assert_eq!(
        url["AdditionalFields"]["reference"],
        "https://example.org/report"
    );
    assert_eq!(events[2]["ThreatId"], "9000102");
    assert_eq!(events[2]["RuleName"], "threatfox-api");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_holding_an_ioc_address_is_replaced() {
    let upstream = Upstream::start().await;
    let sinkhole = threatfox_setup(&upstream).start();

    // www.example.test resolves to 192.0.2.10, listed as the ip:port IOC 192.0.2.10:443.
    for round in 0..2 {
        let asked = with_edns(query(upstream::WWW, RecordType::A), 1232, false);
        let answer = udp_query(sinkhole.addr, &asked).await.unwrap();
        assert_eq!(addresses(&answer), ["0.0.0.0"], "round {round}");
        let (code, text) = extended_error(&answer).expect("EDE");
        assert_eq!(code, 15);
        assert!(text.contains("answer 192.0.2.10"), "{text}");
    }
    assert_eq!(
        upstream.count(upstream::WWW),
        1,
        "second answer from the cache"
    );

    let events = sinkhole.events(2).await;
    let event = &events[0];
    assert_eq!(event["ThreatField"], "DnsResponseName");
    assert_eq!(event["ThreatIpAddr"], "192.0.2.10");
    assert_eq!(event["ThreatId"], "9000301");
    assert_eq!(event["AdditionalFields"]["matched_ioc"], "192.0.2.10/32");
    assert_eq!(event["AdditionalFields"]["ioc_type"], "ip:port");
    assert_eq!(event["DnsResponseName"], "0.0.0.0");
}

fn rpz_setup(upstream: &Upstream) -> Setup {
    let config = r#"
[[blocklist]]
name = "rpz"
path = "policy.rpz.zone"
origin = "rpz.sinkhole.test"
"#;
    let setup = Setup::bare(vec![upstream.addr], config);
    setup.write("policy.rpz.zone", RPZ_ZONE);
    setup
}

#[tokio::test(flavor = "multi_thread")]
async fn rpz_actions_are_enforced_as_the_zone_says() {
    let upstream = Upstream::start().await;
    let sinkhole = rpz_setup(&upstream).start();

    let answer = sinkhole.udp("nx.rpz-feed.test", RecordType::A).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);
    let answer = sinkhole.udp("a.b.nx.rpz-feed.test", RecordType::A).await;
    assert_eq!(
        answer.metadata.response_code,
        ResponseCode::NXDomain,
        "wildcard"
    );

    let answer = sinkhole.udp("nodata.rpz-feed.test", RecordType::A).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert!(answer.answers.is_empty(), "NODATA");
    let answer = sinkhole
        .udp("sub.nodata.rpz-feed.test", RecordType::A)
        .await;
    assert_eq!(
        upstream.count("sub.nodata.rpz-feed.test"),
        1,
        "exact owner only"
    );
    assert_ne!(answer.metadata.response_code, ResponseCode::NoError);

    let answer = sinkhole.udp("local.rpz-feed.test", RecordType::A).await;
    assert_eq!(addresses(&answer), ["192.0.2.99"]);
    let answer = sinkhole.udp("local.rpz-feed.test", RecordType::AAAA).await;
    assert_eq!(addresses(&answer), ["2001:db8::99"]);

    assert!(
        !answered(&sinkhole, "drop.rpz-feed.test").await,
        "DROP sends nothing"
    );

    // PASSTHRU inside a blocked subtree: forwarded as it is.
    sinkhole.udp("ok.nx.rpz-feed.test", RecordType::A).await;
    assert_eq!(upstream.count("ok.nx.rpz-feed.test"), 1);

    for name in [
        "nx.rpz-feed.test",
        "a.b.nx.rpz-feed.test",
        "local.rpz-feed.test",
    ] {
        assert_eq!(upstream.count(name), 0, "{name} never left the host");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rpz_local_cname_tcp_only_and_client_ip_triggers() {
    let upstream = Upstream::start().await;
    let sinkhole = rpz_setup(&upstream).start();

    // Local data CNAME: the answer is the target's, behind a CNAME from the query name.
    let answer = sinkhole.udp("redirect.rpz-feed.test", RecordType::A).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    let RData::CNAME(target) = &answer.answers[0].data else {
        panic!("no CNAME first: {answer:?}");
    };
    assert_eq!(target.0.to_string(), format!("{}.", upstream::WWW));
    assert_eq!(addresses(&answer), ["192.0.2.10"]);
    assert_eq!(upstream.count("redirect.rpz-feed.test"), 0);

    // TCP-only: truncated over UDP, the real answer over TCP.
    let answer = sinkhole.udp(upstream::SHORT_TTL, RecordType::A).await;
    assert!(answer.metadata.truncation, "TC over UDP");
    assert!(answer.answers.is_empty());
    let answer = tcp_query(sinkhole.addr, &query(upstream::SHORT_TTL, RecordType::A)).await;
    assert_eq!(addresses(&answer), ["192.0.2.20"], "answered over TCP");

    // Client-IP trigger: 127.0.0.9 gets NXDOMAIN for any name.
    let asked = query(upstream::WWW, RecordType::A);
    let bytes = udp_raw(sinkhole.addr, &asked.to_vec().unwrap(), "127.0.0.9:0")
        .await
        .unwrap();
    let answer = Message::from_vec(&bytes).unwrap();
    assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(
        upstream.count(upstream::WWW),
        1,
        "only the rewrite asked for www"
    );

    let events = sinkhole.events(3).await;
    assert_eq!(events[0]["DvcOriginalAction"], "local-data");
    assert_eq!(events[1]["DvcOriginalAction"], "tcp-only");
    assert_eq!(events[2]["ThreatField"], "SrcIpAddr");
    assert_eq!(events[2]["ThreatIpAddr"], "127.0.0.9");
    assert_eq!(events[2]["AdditionalFields"]["matched_ioc"], "127.0.0.9/32");
}

#[tokio::test(flavor = "multi_thread")]
async fn adblock_rules_and_hosts_addresses() {
    let upstream = Upstream::start().await;
    let config = r#"
[[blocklist]]
name = "ads"
path = "ads.txt"

[[blocklist]]
name = "hosts"
path = "local.hosts"
"#;
    let setup = Setup::bare(vec![upstream.addr], config);
    setup.write("ads.txt", ADBLOCK);
    setup.write("local.hosts", HOSTS);
    let sinkhole = setup.start();

    let answer = sinkhole.udp("x.ads.feed.test", RecordType::A).await;
    assert_eq!(addresses(&answer), ["0.0.0.0"], "||name^ covers subdomains");
    let answer = sinkhole.udp("exact.feed.test", RecordType::A).await;
    assert_eq!(addresses(&answer), ["0.0.0.0"], "|name^");
    sinkhole.udp("sub.exact.feed.test", RecordType::A).await;
    assert_eq!(upstream.count("sub.exact.feed.test"), 1, "|name^ is exact");
    sinkhole.udp("www.good.ads.feed.test", RecordType::A).await;
    assert_eq!(upstream.count("www.good.ads.feed.test"), 1, "@@ exception");

    let answer = sinkhole.udp("local.hosts.test", RecordType::A).await;
    assert_eq!(addresses(&answer), ["192.0.2.77"], "hosts address answers");
    let answer = sinkhole.udp("blocked.hosts.test", RecordType::A).await;
    assert_eq!(addresses(&answer), ["0.0.0.0"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn log_only_refuse_and_drop_lists() {
    let upstream = Upstream::start().await;
    let config = r#"
[[blocklist]]
name = "shadow"
path = "shadow.txt"
action = "log-only"
family = "Trial"

[[blocklist]]
name = "refused"
path = "refuse.txt"
action = "refuse"

[[blocklist]]
name = "dropped"
path = "drop.txt"
action = "drop"
"#;
    let setup = Setup::bare(vec![upstream.addr], config);
    setup.write("shadow.txt", &format!("{}\n", upstream::WWW));
    setup.write("refuse.txt", "refused.feed.test\n");
    setup.write(
        "drop.txt",
        &format!("dropped.feed.test\n{}\n", upstream::CLOAK_LINK),
    );
    let sinkhole = setup.start();

    let answer = sinkhole.udp(upstream::WWW, RecordType::A).await;
    assert_eq!(
        addresses(&answer),
        ["192.0.2.10"],
        "log-only changes nothing"
    );
    let asked = with_edns(query("refused.feed.test", RecordType::A), 1232, false);
    let answer = udp_query(sinkhole.addr, &asked).await.unwrap();
    assert_eq!(answer.metadata.response_code, ResponseCode::Refused);
    assert_eq!(extended_error(&answer).map(|e| e.0), Some(15));
    assert!(!answered(&sinkhole, "dropped.feed.test").await);
    assert_eq!(upstream.count("refused.feed.test"), 0);
    assert_eq!(upstream.count("dropped.feed.test"), 0);

    let events = sinkhole.events(3).await;
    let shadow = &events[0];
    assert_eq!(shadow["DvcAction"], "Allowed");
    assert_eq!(shadow["DvcOriginalAction"], "log-only");
    assert_eq!(shadow["ThreatName"], "Trial");
    assert_eq!(shadow["DnsResponseName"], "192.0.2.10");
    assert_eq!(events[1]["DvcOriginalAction"], "refuse");
    assert_eq!(events[1]["DnsResponseCode"], 5);
    assert_eq!(events[2]["DvcOriginalAction"], "drop");
    assert!(events[2].get("DnsResponseCode").is_none());

    // A drop found in the answer's CNAME chain: the upstream answer must not go out either,
    // neither when it arrives nor from the cache.
    assert!(!answered(&sinkhole, upstream::CLOAKED).await, "forwarded");
    assert!(!answered(&sinkhole, upstream::CLOAKED).await, "cached");
    let events = sinkhole.events(5).await;
    assert_eq!(events[3]["DnsQuery"], upstream::CLOAKED);
    assert_eq!(events[3]["DvcOriginalAction"], "drop");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blocklist_entry_an_allowlist_protects_is_reported() {
    let upstream = Upstream::start().await;
    let sinkhole = Setup::standard(upstream.addr).start();

    sinkhole.wait_for_log("blocklist entry overridden by an allowlist");
    let conflicts = sinkhole.events_of("PolicyConflict", 1).await;
    assert_eq!(conflicts.len(), 1);
    let conflict = &conflicts[0];
    assert_eq!(conflict["DnsQuery"], upstream::UPDATE);
    assert_eq!(conflict["RuleName"], "trackers");
    assert_eq!(conflict["DvcAction"], "Allowed");
    assert_eq!(
        conflict["AdditionalFields"]["allowlist"],
        "microsoft-update"
    );

    let answer = sinkhole.udp(upstream::UPDATE, RecordType::A).await;
    assert_eq!(addresses(&answer), ["192.0.2.30"], "the allowlist wins");
}
