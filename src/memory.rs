//! This process's memory use, as Linux reports it, for load and reload figures.

/// Resident memory now and at its peak, in MiB; 0 where `/proc` is not available.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Memory {
    pub rss_mib: f64,
    pub peak_mib: f64,
}

impl Memory {
    pub fn read() -> Self {
        Self::of_file("/proc/self/status")
    }

    /// Another process's, for a harness that runs sinkhole.
    pub fn of_process(pid: u32) -> Self {
        Self::of_file(&format!("/proc/{pid}/status"))
    }

    fn of_file(path: &str) -> Self {
        let status = std::fs::read_to_string(path).unwrap_or_default();
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

/// Makes glibc's allocator give large freed buffers back to the system at once.
///
/// A reload frees the previous policy's buffers (tens of MiB for a million names). glibc
/// serves a large allocation with its own mapping, but after such a mapping is freed it raises
/// its threshold, and later buffers of that size come from the heap, which keeps freed memory
/// resident: every reload would then leave the process larger. Fixing the threshold keeps
/// large buffers mapped, so freeing the old policy returns its memory. Other allocators and
/// platforms are left as they are.
pub fn release_large_buffers_on_free() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        /// `M_MMAP_THRESHOLD` from glibc's `malloc.h`.
        const M_MMAP_THRESHOLD: i32 = -3;
        /// Buffers of this size and above get a mapping of their own.
        const THRESHOLD: i32 = 1 << 20;
        unsafe extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        // SAFETY: mallopt only changes an allocator setting; it is called once at start-up,
        // before any other thread exists, as glibc asks.
        let changed = unsafe { mallopt(M_MMAP_THRESHOLD, THRESHOLD) };
        if changed != 1 {
            tracing::debug!("allocator setting not changed; reloads may keep freed memory");
        }
    }
}
