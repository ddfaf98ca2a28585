//! `sinkhole validate`: loads the config and every list without serving, and reports per list
//! the format, entries by kind, what was skipped and why, and how long loading took.
//!
//! Exits 64 when a list has invalid entries, so a deployment pipeline can stop a broken feed
//! before it reaches a resolver. Unsupported entries (file hashes, cosmetic rules, NSDNAME
//! triggers) are reported but are not errors.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Instant, SystemTime};

use super::{Failure, load};
use crate::lists::{Format, LoadedList};
use crate::memory::Memory;
use crate::policy::Policy;
use crate::reload::{ListSpec, list_specs};

/// Invalid lines shown per list; the rest are counted.
const SHOWN: usize = 5;

pub fn run(path: &Path) -> Result<ExitCode, Failure> {
    let started = Instant::now();
    let (config, lists) = load(path)?;
    let policy = Policy::build(&config, &lists, 1);
    let took = started.elapsed();

    say!("{}: config ok", path.display());
    if let Some((settings, credentials)) =
        crate::server::ingestion_settings(&config).map_err(Failure::config)?
    {
        say!(
            "logs ingestion: {} (tenant {}, client {}, secret {})",
            settings.url(),
            credentials.tenant_id,
            credentials.client_id,
            credentials.secret
        );
    }
    let specs = list_specs(&config, SystemTime::now());
    let mut invalid = 0;
    for (spec, list) in specs.iter().zip(&lists) {
        report_list(spec, list);
        invalid += list.parsed.skipped.invalid;
    }
    report_policy(&policy, took);
    if invalid > 0 {
        esay!("sinkhole: {invalid} list entries are not valid (the first are shown above)");
        return Ok(ExitCode::from(64));
    }
    Ok(ExitCode::SUCCESS)
}

fn report_list(spec: &ListSpec, list: &LoadedList) {
    let parsed = &list.parsed;
    let how = if spec.options.format == Format::Auto {
        "detected"
    } else {
        "configured"
    };
    say!(
        "{} {}: {}: {} names, {} skipped lines, {} lines, {:.1} ms",
        spec.kind.name(),
        spec.name,
        list.path.display(),
        parsed.block.len(),
        parsed.skipped.invalid,
        parsed.lines,
        list.elapsed.as_secs_f64() * 1000.0
    );
    say!("  format: {} ({how})", parsed.format.name());
    say!(
        "  entries: {} names, {} exceptions, {} response-IP triggers, {} client-IP triggers",
        parsed.block.len(),
        parsed.allow.len(),
        parsed.response_ips.len(),
        parsed.client_ips.len()
    );
    let skipped = &parsed.skipped;
    say!(
        "  skipped: {} invalid, {} unsupported, {} under min_confidence, {} older than max_age",
        skipped.invalid,
        skipped.unsupported_total(),
        skipped.low_confidence,
        skipped.expired
    );
    for (kind, count) in &skipped.unsupported {
        say!("  unsupported: {count} x {kind}");
    }
    for line in skipped.lines.iter().take(SHOWN) {
        esay!("{}:{}: {}", list.path.display(), line.line, line.reason);
    }
    if skipped.invalid > SHOWN {
        esay!(
            "{}: {} more invalid entries",
            list.path.display(),
            skipped.invalid - SHOWN
        );
    }
}

fn report_policy(policy: &Policy, took: std::time::Duration) {
    let memory = Memory::read();
    say!(
        "policy: {} blocked names, {} IP triggers, {} protected names, index {:.1} MiB, loaded in {:.1} ms, RSS {:.1} MiB, peak RSS {:.1} MiB",
        policy.blocked_names(),
        policy.ip_triggers(),
        policy.allowed_names(),
        policy.index_bytes() as f64 / (1024.0 * 1024.0),
        took.as_secs_f64() * 1000.0,
        memory.rss_mib,
        memory.peak_mib,
    );
    let conflicts = &policy.conflicts;
    for conflict in conflicts.found.iter().take(SHOWN) {
        say!(
            "conflict: blocklist {} entry {} is protected by {} entry {} (allowed)",
            conflict.list.name,
            conflict.entry,
            conflict.allowlist,
            conflict.protected_by
        );
    }
    if conflicts.total > SHOWN {
        say!("conflicts: {} in all", conflicts.total);
    }
}
