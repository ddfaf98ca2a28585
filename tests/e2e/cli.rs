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
    ];
    for (config, expected) in cases {
        let setup = Setup::bare(Vec::new(), config);
        let path = setup.config_path();
        for command in ["validate", "serve"] {
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
