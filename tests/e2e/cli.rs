//! The command line: `validate` and `check`, and the exit codes for bad configs and lists.

use std::process::{Command, Output};

use crate::harness::{REMUS, Setup};

fn sinkhole(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sinkhole"))
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The standard output of a command that must have exited 0.
fn succeeded(output: &Output) -> String {
    let stdout = text(&output.stdout);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
    stdout
}

fn standard() -> Setup {
    Setup::standard("127.0.0.1:53".parse().unwrap())
}

#[test]
fn validate_prints_counts_per_list() {
    let setup = standard();
    let config = setup.config_path();
    let output = sinkhole(&["validate", "--config", config.to_str().unwrap()]);
    let stdout = succeeded(&output);
    assert!(stdout.contains("blocklist threatfox-remus:"), "{stdout}");
    assert!(stdout.contains("4 names, 0 skipped lines"), "{stdout}");
    assert!(stdout.contains("allowlist microsoft-update:"), "{stdout}");
    assert!(stdout.contains("RSS"), "{stdout}");
}

#[test]
fn validate_reports_bad_lines_with_path_and_line() {
    let setup = standard();
    setup.write("remus.txt", &format!("{REMUS}bad name here\n"));
    let config = setup.config_path();
    let output = sinkhole(&["validate", "--config", config.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(64));
    let stderr = text(&output.stderr);
    let expected = format!(
        "{}:5: expected one domain per line",
        setup.path("remus.txt").display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
}

#[test]
fn bad_configs_exit_64_with_one_clear_line() {
    let cases = [
        (
            "[server]\nlisten_on = []\n",
            "sinkhole.toml:2: unknown field `listen_on`",
        ),
        ("[sinkhole]\nttl = \"long\"\n", "sinkhole.toml:2:"),
        (
            "[[blocklist]]\nname = \"x\"\npath = \"missing.txt\"\n",
            "missing.txt: cannot read list",
        ),
        ("[events]\nqueue = 0\n", "events.queue: must be more than 0"),
        (
            "[events.logs_ingestion]\nendpoint = \"ftp://dce\"\ndcr_immutable_id = \"dcr-1\"\n",
            "events.logs_ingestion.endpoint: must be an https:// URL",
        ),
        (
            "[events.logs_ingestion]\nendpoint = \"https://dce\"\ndcr_immutable_id = \"dcr-1\"\nclient_secret = \"x\"\n",
            "unknown field `client_secret`",
        ),
    ];
    for (config, expected) in cases {
        let setup = Setup::bare(Vec::new(), config);
        let path = setup.config_path();
        // `serve` starts without a list file that is not there yet: see policy_reload.
        let missing_list = expected.contains("cannot read list");
        let commands: &[&str] = if missing_list {
            &["validate"]
        } else {
            &["validate", "serve"]
        };
        for &command in commands {
            let output = sinkhole(&[command, "--config", path.to_str().unwrap()]);
            let stderr = text(&output.stderr);
            assert_eq!(
                output.status.code(),
                Some(64),
                "{command} {config}: {stderr}"
            );
            assert!(stderr.contains(expected), "{command}: {stderr}");
            assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        }
    }
    let output = sinkhole(&["validate", "--config", "/nonexistent/sinkhole.toml"]);
    assert_eq!(output.status.code(), Some(64));
    assert!(text(&output.stderr).contains("/nonexistent/sinkhole.toml: cannot read config"));
}

#[test]
fn logs_ingestion_credentials_are_checked_before_serving() {
    let config = "[events.logs_ingestion]\nendpoint = \"https://dce.example\"\n\
                  dcr_immutable_id = \"dcr-1\"\ntenant_id = \"t-1\"\nclient_id = \"c-1\"\n";
    let setup = Setup::bare(Vec::new(), config);
    let path = setup.config_path();
    let serve = ["serve", "--listen", "127.0.0.1:0"];
    for command in [&["validate"][..], &serve[..]] {
        let output = Command::new(env!("CARGO_BIN_EXE_sinkhole"))
            .args(command)
            .args(["--config", path.to_str().unwrap()])
            .env_remove("AZURE_CLIENT_SECRET")
            .output()
            .unwrap();
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{command:?}: {stderr}");
        assert!(
            stderr.contains(
                "events.logs_ingestion.client_secret_file: not set, nor is AZURE_CLIENT_SECRET"
            ),
            "{command:?}: {stderr}"
        );
    }

    let setup = Setup::bare(
        Vec::new(),
        &format!("{config}client_secret_file = \"secret.txt\"\n"),
    );
    setup.write("secret.txt", "do-not-print-me\n");
    let output = sinkhole(&[
        "validate",
        "--config",
        setup.config_path().to_str().unwrap(),
    ]);
    let stdout = succeeded(&output);
    let secret_file = setup.path("secret.txt");
    let line = format!(
        "logs ingestion: https://dce.example/dataCollectionRules/dcr-1/streams/\
         Custom-SinkholeEvents?api-version=2023-01-01 (tenant t-1, client c-1, secret from {})",
        secret_file.display()
    );
    assert!(stdout.contains(&line), "{stdout}");
    assert!(!stdout.contains("do-not-print-me"));
}

#[test]
fn check_shows_the_decision_and_the_metadata_behind_it() {
    let setup = standard();
    let config = setup.config_path();
    let config = config.to_str().unwrap();

    let output = sinkhole(&[
        "check",
        "--config",
        config,
        "C2.PosdTeu.shop.",
        "--type",
        "AAAA",
    ]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0));
    for expected in [
        "decision: blocked",
        "list: threatfox-remus",
        "entry: posdteu.shop",
        "action: sinkhole -> :: (ttl 60)",
        "source: ThreatFox",
        "family: Remus",
        "threat type: botnet_cc",
        "confidence: 100",
        "first seen: 2026-06-06T00:00:00Z",
    ] {
        assert!(stdout.contains(expected), "{expected}: {stdout}");
    }

    let output = sinkhole(&["check", "--config", config, "update.example.test"]);
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("decision: forward (allowlist microsoft-update"),
        "{stdout}"
    );
    assert!(stdout.contains("list: trackers"), "{stdout}");

    let output = sinkhole(&[
        "check",
        "--config",
        config,
        "mathlah.com",
        "--client",
        "127.0.0.7",
    ]);
    assert!(text(&output.stdout).contains("client exempt by veeam-backup"));

    let output = sinkhole(&["check", "--config", config, "example.org"]);
    assert!(text(&output.stdout).contains("decision: forward (no list matches)"));
}

#[test]
fn the_default_config_validates() {
    let root = env!("CARGO_MANIFEST_DIR");
    let output = sinkhole(&[
        "validate",
        "--config",
        &format!("{root}/config/sinkhole.toml"),
    ]);
    let stdout = succeeded(&output);
    assert!(stdout.contains("blocklist threatfox-remus:"));
    assert!(stdout.contains("4 names"));
}

/// Every feed format side by side, each detected from its content.
fn feeds() -> Setup {
    let config = r#"
[[blocklist]]
name = "threatfox"
path = "threatfox.csv"
source = "ThreatFox"
min_confidence = 50

[[blocklist]]
name = "rpz"
path = "policy.rpz.zone"
origin = "rpz.sinkhole.test"

[[blocklist]]
name = "ads"
path = "ads.txt"

[[blocklist]]
name = "hosts"
path = "local.hosts"

[[blocklist]]
name = "plain"
path = "plain.txt"
family = "Remus"

[[allowlist]]
name = "allow"
path = "allow.txt"
"#;
    let setup = Setup::bare(vec!["127.0.0.1:53".parse().unwrap()], config);
    setup.write("threatfox.csv", include_str!("fixtures/threatfox.csv"));
    setup.write("policy.rpz.zone", include_str!("fixtures/policy.rpz.zone"));
    setup.write("ads.txt", include_str!("fixtures/ads.adblock.txt"));
    setup.write("local.hosts", include_str!("fixtures/local.hosts"));
    setup.write("plain.txt", "posdteu.shop\nads.feed.test\n");
    setup.write("allow.txt", "ads.feed.test\n");
    setup
}

#[test]
fn validate_reports_format_entries_and_skips_per_list() {
    let setup = feeds();
    let config = setup.config_path();
    let output = sinkhole(&["validate", "--config", config.to_str().unwrap()]);
    let stdout = succeeded(&output);
    for expected in [
        "blocklist threatfox: ",
        "format: threatfox-csv (detected)",
        "entries: 3 names, 0 exceptions, 1 response-IP triggers, 0 client-IP triggers",
        "skipped: 0 invalid, 1 unsupported, 1 under min_confidence, 0 older than max_age",
        "unsupported: 1 x file hash IOC",
        "format: rpz (detected)",
        "entries: 7 names, 1 exceptions, 0 response-IP triggers, 1 client-IP triggers",
        "unsupported: 1 x rpz-nsdname trigger",
        "format: adblock (detected)",
        "entries: 2 names, 1 exceptions",
        "unsupported: 1 x cosmetic rule",
        "format: hosts (detected)",
        "format: domains (detected)",
        "conflict: blocklist ads entry ads.feed.test is protected by allow entry ads.feed.test",
    ] {
        assert!(stdout.contains(expected), "{expected}: {stdout}");
    }
}

#[test]
fn validate_names_bad_entries_and_exits_64() {
    let setup = feeds();
    setup.write("plain.txt", "good.test\nbad name\nx..y\n");
    let config = setup.config_path();
    let output = sinkhole(&["validate", "--config", config.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(64));
    let stderr = text(&output.stderr);
    let path = setup.path("plain.txt");
    assert!(
        stderr.contains(&format!("{}:2: ", path.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{}:3: ", path.display())),
        "{stderr}"
    );
}

#[test]
fn check_shows_every_matching_list_and_the_indicator() {
    let setup = feeds();
    let config = setup.config_path();
    let config = config.to_str().unwrap();

    let output = sinkhole(&["check", "--config", config, "c2.posdteu.shop"]);
    let stdout = succeeded(&output);
    for expected in [
        "listed in: threatfox blocks posdteu.shop (sinkhole)",
        "listed in: plain blocks posdteu.shop (sinkhole)",
        "decision: blocked by list threatfox",
        "ioc id: 9000101",
        "family: Remus",
        "malware: win.remus",
        "tags: Remus, RemusStealer",
        "first seen: 2026-06-06T08:14:02Z",
    ] {
        assert!(stdout.contains(expected), "{expected}: {stdout}");
    }

    let output = sinkhole(&[
        "check",
        "--config",
        config,
        "www.example.test",
        "--answer",
        "192.0.2.10",
    ]);
    let stdout = succeeded(&output);
    assert!(
        stdout.contains("then blocked by list threatfox (answer address)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("entry: 192.0.2.10/32 (response IP)"),
        "{stdout}"
    );

    let output = sinkhole(&["check", "--config", config, "a.nx.rpz-feed.test"]);
    let stdout = succeeded(&output);
    assert!(
        stdout.contains("listed in: rpz blocks *.nx.rpz-feed.test (nxdomain)"),
        "{stdout}"
    );
    assert!(stdout.contains("action: nxdomain -> NXDOMAIN"), "{stdout}");

    let output = sinkhole(&["check", "--config", config, "x.ads.feed.test"]);
    let stdout = succeeded(&output);
    assert!(
        stdout.contains("decision: forward (allowlist allow"),
        "{stdout}"
    );
    assert!(
        stdout.contains("listed in: allow allows ads.feed.test"),
        "{stdout}"
    );

    let output = sinkhole(&["check", "--config", config, "local.hosts.test"]);
    assert!(succeeded(&output).contains("action: local-data -> 192.0.2.77"));
}

#[test]
fn kql_prints_the_hunt_for_the_loaded_indicators() {
    let setup = feeds();
    let config = setup.config_path();
    let output = sinkhole(&["kql", "--config", config.to_str().unwrap()]);
    let stdout = succeeded(&output);
    assert!(
        stdout.contains("let malicious_domains = dynamic(["),
        "{stdout}"
    );
    for name in [
        "\"posdteu.shop\"",
        "\"evil-gate.test\"",
        "\"nx.rpz-feed.test\"",
        "\"ads.feed.test\"",
    ] {
        assert!(stdout.contains(name), "{name}: {stdout}");
    }
    assert!(stdout.contains("\"192.0.2.10/32\""), "{stdout}");
    assert!(stdout.contains("DnsEvents\n| where Name has_any (malicious_domains)"));

    let output = sinkhole(&[
        "kql",
        "--config",
        config.to_str().unwrap(),
        "--table",
        "_Im_Dns",
    ]);
    assert!(succeeded(&output).contains("_Im_Dns(domain_has_any = malicious_domains)"));
}
