//! `sluice iotune --dir DIR`: measures the disk under DIR through the broker's own io_uring file
//! layer, for a bounded time: sequential write bandwidth (1 MiB writes, 8 in flight, then one
//! fdatasync), fdatasync latency (a 4 KiB append and fdatasync, repeated), sequential read
//! bandwidth and random 4 KiB read IOPS (32 in flight) with the page cache dropped for the file
//! first. It picks the disk profile that matches and writes an `io-properties.toml` that `serve`
//! reads ([`IoProperties::load`]) to size its background I/O share.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::future::join_all;

use crate::io;

/// The file `iotune` writes in the data directory, and `serve` looks for there.
pub const FILE_NAME: &str = "io-properties.toml";

const BLOCK: usize = 1 << 20;
const SMALL: usize = 4096;
const WRITERS: usize = 8;
const READERS: usize = 32;
/// The most the write phase writes, whatever its time allows.
const FILE_BYTES_MAX: u64 = 4 << 30;

#[derive(Clone, Debug, PartialEq)]
pub struct IoProperties {
    pub disk_profile: String,
    pub write_bytes_per_sec: f64,
    pub read_bytes_per_sec: f64,
    pub fdatasync_p50_us: f64,
    pub fdatasync_p99_us: f64,
    pub random_read_iops: f64,
}

impl IoProperties {
    /// The disk profile these figures match: `nvme` for a device that syncs in under 200 us and
    /// reads 100k random blocks a second, `ssd` from 5k IOPS, `hdd` below.
    pub fn pick_profile(fdatasync_p50_us: f64, random_read_iops: f64) -> &'static str {
        if random_read_iops >= 100_000.0 && fdatasync_p50_us < 200.0 {
            "nvme"
        } else if random_read_iops >= 5_000.0 {
            "ssd"
        } else {
            "hdd"
        }
    }

    /// The shares of the background task queue (compaction, retention, index rebuilds) against
    /// the hot path's 1000: less on a disk that is slow to seek, so that maintenance does not
    /// starve appends and fetches of it.
    pub fn background_shares(&self) -> usize {
        match self.disk_profile.as_str() {
            "nvme" => 100,
            "ssd" => 50,
            _ => 20,
        }
    }

    /// `log.write.group.max.bytes` for this disk: what it writes in one fdatasync's time (the
    /// bandwidth-delay product), so that a full group's write costs about what its sync does;
    /// between 256 KiB and 16 MiB, in whole 4 KiB pages.
    pub fn write_group_bytes(&self) -> usize {
        let product = self.write_bytes_per_sec * self.fdatasync_p50_us / 1e6;
        let bytes = product.clamp(256.0 * 1024.0, 16.0 * 1024.0 * 1024.0) as usize;
        bytes / 4096 * 4096
    }

    pub fn to_toml(&self, dir: &Path) -> String {
        format!(
            "# Written by `sluice iotune --dir {}`; `sluice serve` reads it from log.dirs.\n\
             disk_profile = \"{}\"\n\
             write_bytes_per_sec = {:.0}\n\
             read_bytes_per_sec = {:.0}\n\
             fdatasync_p50_us = {:.1}\n\
             fdatasync_p99_us = {:.1}\n\
             random_read_iops = {:.0}\n",
            dir.display(),
            self.disk_profile,
            self.write_bytes_per_sec,
            self.read_bytes_per_sec,
            self.fdatasync_p50_us,
            self.fdatasync_p99_us,
            self.random_read_iops
        )
    }

    pub fn parse(text: &str) -> Result<IoProperties, String> {
        let table: toml::Table = text.parse().map_err(|e| format!("{e}"))?;
        let number = |key: &str| {
            table
                .get(key)
                .and_then(|v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64)))
                .ok_or_else(|| format!("no number `{key}`"))
        };
        let disk_profile = table
            .get("disk_profile")
            .and_then(|v| v.as_str())
            .filter(|p| ["nvme", "ssd", "hdd"].contains(p))
            .ok_or("no disk_profile (nvme, ssd or hdd)")?
            .to_string();
        Ok(IoProperties {
            disk_profile,
            write_bytes_per_sec: number("write_bytes_per_sec")?,
            read_bytes_per_sec: number("read_bytes_per_sec")?,
            fdatasync_p50_us: number("fdatasync_p50_us")?,
            fdatasync_p99_us: number("fdatasync_p99_us")?,
            random_read_iops: number("random_read_iops")?,
        })
    }

    /// The properties in `dir/io-properties.toml`; `None` when there is none, an error when it
    /// does not parse.
    pub fn load(dir: &Path) -> Result<Option<IoProperties>, String> {
        let path = dir.join(FILE_NAME);
        match std::fs::read_to_string(&path) {
            Ok(text) => IoProperties::parse(&text)
                .map(Some)
                .map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }
}

