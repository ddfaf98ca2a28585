//! The on-disk spool of the Logs Ingestion sink: events wait here until Azure has them.
//!
//! The event writer appends each event's JSON line to `open.part` in the spool folder. The
//! file is sealed, renamed to `SEQUENCE.ndjson`, once one more line would make its request body
//! larger than [`MAX_BODY`], or once it has been open for the flush interval. Sealed files are
//! the batches the uploader sends, oldest first, and deletes once the service accepted them.
//! Only the writer creates files and only the uploader deletes them, so neither needs a lock.
//!
//! Everything in the folder survives a restart: an `open.part` left by a crash is sealed at
//! start. Lines are only ever appended, so a crash can tear only a batch's last line: that
//! line is parsed when the batch is read, and skipped and counted if it is not JSON; the
//! others are checked only for their braces. Like the event file, the spool is not synced
//! to disk: it survives a crash of sinkhole, not a crash of the machine.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The largest request body: the service takes at most 1 MB per call, compressed or not.
pub const MAX_BODY: u64 = 1_000_000;

const OPEN_NAME: &str = "open.part";
const SEALED_SUFFIX: &str = ".ndjson";

/// The writer's side: appends lines and seals batches.
pub struct SpoolWriter {
    dir: PathBuf,
    open: Option<OpenBatch>,
    next_sequence: u64,
    flush_interval: Duration,
}

struct OpenBatch {
    out: BufWriter<File>,
    /// Bytes of the lines written, newlines included.
    bytes: u64,
    since: Instant,
}

/// Why a line was not spooled.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("event of {0} bytes is larger than a request may be")]
    TooLarge(usize),
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl SpoolWriter {
    /// Opens the spool folder, creating it, and seals what a crash left open.
    pub fn open(dir: &Path, flush_interval: Duration) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let next_sequence = batches(dir)?.last().map_or(1, |batch| batch.sequence + 1);
        let mut writer = Self {
            dir: dir.to_owned(),
            open: None,
            next_sequence,
            flush_interval,
        };
        let left = dir.join(OPEN_NAME);
        if left.metadata().is_ok_and(|metadata| metadata.len() > 0) {
            writer.rename_sealed(&left)?;
        }
        Ok(writer)
    }

    /// Appends one event's JSON line (with its newline).
    pub fn append(&mut self, line: &str) -> Result<(), AppendError> {
        let length = line.len() as u64;
        // The body is `[` + the lines joined by `,` + `]`: one byte more than the file.
        if length + 1 > MAX_BODY {
            return Err(AppendError::TooLarge(line.len()));
        }
        if self
            .open
            .as_ref()
            .is_some_and(|open| open.bytes + length + 1 > MAX_BODY)
        {
            self.seal()?;
        }
        let open = match &mut self.open {
            Some(open) => open,
            None => self.open.insert(Self::start(&self.dir)?),
        };
        open.out.write_all(line.as_bytes())?;
        open.bytes += length;
        Ok(())
    }

    /// Hands the lines written so far to the operating system.
    pub fn flush(&mut self) -> io::Result<()> {
        match &mut self.open {
            Some(open) => open.out.flush(),
            None => Ok(()),
        }
    }

    /// Seals the open batch if it has been open for the flush interval.
    pub fn tick(&mut self) -> io::Result<()> {
        let due = self
            .open
            .as_ref()
            .is_some_and(|open| open.since.elapsed() >= self.flush_interval);
        if due { self.seal() } else { Ok(()) }
    }

    /// Writes the open batch to disk and renames it to its sequence number.
    pub fn seal(&mut self) -> io::Result<()> {
        let Some(mut open) = self.open.take() else {
            return Ok(());
        };
        open.out.flush()?;
        drop(open);
        self.rename_sealed(&self.dir.join(OPEN_NAME))
    }

    fn start(dir: &Path) -> io::Result<OpenBatch> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(OPEN_NAME))?;
        let bytes = file.metadata()?.len();
        Ok(OpenBatch {
            out: BufWriter::with_capacity(64 * 1024, file),
            bytes,
            since: Instant::now(),
        })
    }

    fn rename_sealed(&mut self, open: &Path) -> io::Result<()> {
        let sealed = self
            .dir
            .join(format!("{:020}{SEALED_SUFFIX}", self.next_sequence));
        std::fs::rename(open, sealed)?;
        self.next_sequence += 1;
        Ok(())
    }
}

/// A sealed batch in the spool folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub path: PathBuf,
    pub sequence: u64,
    pub bytes: u64,
}

/// The sealed batches in `dir`, oldest first.
pub fn batches(dir: &Path) -> io::Result<Vec<Batch>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(sequence) = name
            .to_str()
            .and_then(|name| name.strip_suffix(SEALED_SUFFIX))
            .and_then(|number| number.parse::<u64>().ok())
        else {
            continue;
        };
        // A batch deleted since the listing is simply not there any more.
        let Ok(metadata) = entry.metadata() else {
            continue;
        };
        found.push(Batch {
            path: entry.path(),
            sequence,
            bytes: metadata.len(),
        });
    }
    found.sort_by_key(|batch| batch.sequence);
    Ok(found)
}

/// A batch read for sending.
#[derive(Debug)]
pub struct Body {
    /// A JSON array of the batch's events.
    pub json: Vec<u8>,
    pub events: u64,
    /// Lines that were not a JSON object (torn by a crash) and were left out.
    pub skipped: u64,
}

