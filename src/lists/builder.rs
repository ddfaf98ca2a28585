//! Collects a list's entries while a format parser reads it: normalises names, keeps rules,
//! applies `min_confidence` and `max_age`, and counts what was left out.
//!
//! Every format parser feeds one of these, so names are normalised, bad entries reported and
//! indicators filtered the same way whatever the format.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use ipnet::IpNet;

use super::domain::normalize;
use super::rule::{EntryAction, Indicator, LIST_RULE, Rule, Scope, Text};
use super::{
    Attr, Format, IpTrigger, ListOptions, NameTriggers, Names, ParsedList, Skipped, SkippedLine,
};
use crate::events::time::epoch_seconds;

/// A list being read; see the module documentation.
pub struct ListBuilder<'o> {
    options: &'o ListOptions,
    block: TriggerBuilder,
    allow: TriggerBuilder,
    response_ips: Vec<IpTrigger>,
    client_ips: Vec<IpTrigger>,
    rules: Vec<Rule>,
    skipped: Skipped,
    lines: usize,
    /// Indicators last seen before this Unix time are expired.
    cutoff: Option<i64>,
    /// Indicator texts seen so far, each kept once.
    texts: HashSet<Text>,
    tag_sets: HashMap<Box<str>, Arc<[Text]>>,
}

impl<'o> ListBuilder<'o> {
    /// A builder for a list of about `bytes` of text.
    pub fn new(options: &'o ListOptions, bytes: usize) -> Self {
        let now = options
            .now
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let cutoff = options
            .max_age
            .map(|age| now.saturating_sub(age.as_secs()) as i64);
        Self {
            options,
            block: TriggerBuilder::new(options.scope, bytes),
            allow: TriggerBuilder::new(options.scope, 0),
            response_ips: Vec::new(),
            client_ips: Vec::new(),
            rules: vec![Rule::default()],
            skipped: Skipped::default(),
            lines: 0,
            cutoff,
            texts: HashSet::new(),
            tag_sets: HashMap::new(),
        }
    }

    /// `text` as an indicator's text, shared with every other indicator that has it. For
    /// values that indicators repeat; an IOC's id or value is better made with `Text::from`.
    pub fn shared(&mut self, text: &str) -> Text {
        if let Some(known) = self.texts.get(text) {
            return known.clone();
        }
        let text = Text::from(text);
        self.texts.insert(text.clone());
        text
    }

    /// A set of tags, shared with every other indicator that has the same ones.
    pub fn shared_tags<'t>(&mut self, tags: impl Iterator<Item = &'t str>) -> Arc<[Text]> {
        let tags: Vec<&str> = tags.collect();
        let key = tags.join(",");
        if let Some(known) = self.tag_sets.get(key.as_str()) {
            return known.clone();
        }
        let set: Arc<[Text]> = tags.iter().map(|tag| self.shared(tag)).collect();
        self.tag_sets.insert(key.into(), set.clone());
        set
    }

    pub fn options(&self) -> &ListOptions {
        self.options
    }

    /// Records how many lines the text has.
    pub fn set_lines(&mut self, lines: usize) {
        self.lines = lines;
    }

    /// Adds a name the list blocks, with the list's reach and rule.
    pub fn block(&mut self, raw: &str, line: usize) {
        let attr = Attr {
            rule: LIST_RULE,
            scope: self.options.scope,
        };
        self.block_with(raw, line, attr);
    }

    /// Adds a name already in normal form (see [`super::domain::plain_name`]), with the
    /// list's reach and rule.
    pub fn block_normalized(&mut self, name: &str) {
        let attr = Attr {
            rule: LIST_RULE,
            scope: self.options.scope,
        };
        self.block.push(name, attr);
    }

    /// Adds a name the list blocks, with its own reach and rule.
    pub fn block_with(&mut self, raw: &str, line: usize, attr: Attr) {
        match normalize(raw) {
            Ok(name) => self.block.push(&name, attr),
            Err(reason) => self.skip(line, reason),
        }
    }

    /// Adds an exception: a name the list itself lets through.
    pub fn allow(&mut self, raw: &str, line: usize, scope: Scope) {
        let attr = Attr {
            rule: LIST_RULE,
            scope,
        };
        match normalize(raw) {
            Ok(name) => self.allow.push(&name, attr),
            Err(reason) => self.skip(line, reason),
        }
    }

    /// Adds a rule and returns its number for entries to point at.
    pub fn rule(&mut self, rule: Rule) -> u32 {
        self.rules.push(rule);
        (self.rules.len() - 1) as u32
    }

    /// Adds the rule of an indicator, unless `min_confidence` or `max_age` leaves it out
    /// (counted); the indicator's missing confidence and first sighting are the list's.
    pub fn indicator(&mut self, indicator: Indicator, action: Option<EntryAction>) -> Option<u32> {
        let confidence = indicator.confidence.or(self.options.confidence);
        if let (Some(minimum), Some(confidence)) = (self.options.min_confidence, confidence)
            && confidence < minimum
        {
            self.skipped.low_confidence += 1;
            return None;
        }
        if let Some(cutoff) = self.cutoff {
            let seen = indicator
                .last_seen
                .as_deref()
                .or(indicator.first_seen.as_deref())
                .or(self.options.first_seen.as_deref())
                .and_then(epoch_seconds);
            if seen.is_some_and(|seen| seen < cutoff) {
                self.skipped.expired += 1;
                return None;
            }
        }
        Some(self.rule(Rule {
            action,
            indicator: Some(Arc::new(indicator)),
        }))
    }

    /// Adds a response-IP trigger.
    pub fn response_ip(&mut self, network: IpNet, rule: u32) {
        let network = network.trunc();
        self.response_ips.push(IpTrigger { network, rule });
    }

    /// Adds a client-IP trigger.
    pub fn client_ip(&mut self, network: IpNet, rule: u32) {
        let network = network.trunc();
        self.client_ips.push(IpTrigger { network, rule });
    }

    /// Skips an invalid entry and says why.
    pub fn skip(&mut self, line: usize, reason: String) {
        self.skipped.invalid += 1;
        if self.skipped.lines.len() < Skipped::KEPT {
            self.skipped.lines.push(SkippedLine { line, reason });
        }
    }

    /// Counts an entry of a kind sinkhole does not enforce.
    pub fn unsupported(&mut self, kind: &'static str) {
        match self
            .skipped
            .unsupported
            .iter_mut()
            .find(|(k, _)| *k == kind)
        {
            Some((_, count)) => *count += 1,
            None => self.skipped.unsupported.push((kind, 1)),
        }
    }

    pub fn finish(self, format: Format) -> ParsedList {
        ParsedList {
            format,
            block: self.block.finish(),
            allow: self.allow.finish(),
            response_ips: self.response_ips,
            client_ips: self.client_ips,
            rules: self.rules.into(),
            skipped: self.skipped,
            lines: self.lines,
        }
    }
}

