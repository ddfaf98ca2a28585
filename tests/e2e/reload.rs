//! Behaviour 8: lists reload when their files change; a broken list keeps its last good copy.

use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::harness::{REMUS, Setup};
use crate::upstream::Upstream;

#[tokio::test(flavor = "multi_thread")]
async fn edited_list_applies_within_a_second() {
    let upstream = Upstream::start().await;
    let sinkhole = Setup::standard(upstream.addr).start();
    assert!(!sinkhole.blocked("fresh-c2.test").await);

    // Rename over the old file, as editors and feed downloaders do.
    sinkhole
        .setup
        .replace("remus.txt", &format!("{REMUS}fresh-c2.test\n"));
    let took = sinkhole.until_blocked("fresh-c2.test", true).await;
    assert!(took < Duration::from_secs(1), "applied after {took:?}");
    assert!(sinkhole.blocked("posdteu.shop").await);

    // Writing in place works too, and removing a name unblocks it.
    sinkhole.setup.write("remus.txt", "mathlah.com\n");
    sinkhole.until_blocked("posdteu.shop", false).await;
    assert!(sinkhole.blocked("mathlah.com").await);
    sinkhole.wait_for_log("policy published");
}

#[tokio::test(flavor = "multi_thread")]
async fn deleted_or_broken_list_keeps_its_last_good_version() {
    let upstream = Upstream::start().await;
    let sinkhole = Setup::standard(upstream.addr).start();

    std::fs::remove_file(sinkhole.setup.path("remus.txt")).unwrap();
    sinkhole.wait_for_log("the previous policy stays in force");
    assert!(
        sinkhole.blocked("posdteu.shop").await,
        "deleted list still enforced"
    );

    sinkhole
        .setup
        .replace("remus.txt", "not a domain list\n### \u{0}bad\n");
    sinkhole.wait_for_nth_log("the previous policy stays in force", 2);
    assert!(
        sinkhole.blocked("posdteu.shop").await,
        "broken list still enforced"
    );

    // Re-created: the new content applies.
    sinkhole.setup.replace("remus.txt", "onesevenapps.com\n");
    sinkhole.until_blocked("posdteu.shop", false).await;
    assert!(sinkhole.blocked("onesevenapps.com").await);
}

#[tokio::test(flavor = "multi_thread")]
async fn queries_keep_succeeding_while_lists_reload() {
    let upstream = Upstream::start().await;
    let setup = Setup::standard(upstream.addr);
    let sinkhole = setup.start();
    let big: String = (0..50_000)
        .map(|i| format!("bulk{i}.example.net\n"))
        .collect();

    let mut answered = 0;
    let started = Instant::now();
    for round in 0..6 {
        let extra = if round % 2 == 0 { big.as_str() } else { "" };
        sinkhole
            .setup
            .replace("remus.txt", &format!("{REMUS}{extra}"));
        let until = Instant::now() + Duration::from_millis(300);
        while Instant::now() < until {
            let answer = sinkhole.udp("posdteu.shop", RecordType::A).await;
            assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
            assert_eq!(answer.answers.len(), 1, "blocked in every policy version");
            answered += 1;
        }
    }
    assert!(
        answered > 100,
        "{answered} answers in {:?}",
        started.elapsed()
    );
    sinkhole.wait_for_log("policy published version=3");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_the_lists() {
    let upstream = Upstream::start().await;
    let sinkhole = Setup::standard(upstream.addr).start();
    sinkhole.wait_for_log("listening on tcp");
    let pid = sinkhole.pid().to_string();
    std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    sinkhole.wait_for_log("SIGHUP: reloading config and lists");
    sinkhole.wait_for_log("policy published version=2");
}

#[tokio::test(flavor = "multi_thread")]
async fn emptied_list_does_not_replace_a_good_one() {
    let upstream = Upstream::start().await;
    let sinkhole = Setup::standard(upstream.addr).start();
    sinkhole.setup.replace("remus.txt", "");
    sinkhole.wait_for_log("empty list would replace 4 entries");
    assert!(
        sinkhole.blocked("posdteu.shop").await,
        "truncated feed still enforced"
    );
}