/// Reads a batch into the request body.
pub fn read(batch: &Batch) -> io::Result<Body> {
    let text = std::fs::read(&batch.path)?;
    let mut json = Vec::with_capacity(text.len() + 2);
    json.push(b'[');
    let (mut events, mut skipped) = (0, 0);
    let mut lines = text
        .split(|&byte| byte == b'\n')
        .filter(|line| !line.is_empty())
        .peekable();
    while let Some(line) = lines.next() {
        let last = lines.peek().is_none();
        let object = line.first() == Some(&b'{') && line.last() == Some(&b'}');
        if !object || last && serde_json::from_slice::<serde::de::IgnoredAny>(line).is_err() {
            skipped += 1;
            continue;
        }
        if events > 0 {
            json.push(b',');
        }
        json.extend_from_slice(line);
        events += 1;
    }
    json.push(b']');
    Ok(Body {
        json,
        events,
        skipped,
    })
}

/// Events in a batch, counted without parsing: one per line.
pub fn count_events(batch: &Batch) -> u64 {
    std::fs::read(&batch.path).map_or(0, |text| {
        text.split(|&byte| byte == b'\n')
            .filter(|line| !line.is_empty())
            .count() as u64
    })
}

/// Deletes the oldest batches until the sealed ones take at most `max_bytes`; returns the
/// events deleted. `batches` is the listing, oldest first; what is kept stays in it.
pub fn prune(batches: &mut Vec<Batch>, max_bytes: u64) -> io::Result<u64> {
    let mut total: u64 = batches.iter().map(|batch| batch.bytes).sum();
    let mut dropped = 0;
    let mut removed = 0;
    for batch in batches.iter() {
        if total <= max_bytes {
            break;
        }
        dropped += count_events(batch);
        remove(batch)?;
        total -= batch.bytes;
        removed += 1;
    }
    batches.drain(..removed);
    Ok(dropped)
}

/// Deletes a batch the service accepted; one already gone is fine.
pub fn remove(batch: &Batch) -> io::Result<()> {
    match std::fs::remove_file(&batch.path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(n: usize, pad: usize) -> String {
        format!("{{\"n\":{n},\"pad\":\"{}\"}}\n", "x".repeat(pad))
    }

    fn writer(dir: &Path) -> SpoolWriter {
        SpoolWriter::open(dir, Duration::from_secs(3600)).unwrap()
    }

    #[test]
    fn batches_are_sealed_before_a_body_would_pass_one_megabyte() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = writer(dir.path());
        (0..3000).for_each(|n| spool.append(&line(n, 900)).unwrap());
        spool.seal().unwrap();

        let found = batches(dir.path()).unwrap();
        assert_eq!(found.len(), 3, "{found:?}");
        let mut seen = 0;
        for batch in &found {
            let body = read(batch).unwrap();
            assert!(body.json.len() as u64 <= MAX_BODY, "{}", body.json.len());
            assert_eq!(body.json.len() as u64, batch.bytes + 1);
            let array: Vec<serde_json::Value> = serde_json::from_slice(&body.json).unwrap();
            assert_eq!(array.len() as u64, body.events);
            assert_eq!(array[0]["n"], seen);
            seen += body.events;
        }
        assert_eq!(seen, 3000);
    }

    #[test]
    fn an_open_batch_left_by_a_crash_is_sealed_after_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = writer(dir.path());
        spool.append(&line(1, 10)).unwrap();
        spool.seal().unwrap();
        spool.append(&line(2, 10)).unwrap();
        // Torn after an inner object: braces at both ends, and still not JSON.
        spool.append("{\"n\":3,\"torn\":{\"x\":1}").unwrap();
        spool.flush().unwrap();
        drop(spool);

        let mut again = writer(dir.path());
        let found = batches(dir.path()).unwrap();
        assert_eq!(found.iter().map(|b| b.sequence).collect::<Vec<_>>(), [1, 2]);
        let body = read(&found[1]).unwrap();
        assert_eq!((body.events, body.skipped), (1, 1));
        assert_eq!(
            body.json,
            format!("[{}]", line(2, 10).trim_end()).into_bytes()
        );

        again.append(&line(4, 10)).unwrap();
        again.seal().unwrap();
        assert_eq!(batches(dir.path()).unwrap().last().unwrap().sequence, 3);
    }

    #[test]
    fn a_batch_is_sealed_when_the_interval_passes() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = SpoolWriter::open(dir.path(), Duration::from_millis(30)).unwrap();
        spool.append(&line(1, 10)).unwrap();
        spool.tick().unwrap();
        assert!(batches(dir.path()).unwrap().is_empty());
        std::thread::sleep(Duration::from_millis(40));
        spool.tick().unwrap();
        assert_eq!(batches(dir.path()).unwrap().len(), 1);
        spool.tick().unwrap();
        assert_eq!(batches(dir.path()).unwrap().len(), 1, "nothing new to seal");
    }

    #[test]
    fn pruning_deletes_the_oldest_and_counts_their_events() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = writer(dir.path());
        for batch in 0..4 {
            (0..10).for_each(|n| spool.append(&line(batch * 10 + n, 50)).unwrap());
            spool.seal().unwrap();
        }
        let mut found = batches(dir.path()).unwrap();
        let newest_two = found[2].bytes + found[3].bytes;
        let dropped = prune(&mut found, newest_two).unwrap();
        assert_eq!(dropped, 20);
        assert_eq!(found.iter().map(|b| b.sequence).collect::<Vec<_>>(), [3, 4]);
        assert_eq!(batches(dir.path()).unwrap(), found);
    }

    #[test]
    fn an_event_too_large_for_any_request_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = writer(dir.path());
        let huge = line(1, MAX_BODY as usize);
        assert!(matches!(spool.append(&huge), Err(AppendError::TooLarge(_))));
    }
}
