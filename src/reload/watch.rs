//! What triggers a reload: file changes, SIGHUP, and the heartbeat's clock.
//!
//! The folders of the list files and of the config file are watched, not the files, so every
//! way a file gets replaced is seen: written in place, written elsewhere and renamed over it
//! (editors, download scripts), deleted and created again, and a Kubernetes ConfigMap volume,
//! where the files are symlinks through `..data` and an update swaps that symlink (the event
//! then names `..data`, never the file). A burst of events is folded into one check after
//! [`DEBOUNCE`]; the check compares each file's stamp (inode, size, modification time) with
//! the one it had when read, and reloads only when one differs. SIGHUP always reloads.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Reloader, Trigger};

/// Quiet time after the first file event before the files are checked.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// Watches the files and SIGHUP, and reloads until `shutdown` is cancelled.
pub async fn watch(reloader: Reloader, shutdown: CancellationToken) {
    let (changes, mut changed) = mpsc::channel::<()>(1);
    let mut watched = reloader.watched();
    let mut watcher = start_watcher(&watched.0, watched.1.clone(), changes.clone());
    tracing::info!(folders = watched.0.len(), "watching list files");
    // A change made between the first load and the watcher's start has no event.
    if reloader.changed() {
        let _ = changes.try_send(());
    }
    let mut hangup = hangup_signal();
    let mut heartbeat = heartbeat_clock(reloader.heartbeat_interval());

    let reloader = Arc::new(Mutex::new(reloader));
    loop {
        let trigger = tokio::select! {
            () = shutdown.cancelled() => break,
            Some(()) = changed.recv() => {
                tokio::time::sleep(DEBOUNCE).await;
                while changed.try_recv().is_ok() {}
                Trigger::FileChange
            }
            Some(()) = recv_signal(&mut hangup) => {
                tracing::info!("SIGHUP: reloading config and lists");
                Trigger::Hangup
            }
            () = tick(&mut heartbeat) => {
                if let Ok(reloader) = reloader.lock() {
                    reloader.heartbeat();
                }
                continue;
            }
        };
        let now_watched = run_reload(&reloader, trigger).await;
        if let Some(now_watched) = now_watched.filter(|now| *now != watched) {
            drop(watcher);
            watcher = start_watcher(&now_watched.0, now_watched.1.clone(), changes.clone());
            tracing::info!(folders = now_watched.0.len(), "watching list files");
            watched = now_watched;
        }
    }
    drop(watcher);
}

type Watched = (HashSet<PathBuf>, HashSet<PathBuf>);

/// Reloads on a blocking thread; returns what to watch afterwards.
async fn run_reload(reloader: &Arc<Mutex<Reloader>>, trigger: Trigger) -> Option<Watched> {
    let reloader = reloader.clone();
    let reloaded = tokio::task::spawn_blocking(move || {
        let mut reloader = reloader.lock().ok()?;
        if trigger == Trigger::Hangup || reloader.changed() {
            reloader.reload(trigger);
        }
        Some(reloader.watched())
    });
    match reloaded.await {
        Ok(watched) => watched,
        Err(error) => {
            tracing::error!(%error, "reload task failed; the previous policy stays");
            None
        }
    }
}

fn start_watcher(
    dirs: &HashSet<PathBuf>,
    files: HashSet<PathBuf>,
    changes: mpsc::Sender<()>,
) -> Option<notify::RecommendedWatcher> {
    let handler = move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else {
            return;
        };
        if event.kind.is_access() {
            return;
        }
        if event.paths.iter().any(|path| matters(path, &files)) {
            // A full channel already holds a pending change.
            let _ = changes.try_send(());
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(watcher) => watcher,
        Err(error) => {
            tracing::error!(%error, "cannot watch list files; only SIGHUP reloads them");
            return None;
        }
    };
    for dir in dirs {
        if let Err(error) = watcher.watch(dir, RecursiveMode::NonRecursive) {
            tracing::error!(dir = %dir.display(), %error, "cannot watch folder; SIGHUP still reloads");
        }
    }
    Some(watcher)
}

/// Whether an event on `path` may have changed a watched file: the file itself, or a
/// Kubernetes volume's `..data` link (or the `..`-named folders it points to).
fn matters(path: &Path, files: &HashSet<PathBuf>) -> bool {
    files.contains(path)
        || path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.starts_with(".."))
}

fn heartbeat_clock(interval: Option<Duration>) -> Option<tokio::time::Interval> {
    let interval = interval?;
    let mut clock = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    Some(clock)
}

async fn tick(clock: &mut Option<tokio::time::Interval>) {
    match clock {
        Some(clock) => {
            clock.tick().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = Option<()>;

#[cfg(unix)]
fn hangup_signal() -> Hangup {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}

#[cfg(not(unix))]
fn hangup_signal() -> Hangup {
    None
}

#[cfg(unix)]
async fn recv_signal(signal: &mut Hangup) -> Option<()> {
    match signal {
        Some(signal) => signal.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn recv_signal(_: &mut Hangup) -> Option<()> {
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_volume_swaps_and_watched_files_matter() {
        let files: HashSet<PathBuf> = [PathBuf::from("/etc/sinkhole/lists/remus.txt")].into();
        for path in [
            "/etc/sinkhole/lists/remus.txt",
            "/etc/sinkhole/lists/..data",
            "/etc/sinkhole/lists/..data_tmp",
            "/etc/sinkhole/lists/..2026_12_03_16_00_00.123",
        ] {
            assert!(matters(Path::new(path), &files), "{path}");
        }
        assert!(!matters(
            Path::new("/etc/sinkhole/lists/events.ndjson"),
            &files
        ));
    }
}
