//! Folding repeated query events, for beaconing malware that asks for its C2 name every few
//! seconds: the first event per (client, name, action) in a window is written at once, and
//! the repeats in that window become one event with `EventCount` when the window closes.
//!
//! Runs on the event writer's thread, never on the query path. At most [`MAX_KEYS`] windows
//! are open at once; beyond that, events are written as they come.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::record::{QueryEvent, Repeats};

/// Open windows kept at most.
pub const MAX_KEYS: usize = 100_000;

type Key = (IpAddr, String, &'static str);

struct Window {
    opened: Instant,
    /// The last repeat, and the count and time of the first.
    last: Option<QueryEvent>,
    repeats: Option<Repeats>,
}

/// Open windows; see the module documentation.
pub struct Dedup {
    window: Duration,
    open: HashMap<Key, Window>,
    /// Summaries of windows that closed when a new event for their key arrived.
    ready: Vec<QueryEvent>,
}

impl Dedup {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            open: HashMap::new(),
            ready: Vec::new(),
        }
    }

    /// Whether `event` is written now (true) or held as a repeat (false).
    pub fn admit(&mut self, event: &QueryEvent, now: Instant) -> bool {
        let key = key(event);
        if let Some(window) = self.open.get_mut(&key) {
            if now.duration_since(window.opened) < self.window {
                let repeats = window.repeats.get_or_insert(Repeats {
                    count: 0,
                    first: event.time,
                });
                repeats.count += 1;
                window.last = Some(event.clone());
                return false;
            }
        }
        if self.open.len() < MAX_KEYS || self.open.contains_key(&key) {
            let window = Window {
                opened: now,
                last: None,
                repeats: None,
            };
            // A window that closed is replaced here; its summary, if any, goes out with the
            // next ones `closed` returns.
            if let Some(old) = self.open.insert(key, window)
                && let (Some(mut last), Some(repeats)) = (old.last, old.repeats)
            {
                last.repeats = Some(repeats);
                self.ready.push(last);
            }
        }
        true
    }

    /// The summaries of the windows that closed by `now` (all of them with `everything`).
    pub fn closed(&mut self, now: Instant, everything: bool) -> Vec<QueryEvent> {
        let window = self.window;
        let mut summaries = std::mem::take(&mut self.ready);
        self.open.retain(|_, open| {
            let done = everything || now.duration_since(open.opened) >= window;
            if done && let (Some(mut last), Some(repeats)) = (open.last.take(), open.repeats.take())
            {
                last.repeats = Some(repeats);
                summaries.push(last);
            }
            !done
        });
        summaries.sort_by_key(|event| event.time);
        summaries
    }
}

fn key(event: &QueryEvent) -> Key {
    let action = match (&event.outcome, &event.found) {
        (super::Outcome::Blocked, _) => "Blocked",
        (super::Outcome::Allowed { .. }, Some(_)) => "Allowed-match",
        (super::Outcome::Allowed { .. }, None) => "Allowed",
    };
    (event.client.ip(), event.name.clone(), action)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Outcome;
    use crate::events::record::tests::event;

    #[test]
    fn repeats_in_a_window_become_one_event_with_their_count() {
        let mut dedup = Dedup::new(Duration::from_secs(60));
        let start = Instant::now();
        let first = event(Outcome::Blocked);
        assert!(dedup.admit(&first, start));
        for second in 1..=5 {
            let mut repeat = first.clone();
            repeat.time += Duration::from_secs(second);
            assert!(!dedup.admit(&repeat, start + Duration::from_secs(second)));
        }
        let mut other = first.clone();
        other.name = "other.posdteu.shop".into();
        assert!(dedup.admit(&other, start), "another name is another window");

        assert!(
            dedup
                .closed(start + Duration::from_secs(30), false)
                .is_empty()
        );
        let summaries = dedup.closed(start + Duration::from_secs(60), false);
        assert_eq!(
            summaries.len(),
            1,
            "only the window with repeats has a summary"
        );
        let repeats = summaries[0].repeats.unwrap();
        assert_eq!(repeats.count, 5);
        assert_eq!(repeats.first, first.time + Duration::from_secs(1));
        assert_eq!(summaries[0].time, first.time + Duration::from_secs(5));

        let json: serde_json::Value =
            serde_json::from_str(&summaries[0].to_json(&crate::events::record::tests::device()))
                .unwrap();
        assert_eq!(json["EventCount"], 5);
        assert_ne!(json["EventStartTime"], json["EventEndTime"]);

        // After the window, the same query opens a new one and is written at once.
        assert!(dedup.admit(&first, start + Duration::from_secs(61)));
    }

    #[test]
    fn a_window_reopened_before_it_was_collected_keeps_its_summary() {
        let mut dedup = Dedup::new(Duration::from_secs(10));
        let start = Instant::now();
        let event = event(Outcome::Blocked);
        dedup.admit(&event, start);
        dedup.admit(&event, start + Duration::from_secs(1));
        assert!(
            dedup.admit(&event, start + Duration::from_secs(11)),
            "a new window"
        );
        let summaries = dedup.closed(start + Duration::from_secs(12), false);
        assert_eq!(summaries.len(), 1);
        assert_eq!(summaries[0].repeats.unwrap().count, 1);
    }

    #[test]
    fn closing_everything_flushes_the_open_windows() {
        let mut dedup = Dedup::new(Duration::from_secs(600));
        let now = Instant::now();
        let event = event(Outcome::Blocked);
        dedup.admit(&event, now);
        dedup.admit(&event, now);
        assert_eq!(dedup.closed(now, true).len(), 1);
        assert!(dedup.closed(now, true).is_empty());
    }
}
