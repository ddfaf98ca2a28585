//! Behaviours 2 to 6: matching, precedence, the sinkhole answer, no leak, CNAME cloaking.

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

use crate::harness::{REMUS, Setup, extended_error, query, udp_query, udp_raw, with_edns};
use crate::upstream::{self, Upstream};

fn only_address(message: &Message) -> String {
    assert_eq!(message.answers.len(), 1, "one address record: {message:?}");
    match &message.answers[0].data {
        RData::A(a) => a.0.to_string(),
        RData::AAAA(aaaa) => aaaa.0.to_string(),
        other => panic!("not an address: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn listed_domains_and_subdomains_match_in_any_case() {
    let upstream = Upstream::start().await;
    let sinkhole = Setup::standard(upstream.addr).start();

    for name in [
        "posdteu.shop",
        "POSDTEU.SHOP.",
        "c2.Mathlah.com",
        "a.b.c.onesevenapps.com",
    ] {
        let answer = sinkhole.udp(name, RecordType::A).await;
        assert_eq!(only_address(&answer), "0.0.0.0", "{name}");
    }
    let answer = sinkhole
        .udp("x.gauravitechnologies.com", RecordType::AAAA)
        .await;
    assert_eq!(only_address(&answer), "::");

    // Names that merely end with the same letters are not subdomains.
    let answer = sinkhole.udp("notmathlah.com", RecordType::A).await;
    assert_eq!(
        answer.metadata.response_code,
        ResponseCode::Refused,
        "forwarded upstream"
    );
    assert_eq!(upstream.count("notmathlah.com"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn sinkhole_answer_is_a_correct_message() {
    let upstream = Upstream::start().await;
    let sinkhole = Setup::standard(upstream.addr).start();

    let mut asked = query("WWW.PosdTeu.Shop", RecordType::A);
    asked.metadata.recursion_desired = false;
    asked.metadata.checking_disabled = true;
    let answer = udp_query(sinkhole.addr, &asked).await.unwrap();
    assert_eq!(answer.metadata.id, asked.metadata.id);
    assert!(!answer.metadata.recursion_desired, "RD copied");
    assert!(answer.metadata.checking_disabled, "CD copied");
    assert!(answer.metadata.recursion_available);
    assert!(!answer.metadata.authoritative);
    assert_eq!(answer.queries.len(), 1);
    assert_eq!(
        answer.queries[0].name().to_string(),
        "WWW.PosdTeu.Shop.",
        "question as asked"
    );
    assert_eq!(answer.queries[0].query_type(), RecordType::A);
    assert_eq!(answer.answers[0].name.to_string(), "WWW.PosdTeu.Shop.");
    assert_eq!(answer.answers[0].ttl, 60);
    assert!(answer.edns.is_none(), "no OPT without EDNS in the query");

    let with_opt = with_edns(query("posdteu.shop", RecordType::A), 1232, false);
    let answer = udp_query(sinkhole.addr, &with_opt).await.unwrap();
    let (code, text) = extended_error(&answer).expect("EDE present");
    assert_eq!(code, 15, "EDE Blocked");
    assert!(text.contains("threatfox-remus"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn other_types_get_nodata_with_soa_and_lists_set_their_answers() {
    let upstream = Upstream::start().await;
    let sinkhole = Setup::standard(upstream.addr).start();

    for qtype in [RecordType::TXT, RecordType::MX, RecordType::HTTPS] {
        let answer = sinkhole.udp("posdteu.shop", qtype).await;
        assert_eq!(
            answer.metadata.response_code,
            ResponseCode::NoError,
            "{qtype}"
        );
        assert!(answer.answers.is_empty(), "{qtype}");
        assert_eq!(answer.authorities[0].name.to_string(), "posdteu.shop.");
        assert!(matches!(answer.authorities[0].data, RData::SOA(_)));
    }

    let answer = sinkhole.udp("www.tracker.test", RecordType::A).await;
    assert_eq!(
        only_address(&answer),
        "192.0.2.53",
        "the list's own sinkhole address"
    );
    assert_eq!(answer.answers[0].ttl, 120, "the list's own TTL");
    let answer = sinkhole.udp("tracker.test", RecordType::AAAA).await;
    assert_eq!(only_address(&answer), "2001:db8::53");

    for qtype in [RecordType::A, RecordType::TXT] {
        let answer = sinkhole.udp("sub.nx-listed.test", qtype).await;
        assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(answer.authorities[0].name.to_string(), "nx-listed.test.");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn nodata_action_answers_every_type_empty() {
    let upstream = Upstream::start().await;
    let setup = Setup::bare(
        vec![upstream.addr],
        "[[blocklist]]\nname = \"quiet\"\npath = \"quiet.txt\"\naction = \"nodata\"\n",
    );
    setup.write("quiet.txt", "quiet.test\n");
    let sinkhole = setup.start();
    let answer = sinkhole.udp("quiet.test", RecordType::A).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert!(answer.answers.is_empty());
    assert!(matches!(answer.authorities[0].data, RData::SOA(_)));
}

#[tokio::test(flavor = "multi_thread")]
async fn blocked_names_never_reach_the_upstream() {
    let upstream = Upstream::start().await;
    let sinkhole = Setup::standard(upstream.addr).start();
    let names = REMUS
        .lines()
        .flat_map(|name| [name.to_owned(), format!("www.{name}")]);
    for name in names {
        for qtype in [
            RecordType::A,
            RecordType::AAAA,
            RecordType::TXT,
            RecordType::ANY,
        ] {
            sinkhole.udp(&name, qtype).await;
            sinkhole.tcp(&name, qtype).await;
        }
    }
    sinkhole.udp(upstream::WWW, RecordType::A).await;

    let asked = upstream.asked();
    assert_eq!(
        asked.len(),
        1,
        "only the allowed query went upstream: {asked:?}"
    );
    assert_eq!(asked[0].name, upstream::WWW);
}

#[tokio::test(flavor = "multi_thread")]
async fn allowlist_wins_over_blocklist_and_exempt_clients_win_over_both() {
    let upstream = Upstream::start().await;
    let sinkhole = Setup::standard(upstream.addr).start();

    // update.example.test is on the trackers blocklist and on the allowlist.
    let answer = sinkhole.udp(upstream::UPDATE, RecordType::A).await;
    assert_eq!(
        only_address(&answer),
        "192.0.2.30",
        "allowlisted name is forwarded"
    );

    // 127.0.0.7 is an exempt client: blocked names are forwarded for it.
    let asked = query("posdteu.shop", RecordType::A);
    let bytes = udp_raw(sinkhole.addr, &asked.to_vec().unwrap(), "127.0.0.7:0")
        .await
        .unwrap();
    let answer = Message::from_vec(&bytes).unwrap();
    assert_eq!(
        answer.metadata.response_code,
        ResponseCode::Refused,
        "upstream's own answer"
    );
    assert_eq!(
        upstream.count("posdteu.shop"),
        1,
        "exempt client's query was forwarded"
    );

    // Other clients are still blocked.
    let answer = sinkhole.udp("posdteu.shop", RecordType::A).await;
    assert_eq!(only_address(&answer), "0.0.0.0");
}

#[tokio::test(flavor = "multi_thread")]
async fn cname_chain_to_a_blocked_name_is_sinkholed() {
    let upstream = Upstream::start().await;
    let sinkhole = Setup::standard(upstream.addr).start();

    for round in 0..2 {
        let answer = sinkhole.udp(upstream::CLOAKED, RecordType::A).await;
        assert_eq!(
            only_address(&answer),
            "192.0.2.53",
            "round {round}: the trackers list answers"
        );
        assert_eq!(
            answer.answers[0].name.to_string(),
            format!("{}.", upstream::CLOAKED)
        );
    }
    assert_eq!(
        upstream.count(upstream::CLOAKED),
        1,
        "second answer came from the cache"
    );

    let events = sinkhole.events(2).await;
    let event = &events[0];
    assert_eq!(event["DnsQuery"], upstream::CLOAKED);
    assert_eq!(event["RuleName"], "trackers");
    assert_eq!(event["AdditionalFields"]["matched_ioc"], "tracker.test");
    assert_eq!(
        event["AdditionalFields"]["matched_name"],
        upstream::CLOAK_TARGET
    );
    let chain = event["AdditionalFields"]["cname_chain"].as_array().unwrap();
    assert_eq!(chain.first().unwrap(), upstream::CLOAKED);
    assert_eq!(chain.last().unwrap(), upstream::CLOAK_TARGET);
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_outside_the_allowed_networks_are_refused() {
    let upstream = Upstream::start().await;
    let config = "[server]\nallow_clients = [\"127.0.0.1/32\"]\n";
    let sinkhole = Setup::bare(vec![upstream.addr], config).start();

    let asked = with_edns(query(upstream::WWW, RecordType::A), 1232, false);
    let bytes = udp_raw(sinkhole.addr, &asked.to_vec().unwrap(), "127.0.0.9:0")
        .await
        .unwrap();
    let answer = Message::from_vec(&bytes).unwrap();
    assert_eq!(answer.metadata.response_code, ResponseCode::Refused);
    assert_eq!(extended_error(&answer).unwrap().0, 18, "EDE Prohibited");
    assert!(upstream.asked().is_empty());

    let allowed = sinkhole.udp(upstream::WWW, RecordType::A).await;
    assert_eq!(allowed.metadata.response_code, ResponseCode::NoError);
}