/// Measures the disk under `dir` for about `duration` (a quarter per phase) and returns what it
/// found; the scratch file is removed.
pub fn measure(dir: &Path, duration: Duration) -> std::io::Result<IoProperties> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(".sluice-iotune");
    let result = io::block_on(run(path.clone(), duration / 4));
    let _ = std::fs::remove_file(&path);
    result
}

async fn run(path: PathBuf, phase: Duration) -> std::io::Result<IoProperties> {
    let faults = io::Faults::default();
    let file = io::File::open(&path, true, &faults).await?;
    file.truncate(0).await?;

    // Sequential writes, WRITERS blocks in flight, made durable at the end.
    let started = Instant::now();
    let mut written: u64 = 0;
    while started.elapsed() < phase && written < FILE_BYTES_MAX {
        let writes =
            (0..WRITERS).map(|i| file.write_at(vec![0x5a; BLOCK], written + (i * BLOCK) as u64));
        for result in join_all(writes).await {
            result?;
        }
        written += (WRITERS * BLOCK) as u64;
    }
    file.fdatasync().await?;
    let write_bytes_per_sec = written as f64 / started.elapsed().as_secs_f64();

    // fdatasync latency of small appends.
    let mut latencies = Vec::new();
    let started = Instant::now();
    let mut end = written;
    while started.elapsed() < phase && latencies.len() < 100_000 {
        let at = Instant::now();
        file.write_at(vec![0xa5; SMALL], end).await?;
        file.fdatasync().await?;
        latencies.push(at.elapsed().as_secs_f64() * 1e6);
        end += SMALL as u64;
    }
    latencies.sort_by(f64::total_cmp);
    let percentile = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    let (fdatasync_p50_us, fdatasync_p99_us) = (percentile(0.5), percentile(0.99));

    // Sequential reads, from the disk rather than the page cache.
    drop_cache(&file);
    let started = Instant::now();
    let mut read: u64 = 0;
    while started.elapsed() < phase && read < written {
        let reads = (0..WRITERS)
            .map(|i| read + (i * BLOCK) as u64)
            .filter(|pos| *pos < written)
            .map(|pos| file.read_at(pos, BLOCK));
        for result in join_all(reads).await {
            read += result?.len() as u64;
        }
    }
    let read_bytes_per_sec = read as f64 / started.elapsed().as_secs_f64();

    // Random 4 KiB reads, READERS in flight.
    drop_cache(&file);
    let blocks = (written / SMALL as u64).max(1);
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next_block = move || {
        // xorshift64: any spread of offsets will do.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % blocks
    };
    let started = Instant::now();
    let mut reads_done: u64 = 0;
    while started.elapsed() < phase {
        let reads = (0..READERS).map(|_| file.read_at(next_block() * SMALL as u64, SMALL));
        for result in join_all(reads).await {
            result?;
            reads_done += 1;
        }
    }
    let random_read_iops = reads_done as f64 / started.elapsed().as_secs_f64();

    Ok(IoProperties {
        disk_profile: IoProperties::pick_profile(fdatasync_p50_us, random_read_iops).to_string(),
        write_bytes_per_sec,
        read_bytes_per_sec,
        fdatasync_p50_us,
        fdatasync_p99_us,
        random_read_iops,
    })
}

/// Asks the kernel to drop the file's clean cached pages, so that reads measure the disk.
fn drop_cache(file: &io::File) {
    // SAFETY: posix_fadvise only reads its integer arguments; the descriptor is open for the
    // lifetime of `file`.
    unsafe {
        libc::posix_fadvise(file.raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_round_trip_and_pick_a_profile() {
        let p = IoProperties {
            disk_profile: IoProperties::pick_profile(50.0, 400_000.0).to_string(),
            write_bytes_per_sec: 2e9,
            read_bytes_per_sec: 3e9,
            fdatasync_p50_us: 50.0,
            fdatasync_p99_us: 120.0,
            random_read_iops: 400_000.0,
        };
        assert_eq!(p.disk_profile, "nvme");
        assert_eq!(p.background_shares(), 100);
        // 2 GB/s x 50 us = 100 kB: raised to the 256 KiB floor.
        assert_eq!(p.write_group_bytes(), 256 << 10);
        let hdd = IoProperties {
            write_bytes_per_sec: 150e6,
            fdatasync_p50_us: 8_000.0,
            ..p.clone()
        };
        assert_eq!(hdd.write_group_bytes(), 1_200_000 / 4096 * 4096);
        let slow_sync = IoProperties {
            write_bytes_per_sec: 4e9,
            fdatasync_p50_us: 10_000.0,
            ..p.clone()
        };
        assert_eq!(slow_sync.write_group_bytes(), 16 << 20);
        assert_eq!(IoProperties::parse(&p.to_toml(Path::new("/d"))).unwrap(), p);
        assert_eq!(IoProperties::pick_profile(900.0, 40_000.0), "ssd");
        assert_eq!(IoProperties::pick_profile(8_000.0, 150.0), "hdd");
        assert!(IoProperties::parse("disk_profile = \"tape\"").is_err());
    }
}
