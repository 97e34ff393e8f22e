//! The broker's CPU time and memory, read from /proc by pid when it runs on this host.

use std::path::{Path, PathBuf};

/// One reading of a process.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Reading {
    /// User plus system CPU time of all its threads, in seconds.
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
    /// The kernel's peak resident set (VmHWM).
    pub rss_high_water_bytes: u64,
}

/// Reads `/proc/<pid>` (or the same files under `proc_root`, for tests).
pub struct ProcReader {
    dir: PathBuf,
    ticks_per_second: f64,
}

impl ProcReader {
    pub fn new(pid: i32) -> ProcReader {
        ProcReader::under(Path::new("/proc"), pid)
    }

    pub fn under(proc_root: &Path, pid: i32) -> ProcReader {
        // SAFETY: sysconf only reads a system constant.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        ProcReader {
            dir: proc_root.join(pid.to_string()),
            ticks_per_second: if ticks > 0 { ticks as f64 } else { 100.0 },
        }
    }

    pub fn read(&self) -> Result<Reading, String> {
        let stat = std::fs::read_to_string(self.dir.join("stat"))
            .map_err(|e| format!("{}: {e}", self.dir.join("stat").display()))?;
        // Fields after the command name (which may hold spaces) in parentheses: utime and stime
        // are the 14th and 15th fields of the line, the 12th and 13th after the `)`.
        let after = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .ok_or("stat without a command name")?;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let tick = |i: usize| -> Result<f64, String> {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .map(|t| t as f64)
                .ok_or_else(|| format!("stat field {} missing", i + 3))
        };
        let cpu_seconds = (tick(11)? + tick(12)?) / self.ticks_per_second;
        let status = std::fs::read_to_string(self.dir.join("status")).unwrap_or_default();
        let kib = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse::<u64>().ok())
                .map_or(0, |k| k * 1024)
        };
        Ok(Reading {
            cpu_seconds,
            rss_bytes: kib("VmRSS:"),
            rss_high_water_bytes: kib("VmHWM:"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_time_and_memory() {
        let root = std::env::temp_dir().join(format!("sluice-bench-proc-{}", std::process::id()));
        let dir = root.join("42");
        std::fs::create_dir_all(&dir).unwrap();
        // A command name with spaces and a parenthesis, as comm may have.
        let mut stat = String::from("42 (sluice (shard 1)) S 1 42 42 0 -1 4194560 100 0 0 0 ");
        let ticks_per_second = ProcReader::new(1).ticks_per_second;
        stat += &format!(
            "{} {} 0 0 20 0 3 0 1 2 3",
            ticks_per_second * 5.0,
            ticks_per_second * 2.5
        );
        std::fs::write(dir.join("stat"), stat).unwrap();
        std::fs::write(
            dir.join("status"),
            "Name:\tsluice\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n",
        )
        .unwrap();
        let r = ProcReader::under(&root, 42).read().unwrap();
        assert_eq!(r.cpu_seconds, 7.5);
        assert_eq!(r.rss_bytes, 100 << 20);
        assert_eq!(r.rss_high_water_bytes, 200 << 20);
        // This process, for real: it has run and holds memory.
        let me = ProcReader::new(std::process::id() as i32).read().unwrap();
        assert!(me.rss_bytes > 0 && me.rss_high_water_bytes >= me.rss_bytes);
        assert!(ProcReader::under(&root, 7).read().is_err());
        std::fs::remove_dir_all(root).unwrap();
    }
}
