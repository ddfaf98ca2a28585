//! The Logs Ingestion sink's own costs, off the query path: spooling events on the writer
//! thread, and turning a sealed batch into a request body (read, check each line, gzip).
//!
//! `cargo bench --bench ingestion` measures appending 1,000 events of the README's example
//! (1.2 KB each, with the query name, client and transaction id varied) to the spool (and
//! deleting the sealed batches, as the uploader does), and reading plus compressing one full
//! batch (just under 1 MB). It prints once the batch's size before and after gzip, at the
//! level used (1) and at the default level (6), and how long each takes.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use sinkhole::events::ingestion::spool::{self, SpoolWriter};
use sinkhole::events::ingestion::upload::gzip;

const EXAMPLE: &str = r#"{"TimeGenerated":"2026-06-08T09:30:11.412Z","EventCount":1,"EventStartTime":"2026-06-08T09:30:11.412Z","EventEndTime":"2026-06-08T09:30:11.412Z","EventType":"Query","EventSubType":"response","EventResult":"Success","EventResultDetails":"NOERROR","EventSeverity":"High","EventProduct":"sinkhole","EventProductVersion":"0.1.0","EventVendor":"sinkhole","EventSchema":"Dns","EventSchemaVersion":"0.1.7","Dvc":"branch-dns-01.contoso.example","DvcHostname":"branch-dns-01","DvcAction":"Blocked","DvcOriginalAction":"sinkhole","SrcIpAddr":"10.20.14.37","SrcPortNumber":53012,"DstIpAddr":"10.20.0.2","DstPortNumber":53,"NetworkProtocol":"UDP","NetworkProtocolVersion":"IPv4","DnsQuery":"cdn.posdteu.shop","DnsQueryType":1,"DnsQueryTypeName":"A","DnsQueryClass":1,"DnsQueryClassName":"IN","DnsResponseCode":0,"DnsResponseName":"0.0.0.0","TransactionIdHex":"3fa1","RuleName":"threatfox-remus","ThreatField":"Domain","ThreatName":"Remus","ThreatCategory":"botnet_cc","ThreatConfidence":100,"ThreatFirstReportedTime":"2026-06-06T00:00:00Z","AdditionalFields":{"matched_ioc":"posdteu.shop","ioc_type":"domain","list":"threatfox-remus","list_format":"domains","source":"ThreatFox"}}"#;

/// The example event with its query name, client address and transaction id varied.
fn event(n: usize) -> String {
    let line = EXAMPLE
        .replace("cdn.posdteu.shop", &format!("c{n:x}.posdteu.shop"))
        .replace(
            "10.20.14.37",
            &format!("10.20.{}.{}", n / 250 % 250, n % 250),
        )
        .replace("3fa1", &format!("{:04x}", n % 65_536));
    line + "\n"
}

fn full_batch(dir: &std::path::Path) -> spool::Batch {
    let mut writer = SpoolWriter::open(dir, Duration::from_secs(3600)).unwrap();
    let mut n = 0;
    while spool::batches(dir).unwrap().is_empty() {
        writer.append(&event(n)).unwrap();
        n += 1;
    }
    spool::batches(dir).unwrap().remove(0)
}

fn bench(c: &mut Criterion) {
    let events: Vec<String> = (0..1000).map(event).collect();
    let dir = tempfile::tempdir().unwrap();
    let mut writer = SpoolWriter::open(dir.path(), Duration::from_secs(3600)).unwrap();
    c.bench_function("spool/append 1000 events", |b| {
        b.iter(|| {
            for line in &events {
                writer.append(black_box(line)).unwrap();
            }
            writer.flush().unwrap();
            // As the uploader does: otherwise the bench measures the disk filling up.
            for batch in spool::batches(dir.path()).unwrap() {
                spool::remove(&batch).unwrap();
            }
        });
    });
    drop(writer);

    let dir = tempfile::tempdir().unwrap();
    let batch = full_batch(dir.path());
    let body = spool::read(&batch).unwrap();
    let compressed = gzip(&body.json);
    eprintln!(
        "batch: {} events, {} bytes, {} bytes gzipped ({:.1}x)",
        body.events,
        body.json.len(),
        compressed.len(),
        body.json.len() as f64 / compressed.len() as f64
    );
    for level in [1, 6] {
        let started = std::time::Instant::now();
        let mut size = 0;
        for _ in 0..20 {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
            std::io::Write::write_all(&mut encoder, &body.json).unwrap();
            size = encoder.finish().unwrap().len();
        }
        eprintln!(
            "gzip level {level}: {:?} per batch, {size} bytes",
            started.elapsed() / 20
        );
    }
    let started = std::time::Instant::now();
    for _ in 0..20 {
        black_box(spool::read(&batch).unwrap());
    }
    eprintln!("read: {:?} per batch", started.elapsed() / 20);
    c.bench_function("batch/read and gzip 1 MB", |b| {
        b.iter(|| gzip(&spool::read(black_box(&batch)).unwrap().json));
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
