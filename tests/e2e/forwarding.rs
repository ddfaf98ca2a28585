//! Behaviour 1: forwarding, caching, truncation, failover and upstream failure.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};
use tokio::net::UdpSocket;

use crate::harness::{Setup, query, tcp_query, udp_query, with_edns};
use crate::upstream::{self, Upstream};

fn a_records(message: &hickory_proto::op::Message) -> Vec<[u8; 4]> {
    message
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::A(a) => Some(a.0.octets()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_come_from_the_upstream_with_its_records_and_rcode() {
    let upstream = Upstream::start().await;
    let sinkhole = Setup::standard(upstream.addr).start();

    let answer = sinkhole.udp(upstream::WWW, RecordType::A).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert!(answer.metadata.recursion_available);
    assert!(answer.metadata.recursion_desired);
    assert_eq!(a_records(&answer), [upstream::WWW_V4]);

    let answer = sinkhole.udp(upstream::WWW, RecordType::AAAA).await;
    assert!(
        matches!(&answer.answers[0].data, RData::AAAA(v6) if v6.0.to_string() == "2001:db8::10")
    );

    let answer = sinkhole.udp("missing.example.test", RecordType::A).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);
    assert!(answer.answers.is_empty());
    assert!(
        matches!(answer.authorities[0].data, RData::SOA(_)),
        "NXDOMAIN keeps the SOA"
    );

    let answer = sinkhole.udp(upstream::WWW, RecordType::MX).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert!(answer.answers.is_empty(), "NODATA");
    assert!(
        matches!(answer.authorities[0].data, RData::SOA(_)),
        "NODATA keeps the SOA"
    );

    let answer = sinkhole.udp(upstream::SAFE_CNAME, RecordType::A).await;
    assert!(
        matches!(&answer.answers[0].data, RData::CNAME(_)),
        "CNAME chain kept"
    );
    assert_eq!(a_records(&answer), [upstream::WWW_V4]);
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_answers_match_udp_answers() {
    let upstream = Upstream::start().await;
    let sinkhole = Setup::standard(upstream.addr).start();
    let over_tcp = sinkhole.tcp(upstream::WWW, RecordType::A).await;
    assert_eq!(a_records(&over_tcp), [upstream::WWW_V4]);
    let blocked = sinkhole.tcp("posdteu.shop", RecordType::A).await;
    assert!(matches!(&blocked.answers[0].data, RData::A(a) if a.0.is_unspecified()));
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_connection_carries_several_queries() {
    let upstream = Upstream::start().await;
    let sinkhole = Setup::standard(upstream.addr).start();
    let mut stream = tokio::net::TcpStream::connect(sinkhole.addr).await.unwrap();
    let queries = [
        query(upstream::WWW, RecordType::A),
        query("mathlah.com", RecordType::A),
    ];
    for message in &queries {
        crate::harness::write_tcp_message(&mut stream, message).await;
    }
    let mut ids = Vec::new();
    for _ in &queries {
        ids.push(
            crate::harness::read_tcp_message(&mut stream)
                .await
                .metadata
                .id,
        );
    }
    ids.sort_unstable();
    let mut expected: Vec<u16> = queries.iter().map(|q| q.metadata.id).collect();
    expected.sort_unstable();
    assert_eq!(ids, expected, "every pipelined query is answered");
}

#[tokio::test(flavor = "multi_thread")]
async fn cache_answers_repeats_and_counts_ttls_down() {
    let upstream = Upstream::start().await;
    let sinkhole = Setup::standard(upstream.addr).start();

    let first = sinkhole.udp(upstream::WWW, RecordType::A).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = sinkhole.udp("WWW.Example.TEST", RecordType::A).await;
    assert_eq!(
        upstream.count(upstream::WWW),
        1,
        "second query served from cache"
    );
    assert_eq!(
        second.queries[0].name().to_string(),
        "WWW.Example.TEST.",
        "client's case kept"
    );
    assert!(
        second.answers[0].ttl < first.answers[0].ttl,
        "TTL counts down in the cache"
    );

    let negative = sinkhole.udp("gone.example.test", RecordType::A).await;
    let again = sinkhole.udp("gone.example.test", RecordType::A).await;
    assert_eq!(negative.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(again.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(
        upstream.count("gone.example.test"),
        1,
        "negative answers are cached"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cached_answers_expire_with_their_ttl() {
    let upstream = Upstream::start().await;
    let sinkhole = Setup::standard(upstream.addr).start();
    sinkhole.udp(upstream::SHORT_TTL, RecordType::A).await;
    sinkhole.udp(upstream::SHORT_TTL, RecordType::A).await;
    assert_eq!(upstream.count(upstream::SHORT_TTL), 1);
    tokio::time::sleep(Duration::from_millis(2300)).await;
    sinkhole.udp(upstream::SHORT_TTL, RecordType::A).await;
    assert_eq!(
        upstream.count(upstream::SHORT_TTL),
        2,
        "expired entry is fetched again"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn large_answers_truncate_over_udp_and_complete_over_tcp() {
    let upstream = Upstream::start().await;
    let sinkhole = Setup::standard(upstream.addr).start();

    let plain = sinkhole.udp(upstream::BIG_TXT, RecordType::TXT).await;
    assert!(
        plain.metadata.truncation,
        "over 512 bytes without EDNS sets TC"
    );
    assert!(plain.answers.is_empty());

    let edns = with_edns(query(upstream::BIG_TXT, RecordType::TXT), 4096, false);
    let large = udp_query(sinkhole.addr, &edns).await.unwrap();
    assert!(!large.metadata.truncation);
    assert_eq!(large.answers.len(), 1);

    let small = with_edns(query(upstream::BIG_TXT, RecordType::TXT), 1232, false);
    let small = udp_query(sinkhole.addr, &small).await.unwrap();
    assert!(
        small.metadata.truncation,
        "larger than the client's EDNS size"
    );
    assert!(
        small.edns.is_some(),
        "truncated answer keeps the OPT record"
    );

    let over_tcp = tcp_query(sinkhole.addr, &query(upstream::BIG_TXT, RecordType::TXT)).await;
    assert!(!over_tcp.metadata.truncation);
    let RData::TXT(txt) = &over_tcp.answers[0].data else {
        panic!("TXT expected")
    };
    assert_eq!(txt.txt_data.len(), 24);
}

#[tokio::test(flavor = "multi_thread")]
async fn dnssec_records_pass_through_when_do_is_set() {
    let upstream = Upstream::start().await;
    let sinkhole = Setup::standard(upstream.addr).start();

    let plain = sinkhole.udp(upstream::SIGNED, RecordType::A).await;
    assert_eq!(plain.answers.len(), 1);
    assert!(
        !upstream.asked()[0].dnssec_ok,
        "DO is not set upstream for a plain query"
    );

    let signed = with_edns(query(upstream::SIGNED, RecordType::A), 1232, true);
    let signed = udp_query(sinkhole.addr, &signed).await.unwrap();
    let types: Vec<RecordType> = signed.answers.iter().map(|r| r.record_type()).collect();
    assert_eq!(types, [RecordType::A, RecordType::RRSIG]);
    assert!(signed.edns.as_ref().unwrap().flags().dnssec_ok, "DO echoed");
    assert!(upstream.asked()[1].dnssec_ok, "DO passed upstream");
}

/// A UDP socket that swallows every query: an upstream that never answers.
async fn black_hole() -> (UdpSocket, SocketAddr) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

#[tokio::test(flavor = "multi_thread")]
async fn all_upstreams_failing_gives_servfail_within_the_timeout() {
    let (_silent, silent) = black_hole().await;
    let config = "[upstream]\ntimeout_ms = 800\nattempt_timeout_ms = 400\n";
    let sinkhole = Setup::bare(vec![silent], config).start();

    let started = Instant::now();
    let asked = with_edns(query("www.example.test", RecordType::A), 1232, false);
    let answer = udp_query(sinkhole.addr, &asked).await.unwrap();
    let took = started.elapsed();
    assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
    assert!(
        took < Duration::from_millis(1800),
        "SERVFAIL after {took:?}"
    );
    let (code, _) = crate::harness::extended_error(&answer).expect("EDE on SERVFAIL");
    assert_eq!(code, 22, "No Reachable Authority");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_upstream_fails_over_to_the_next() {
    let upstream = Upstream::start().await;
    let (_silent, silent) = black_hole().await;
    let config = "[upstream]\ntimeout_ms = 2000\nattempt_timeout_ms = 400\n";
    let sinkhole = Setup::bare(vec![silent, upstream.addr], config).start();

    let answer = sinkhole.udp(upstream::WWW, RecordType::A).await;
    assert_eq!(a_records(&answer), [upstream::WWW_V4]);

    let started = Instant::now();
    let answer = sinkhole.udp(upstream::UPDATE, RecordType::A).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "the live upstream is now first"
    );
}

/// An upstream that ignores each query the first time it sees it, then answers it once with a
/// forged answer (same ID, another question) followed by the real one.
async fn lossy_upstream() -> SocketAddr {
    use hickory_proto::op::{Message, MessageType};
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{Name, Record};

    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut seen = std::collections::HashSet::new();
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((len, peer)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let Ok(query) = Message::from_vec(&buf[..len]) else {
                continue;
            };
            if seen.insert(query.metadata.id) {
                continue;
            }
            let mut forged = query.clone();
            forged.metadata.message_type = MessageType::Response;
            forged.queries[0].name = Name::from_ascii("evil.test.").unwrap();
            let evil = Record::from_rdata(
                Name::from_ascii("evil.test.").unwrap(),
                300,
                RData::A(A::new(6, 6, 6, 6)),
            );
            forged.add_answer(evil);
            let _ = socket.send_to(&forged.to_vec().unwrap(), peer).await;

            let mut real = query.clone();
            real.metadata.message_type = MessageType::Response;
            let name = real.queries[0].name().clone();
            real.add_answer(Record::from_rdata(
                name,
                300,
                RData::A(A::new(192, 0, 2, 99)),
            ));
            let _ = socket.send_to(&real.to_vec().unwrap(), peer).await;
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn lost_queries_are_sent_again_and_forged_answers_ignored() {
    let upstream = lossy_upstream().await;
    let config = "[upstream]\ntimeout_ms = 3000\nattempt_timeout_ms = 2500\n";
    let sinkhole = Setup::bare(vec![upstream], config).start();
    for name in ["one.lossy.test", "two.lossy.test"] {
        let answer = sinkhole.udp(name, RecordType::A).await;
        assert_eq!(
            a_records(&answer),
            [[192, 0, 2, 99]],
            "{name}: the real answer, after a retransmission"
        );
    }
}

/// An upstream that answers every A query with 192.0.2.1 and records the source port of each.
async fn port_recording_upstream() -> (SocketAddr, std::sync::Arc<std::sync::Mutex<Vec<u16>>>) {
    use hickory_proto::op::{Message, MessageType};
    use hickory_proto::rr::Record;
    use hickory_proto::rr::rdata::A;

    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let ports = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = ports.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((len, peer)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let Ok(mut message) = Message::from_vec(&buf[..len]) else {
                continue;
            };
            seen.lock().unwrap().push(peer.port());
            message.metadata.message_type = MessageType::Response;
            let name = message.queries[0].name().clone();
            message.add_answer(Record::from_rdata(name, 60, RData::A(A::new(192, 0, 2, 1))));
            let _ = socket.send_to(&message.to_vec().unwrap(), peer).await;
        }
    });
    (addr, ports)
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_sockets_are_reused_and_replaced() {
    use sinkhole::upstream::transport::{SOCKET_USES, SOCKETS};
    let (upstream, ports) = port_recording_upstream().await;
    let sinkhole = Setup::bare(vec![upstream], "").start();

    let queries = SOCKETS * SOCKET_USES as usize + 200;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut buf = vec![0u8; 4096];
    for batch in 0..queries / 100 {
        for i in 0..100 {
            let name = format!("q{batch}-{i}.ports.test");
            socket
                .send_to(
                    &query(&name, RecordType::A).to_vec().unwrap(),
                    sinkhole.addr,
                )
                .await
                .unwrap();
        }
        for _ in 0..100 {
            tokio::time::timeout(crate::harness::WAIT, socket.recv_from(&mut buf))
                .await
                .unwrap()
                .unwrap();
        }
    }

    let ports = ports.lock().unwrap().clone();
    // A query retransmitted on a loaded machine goes upstream twice.
    assert!(ports.len() >= queries, "every query went upstream");
    let distinct: std::collections::HashSet<u16> = ports.iter().copied().collect();
    assert!(
        distinct.len() > SOCKETS,
        "sockets were replaced: {} ports",
        distinct.len()
    );
    // Each socket is replaced once for the queries sent; on a loaded machine a retransmitted
    // query counts as a use too, so a socket may be replaced once more. Per-query sockets
    // would show thousands of ports.
    assert!(
        distinct.len() <= 3 * SOCKETS,
        "sockets were reused: {} ports",
        distinct.len()
    );
}
