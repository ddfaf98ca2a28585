//! The config file reloads too; every load writes a policy event; heartbeats; Kubernetes
//! ConfigMap volumes; the site in every event.

use std::os::unix::fs::symlink;
use std::time::Duration;

use crate::harness::{REMUS, Setup};
use crate::upstream::Upstream;

const CONFIG: &str = r#"
[events]
site = "branch-07"

[[blocklist]]
name = "remus"
path = "remus.txt"
"#;

fn setup(upstream: &Upstream) -> Setup {
    let setup = Setup::bare(vec![upstream.addr], CONFIG);
    setup.write("remus.txt", REMUS);
    setup
}

#[tokio::test(flavor = "multi_thread")]
async fn config_changes_apply_live_and_a_bad_config_changes_nothing() {
    let upstream = Upstream::start().await;
    let sinkhole = setup(&upstream).start();
    sinkhole.setup.write("extra.txt", "extra-c2.test\n");
    assert!(!sinkhole.blocked("extra-c2.test").await);

    // A new list, and a new listen address that needs a restart.
    let more = format!(
        "{CONFIG}\n[[blocklist]]\nname = \"extra\"\npath = \"extra.txt\"\n\n[server]\nlisten = [\"127.0.0.1:1\"]\n"
    );
    sinkhole.setup.replace("sinkhole.toml", &more);
    let took = sinkhole.until_blocked("extra-c2.test", true).await;
    assert!(took < Duration::from_secs(1), "applied after {took:?}");
    sinkhole.wait_for_log(
        "config change needs a restart to apply; running as before key=server.listen",
    );
    assert!(sinkhole.blocked("posdteu.shop").await);

    // A config that does not parse: the policy in force stays, whole.
    sinkhole.setup.replace(
        "sinkhole.toml",
        &format!("{more}\n[[blocklist]]\nname = 3\n"),
    );
    sinkhole.wait_for_log("reload failed; the previous policy stays in force");
    assert!(sinkhole.blocked("extra-c2.test").await);
    let reloads = sinkhole.events_of("PolicyReload", 3).await;
    let failed = &reloads[2];
    assert_eq!(failed["EventResult"], "Failure");
    let error = failed["AdditionalFields"]["errors"][0].as_str().unwrap();
    assert!(error.contains("sinkhole.toml:"), "{error}");
    assert_eq!(failed["AdditionalFields"]["policy_version"], 2);
    let restart = &reloads[1]["AdditionalFields"]["restart_needed"];
    assert_eq!(restart[0], "server.listen");

    // Fixed again: the next change applies.
    sinkhole.setup.replace("sinkhole.toml", CONFIG);
    sinkhole.until_blocked("extra-c2.test", false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_load_writes_a_policy_event_with_what_changed() {
    let upstream = Upstream::start().await;
    let sinkhole = setup(&upstream).start();

    sinkhole
        .setup
        .replace("remus.txt", "posdteu.shop\nmathlah.com\nnew-one.test\n");
    sinkhole.until_blocked("new-one.test", true).await;
    sinkhole.setup.replace("remus.txt", "");
    sinkhole.wait_for_log("empty list would replace 3 entries");

    let events = sinkhole.events_of("PolicyReload", 3).await;
    let start = &events[0]["AdditionalFields"];
    assert_eq!(start["trigger"], "start");
    assert_eq!(start["policy_version"], 1);
    assert_eq!(start["site"], "branch-07");
    assert_eq!(start["lists"][0]["name"], "remus");
    assert_eq!(start["lists"][0]["entries"], 4);
    assert_eq!(start["lists"][0]["added"], 4);

    let change = &events[1];
    assert_eq!(change["EventResult"], "Success");
    let list = &change["AdditionalFields"]["lists"][0];
    assert_eq!(change["AdditionalFields"]["trigger"], "file change");
    assert_eq!(change["AdditionalFields"]["policy_version"], 2);
    assert_eq!(
        (list["added"].as_u64(), list["removed"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(list["entries"], 3);
    let expected = sinkhole::lists::sha256_hex(b"posdteu.shop\nmathlah.com\nnew-one.test\n");
    assert_eq!(list["sha256"], expected.as_str());

    let failed = &events[2];
    assert_eq!(failed["EventResult"], "Failure");
    assert_eq!(failed["AdditionalFields"]["policy_version"], 2);
    let error = failed["AdditionalFields"]["errors"][0].as_str().unwrap();
    assert!(
        error.contains("empty list would replace 3 entries"),
        "{error}"
    );
    assert!(
        sinkhole.blocked("new-one.test").await,
        "the last good policy stays"
    );

    // Query events carry the site and the policy version that decided.
    let queries = sinkhole.events(1).await;
    let last = queries.last().unwrap();
    assert_eq!(last["AdditionalFields"]["site"], "branch-07");
    assert_eq!(last["AdditionalFields"]["policy_version"], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn heartbeats_report_the_lists_in_force() {
    let upstream = Upstream::start().await;
    let config = CONFIG.replace(
        "site = \"branch-07\"",
        "site = \"branch-07\"\nheartbeat_interval_s = 1",
    );
    let setup = Setup::bare(vec![upstream.addr], &config);
    setup.write("remus.txt", REMUS);
    let sinkhole = setup.start();

    let beats = sinkhole.events_of("Heartbeat", 2).await;
    let beat = &beats[1]["AdditionalFields"];
    assert_eq!(beat["trigger"], "interval");
    assert_eq!(beat["policy_version"], 1);
    let sinks = &beat["sinks"];
    assert_eq!(sinks["queue"]["dropped"], 0);
    assert!(sinks["file"]["written"].as_u64().unwrap() >= 2, "{sinks}");
    assert!(sinks.get("syslog").is_none() && sinks.get("logs_ingestion").is_none());
    let list = &beat["lists"][0];
    assert_eq!(list["entries"], 4);
    assert!(list["age_s"].as_u64().unwrap() < 60);
    assert!(list.get("last_error").is_none());

    // A failed reload shows as the list's last error until a good one.
    sinkhole.setup.replace("remus.txt", "not a name\n");
    sinkhole.wait_for_log("reload failed");
    // Counted after the failure; the one after next was surely made after it.
    let seen = sinkhole.events_of("Heartbeat", 1).await.len();
    let beats = sinkhole.events_of("Heartbeat", seen + 2).await;
    let last = &beats.last().unwrap()["AdditionalFields"]["lists"][0];
    let error = last["last_error"].as_str().unwrap();
    assert!(error.contains("no valid entry; line 1"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn kubernetes_configmap_updates_are_seen() {
    let upstream = Upstream::start().await;
    let setup = Setup::bare(vec![upstream.addr], CONFIG);
    // A ConfigMap volume: files are links through `..data` to a timestamped folder.
    let first = setup.path("..2026_12_03_10_00_00.1");
    std::fs::create_dir(&first).unwrap();
    std::fs::write(first.join("remus.txt"), REMUS).unwrap();
    symlink("..2026_12_03_10_00_00.1", setup.path("..data")).unwrap();
    symlink("..data/remus.txt", setup.path("remus.txt")).unwrap();
    let sinkhole = setup.start();
    assert!(sinkhole.blocked("posdteu.shop").await);

    // The kubelet's update: a new folder, a new link, renamed over `..data`.
    let second = sinkhole.setup.path("..2026_12_03_11_00_00.2");
    std::fs::create_dir(&second).unwrap();
    std::fs::write(second.join("remus.txt"), "configmap-c2.test\n").unwrap();
    symlink("..2026_12_03_11_00_00.2", sinkhole.setup.path("..data_tmp")).unwrap();
    std::fs::rename(
        sinkhole.setup.path("..data_tmp"),
        sinkhole.setup.path("..data"),
    )
    .unwrap();
    std::fs::remove_dir_all(&first).unwrap();

    let took = sinkhole.until_blocked("configmap-c2.test", true).await;
    assert!(took < Duration::from_secs(1), "applied after {took:?}");
    assert!(!sinkhole.blocked("posdteu.shop").await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_list_file_that_appears_after_start_is_enforced() {
    let upstream = Upstream::start().await;
    let config = format!("{CONFIG}\n[[blocklist]]\nname = \"later\"\npath = \"later.txt\"\n");
    let setup = Setup::bare(vec![upstream.addr], &config);
    setup.write("remus.txt", REMUS);
    let sinkhole = setup.start();
    sinkhole.wait_for_log("list file not there; enforced as soon as it appears");
    assert!(
        sinkhole.blocked("posdteu.shop").await,
        "the other lists apply"
    );

    // Another list's change is not held back by the one still missing.
    sinkhole
        .setup
        .replace("remus.txt", &format!("{REMUS}meanwhile.test\n"));
    sinkhole.until_blocked("meanwhile.test", true).await;

    sinkhole.setup.replace("later.txt", "late-c2.test\n");
    let took = sinkhole.until_blocked("late-c2.test", true).await;
    assert!(took < Duration::from_secs(1), "applied after {took:?}");
    let reloads = sinkhole.events_of("PolicyReload", 3).await;
    let start = &reloads[0]["AdditionalFields"]["lists"][1];
    assert!(start["last_error"].as_str().unwrap().contains("later.txt"));
    assert!(
        reloads[2]["AdditionalFields"]["lists"][1]
            .get("last_error")
            .is_none()
    );
}