/// Names with their attributes, kept only once some name differs from the default.
struct TriggerBuilder {
    names: Names,
    attrs: Option<Vec<Attr>>,
    scope: Scope,
}

impl TriggerBuilder {
    fn new(scope: Scope, bytes: usize) -> Self {
        Self {
            names: Names::with_capacity(bytes),
            attrs: None,
            scope,
        }
    }

    fn push(&mut self, name: &str, attr: Attr) {
        let plain = attr.rule == LIST_RULE && attr.scope == self.scope;
        if self.attrs.is_none() && !plain {
            let default = Attr {
                rule: LIST_RULE,
                scope: self.scope,
            };
            self.attrs = Some(vec![default; self.names.len()]);
        }
        if !self.names.push(name) {
            return;
        }
        if let Some(attrs) = &mut self.attrs {
            attrs.push(attr);
        }
    }

    fn finish(mut self) -> NameTriggers {
        self.names.shrink_to_fit();
        NameTriggers {
            names: Arc::new(self.names),
            attrs: self.attrs.map(Into::into),
            scope: self.scope,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn options() -> ListOptions {
        ListOptions {
            min_confidence: Some(75),
            max_age: Some(Duration::from_secs(30 * 86_400)),
            now: UNIX_EPOCH + Duration::from_secs(1_780_704_000), // 2026-06-06
            ..ListOptions::default()
        }
    }

    fn indicator(confidence: Option<u8>, last_seen: Option<&str>) -> Indicator {
        Indicator {
            confidence,
            last_seen: last_seen.map(Text::from),
            first_seen: Some("2026-01-01T00:00:00Z".into()),
            ..Indicator::default()
        }
    }

    #[test]
    fn filters_indicators_by_confidence_and_age() {
        let options = options();
        let mut list = ListBuilder::new(&options, 0);
        assert!(list.indicator(indicator(Some(50), None), None).is_none());
        let fresh = Some("2026-06-01T00:00:00Z");
        assert_eq!(list.indicator(indicator(Some(80), fresh), None), Some(1));
        assert!(list.indicator(indicator(Some(80), None), None).is_none());
        assert_eq!(list.indicator(indicator(None, fresh), None), Some(2));
        let parsed = list.finish(Format::ThreatfoxJson);
        assert_eq!(parsed.skipped.low_confidence, 1);
        assert_eq!(parsed.skipped.expired, 1);
        assert_eq!(parsed.rules.len(), 3);
    }

    #[test]
    fn list_confidence_is_the_fallback() {
        let options = ListOptions {
            confidence: Some(40),
            ..options()
        };
        let mut list = ListBuilder::new(&options, 0);
        let fresh = Some("2026-06-01T00:00:00Z");
        assert!(list.indicator(indicator(None, fresh), None).is_none());
    }

    #[test]
    fn attributes_are_kept_only_when_entries_differ() {
        let options = ListOptions {
            now: SystemTime::now(),
            ..ListOptions::default()
        };
        let mut plain = ListBuilder::new(&options, 64);
        plain.block("a.test", 1);
        plain.block("b.test", 2);
        assert!(plain.finish(Format::Domains).block.attrs.is_none());

        let mut list = ListBuilder::new(&options, 64);
        list.block("a.test", 1);
        list.block("B.test.", 2);

        let exact = Attr {
            rule: 0,
            scope: Scope::NameOnly,
        };
        list.block_with("c.test", 3, exact);
        list.block("bad name", 4);
        let parsed = list.finish(Format::Domains);
        let entries: Vec<_> = parsed.block.iter().collect();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[1].0, "b.test");
        assert_eq!(entries[0].1.scope, Scope::NameAndSubdomains);
        assert_eq!(entries[2].1, exact);
        assert_eq!(parsed.skipped.invalid, 1);
        assert_eq!(parsed.skipped.lines[0].line, 4);
    }
}
