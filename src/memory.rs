//! This process's memory use, as Linux reports it, for load and reload figures.

/// Resident memory now and at its peak, in MiB; 0 where `/proc` is not available.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Memory {
    pub rss_mib: f64,
    pub peak_mib: f64,
}

impl Memory {
    pub fn read() -> Self {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |key: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(key))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<f64>()
                        .ok()
                })
                .map_or(0.0, |kib| kib / 1024.0)
        };
        Self {
            rss_mib: field("VmRSS:"),
            peak_mib: field("VmHWM:"),
        }
    }
}
