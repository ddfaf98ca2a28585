//! IP triggers: which listed network holds an address, most specific prefix first.
//!
//! One hash map per prefix length in use, keyed by the masked address. A lookup masks the
//! address for each length, longest first, so it costs one probe per distinct prefix length
//! (a handful in real feeds), whatever the number of networks.

use std::collections::HashMap;
use std::net::IpAddr;

use foldhash::fast::FixedState;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::canonical;
use crate::lists::IpTrigger;

/// Which list and rule a network belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkHit {
    pub network: IpNet,
    pub list: u32,
    pub rule: u32,
}

type Table<K> = Vec<(u8, HashMap<K, (u32, u32), FixedState>)>;

/// An immutable set of networks; see the module documentation.
#[derive(Debug, Default)]
pub struct NetworkIndex {
    /// By prefix length, longest first.
    v4: Table<u32>,
    v6: Table<u128>,
    len: usize,
}

impl NetworkIndex {
    /// Builds the index from lists of triggers; a hit names the list by its position. When
    /// two lists hold the same network, the first wins.
    pub fn build<'a>(lists: impl IntoIterator<Item = &'a [IpTrigger]>) -> Self {
        let mut index = Self::default();
        for (list, triggers) in lists.into_iter().enumerate() {
            for trigger in triggers {
                index.insert(trigger, list as u32);
            }
        }
        index
            .v4
            .sort_by_key(|(prefix, _)| std::cmp::Reverse(*prefix));
        index
            .v6
            .sort_by_key(|(prefix, _)| std::cmp::Reverse(*prefix));
        index
    }

    fn insert(&mut self, trigger: &IpTrigger, list: u32) {
        let target = (list, trigger.rule);
        let added = match trigger.network {
            IpNet::V4(net) => add(&mut self.v4, net.prefix_len(), net.network().into(), target),
            IpNet::V6(net) => add(&mut self.v6, net.prefix_len(), net.network().into(), target),
        };
        self.len += usize::from(added);
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Networks held, after de-duplication.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The most specific network holding `address`.
    pub fn lookup(&self, address: IpAddr) -> Option<NetworkHit> {
        if self.is_empty() {
            return None;
        }
        match canonical(address) {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4);
                self.v4.iter().find_map(|(prefix, map)| {
                    let masked = bits & mask32(*prefix);
                    let &target = map.get(&masked)?;
                    let network = Ipv4Net::new(masked.into(), *prefix).ok()?;
                    Some(hit(network.into(), target))
                })
            }
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                self.v6.iter().find_map(|(prefix, map)| {
                    let masked = bits & mask128(*prefix);
                    let &target = map.get(&masked)?;
                    let network = Ipv6Net::new(masked.into(), *prefix).ok()?;
                    Some(hit(network.into(), target))
                })
            }
        }
    }
}

fn add<K: std::hash::Hash + Eq>(
    table: &mut Table<K>,
    prefix: u8,
    key: K,
    target: (u32, u32),
) -> bool {
    let at = match table.iter().position(|(length, _)| *length == prefix) {
        Some(at) => at,
        None => {
            table.push((prefix, HashMap::default()));
            table.len() - 1
        }
    };
    let map = &mut table[at].1;
    if map.contains_key(&key) {
        return false;
    }
    map.insert(key, target);
    true
}

fn hit(network: IpNet, (list, rule): (u32, u32)) -> NetworkHit {
    NetworkHit {
        network,
        list,
        rule,
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trigger(network: &str, rule: u32) -> IpTrigger {
        IpTrigger {
            network: network.parse().unwrap(),
            rule,
        }
    }

    #[test]
    fn most_specific_network_then_first_list_wins() {
        let first = [trigger("192.0.2.0/24", 1), trigger("2001:db8::/32", 2)];
        let second = [trigger("192.0.2.53/32", 3), trigger("192.0.2.0/24", 4)];
        let index = NetworkIndex::build([&first[..], &second[..]]);
        assert_eq!(index.len(), 3);

        let lookup = |text: &str| {
            index
                .lookup(text.parse().unwrap())
                .map(|h| (h.list, h.rule))
        };
        assert_eq!(lookup("192.0.2.53"), Some((1, 3)));
        assert_eq!(lookup("192.0.2.54"), Some((0, 1)));
        assert_eq!(lookup("::ffff:192.0.2.7"), Some((0, 1)));
        assert_eq!(lookup("2001:db8:1::5"), Some((0, 2)));
        assert_eq!(lookup("198.51.100.1"), None);
        let hit = index.lookup("192.0.2.53".parse().unwrap()).unwrap();
        assert_eq!(hit.network.to_string(), "192.0.2.53/32");
    }

    #[test]
    fn zero_length_prefix_holds_everything() {
        let all = [trigger("0.0.0.0/0", 9)];
        let index = NetworkIndex::build([&all[..]]);
        assert_eq!(
            index.lookup("203.0.113.9".parse().unwrap()).unwrap().rule,
            9
        );
        assert!(
            NetworkIndex::default()
                .lookup("203.0.113.9".parse().unwrap())
                .is_none()
        );
    }
}
