//! Building the policy from a plain list, and looking names up in it.
//!
//! `cargo bench --bench policy` measures: parsing and indexing 100,000 and 1,000,000 names
//! (the whole `Policy::build`, as a reload does it), and one decision for a listed name, a
//! subdomain of one, and a name in no list, with the names spread over 1 list and over 32
//! lists. The lookup figures should not depend on the list count.

use std::fmt::Write as _;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use sinkhole::config::Config;
use sinkhole::dns::name::QueryName;
use sinkhole::lists::{self, ListOptions, LoadedList};
use sinkhole::policy::{Decision, Policy};

const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 10));

/// `count` distinct names in a deterministic spread of shapes: 2 to 4 labels, mixed TLDs.
fn list_text(count: usize, seed: usize) -> String {
    const TLDS: [&str; 8] = ["com", "net", "org", "shop", "xyz", "top", "co.uk", "info"];
    let mut text = String::with_capacity(count * 20);
    for i in 0..count {
        let n = i * 31 + seed * 1_000_003;
        let tld = TLDS[n % TLDS.len()];
        let _ = match n % 3 {
            0 => writeln!(text, "c{n:x}.{tld}"),
            1 => writeln!(text, "api.m{n:x}.{tld}"),
            _ => writeln!(text, "x{}.cdn{n:x}.{tld}", n % 7),
        };
    }
    text
}

fn config(lists: usize) -> Config {
    let mut text = String::new();
    for i in 0..lists {
        let _ = writeln!(
            text,
            "[[blocklist]]\nname = \"list{i}\"\npath = \"list{i}.txt\""
        );
    }
    Config::parse(&text, Path::new("bench.toml")).expect("bench config parses")
}

fn loaded(text: &str) -> Arc<LoadedList> {
    let parsed = lists::parse(text.as_bytes(), &ListOptions::default()).expect("list parses");
    Arc::new(LoadedList {
        path: "bench.txt".into(),
        parsed,
        elapsed: Duration::ZERO,
        stamp: None,
        sha256: String::new(),
        options_key: String::new(),
    })
}

/// A policy of `total` names spread over `lists` lists.
fn policy(total: usize, lists: usize) -> Policy {
    let loaded: Vec<_> = (0..lists)
        .map(|seed| loaded(&list_text(total / lists, seed)))
        .collect();
    Policy::build(&config(lists), &loaded, 1)
}

fn build(c: &mut Criterion) {
    let mut group = c.benchmark_group("build");
    group.sample_size(10);
    for count in [100_000, 1_000_000] {
        let text = list_text(count, 0);
        let config = config(1);
        group.bench_with_input(BenchmarkId::new("parse+index", count), &text, |b, text| {
            b.iter(|| Policy::build(&config, &[loaded(text)], 1));
        });
    }
    group.finish();
}

fn lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("lookup");
    for lists in [1, 32] {
        let policy = policy(1_000_000, lists);
        let listed = list_text(1, 0);
        let listed = listed.trim();
        let names = [
            ("listed", QueryName::from_text(listed)),
            ("subdomain", QueryName::from_text(&format!("a.b.{listed}"))),
            (
                "unlisted",
                QueryName::from_text("www.some-shop.example.co.uk"),
            ),
        ];
        for (kind, name) in names {
            let name = name.expect("bench names are valid");
            let id = BenchmarkId::new(kind, format!("{lists} lists"));
            group.bench_with_input(id, &name, |b, name| {
                b.iter(|| matches!(policy.decide(black_box(name), CLIENT), Decision::Block(_)));
            });
        }
    }
    group.finish();
}

criterion_group!(benches, build, lookup);
criterion_main!(benches);
