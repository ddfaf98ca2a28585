//! `sinkhole kql`: the hunting query for the indicators the config loads, so a SOC can look
//! for the same indicators in the history from before sinkhole blocked them.
//!
//! The query is the team's Remus hunt, generalised: every name of every blocklist (enforcing
//! or log-only) in `malicious_domains`, and every response-IP trigger's network in
//! `malicious_networks`, over the table the SOC names.

use std::fmt::Write as _;
use std::path::Path;

use super::{Failure, load};
use crate::policy::Policy;

/// Names beyond which the query text gets too long for Sentinel to run as it is.
const LARGE: usize = 10_000;

pub fn run(path: &Path, table: &str) -> Result<(), Failure> {
    let (config, lists) = load(path)?;
    let policy = Policy::build(&config, &lists, 1);
    let mut domains: Vec<&str> = policy
        .blocklists
        .iter()
        .flat_map(|list| list.names.names.iter())
        .collect();
    domains.sort_unstable();
    domains.dedup();
    let mut networks: Vec<String> = lists
        .iter()
        .take(config.blocklists.len())
        .flat_map(|list| list.parsed.response_ips.iter())
        .map(|trigger| trigger.network.to_string())
        .collect();
    networks.sort_unstable();
    networks.dedup();

    if domains.len() > LARGE {
        esay!(
            "sinkhole: {} names: the query may be too long for Sentinel; load them as a watchlist instead",
            domains.len()
        );
    }
    say!("{}", query(table, &domains, &networks));
    Ok(())
}

/// The hunt over `table`: `DnsEvents`, `_Im_Dns` or `SinkholeDnsEvents`.
fn query(table: &str, domains: &[&str], networks: &[String]) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "// Indicators loaded by sinkhole: {} names, {} networks",
        domains.len(),
        networks.len()
    );
    let _ = writeln!(
        text,
        "let malicious_domains = dynamic([{}]);",
        quoted(domains.iter().copied())
    );
    let _ = writeln!(
        text,
        "let malicious_networks = dynamic([{}]);",
        quoted(networks.iter().map(String::as_str))
    );
    match table {
        "_Im_Dns" => {
            let _ = writeln!(text, "_Im_Dns(domain_has_any = malicious_domains)");
            let _ = writeln!(
                text,
                "| project TimeGenerated, Dvc, SrcIpAddr, DnsQuery, DnsResponseName, DnsQueryTypeName, DvcAction"
            );
            let _ = writeln!(text, "// Answers holding a listed address:");
            let _ = writeln!(
                text,
                "// _Im_Dns | where ipv4_is_in_any_range(DnsResponseName, malicious_networks)"
            );
        }
        _ => {
            let _ = writeln!(text, "{table}");
            let _ = writeln!(text, "| where Name has_any (malicious_domains)");
            let _ = writeln!(
                text,
                "| project TimeGenerated, Computer, Name, IPAddresses, QueryType"
            );
            let _ = writeln!(
                text,
                "// Answers holding a listed IPv4 address (IPAddresses is a comma-separated list):"
            );
            let _ = writeln!(
                text,
                "// {table} | mv-expand ip = split(IPAddresses, \",\") | where ipv4_is_in_any_range(tostring(ip), malicious_networks)"
            );
        }
    }
    text
}

/// Items as KQL string literals, comma-separated.
fn quoted<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for (index, item) in items.enumerate() {
        if index > 0 {
            out.push_str(", ");
        }
        out.push('"');
        out.extend(item.chars().filter(|c| *c != '"' && *c != '\\'));
        out.push('"');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_remus_hunt_comes_out_as_the_soc_writes_it() {
        let domains = ["gauravitechnologies.com", "mathlah.com"];
        let text = query("DnsEvents", &domains, &["192.0.2.10/32".to_owned()]);
        assert!(text.contains(
            r#"let malicious_domains = dynamic(["gauravitechnologies.com", "mathlah.com"]);"#
        ));
        assert!(text.contains("DnsEvents\n| where Name has_any (malicious_domains)"));
        assert!(text.contains("| project TimeGenerated, Computer, Name, IPAddresses, QueryType"));
        let asim = query("_Im_Dns", &domains, &[]);
        assert!(asim.contains("_Im_Dns(domain_has_any = malicious_domains)"));
        assert!(asim.contains(r#"let malicious_networks = dynamic([]);"#));
    }
}
