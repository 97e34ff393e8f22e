//! The computed parts of the nic/ profile: which CPUs take the NIC's interrupts (and so which
//! ones shards leave alone), the CPU masks for RPS and XPS, and ethtool's settings, read by running
//! `ethtool` and parsing its report (under a fake root, `<root>/usr/sbin/ethtool`).

use std::path::{Path, PathBuf};

/// Where `apply` of a nic profile records the interrupt CPUs, under the root; `serve` reads it.
pub const NIC_CPUS_FILE: &str = "var/lib/sluice/nic-cpus";

/// The CPUs that take the NIC's interrupts: the lowest max(1, n/16) of `cpus` on hosts with four
/// or more, all of them on smaller ones (where giving one up would cost a large share of shards).
pub fn nic_cpus(cpus: &[u32]) -> Vec<u32> {
    if cpus.len() < 4 {
        return cpus.to_vec();
    }
    cpus[..(cpus.len() / 16).max(1)].to_vec()
}

/// The CPUs shards run on: all but the interrupt CPUs, or all when those are all.
pub fn shard_cpus(cpus: &[u32]) -> Vec<u32> {
    let nic = nic_cpus(cpus);
    let rest: Vec<u32> = cpus.iter().copied().filter(|c| !nic.contains(c)).collect();
    if rest.is_empty() {
        cpus.to_vec()
    } else {
        rest
    }
}

/// A CPU list as the kernel writes one: `0-3,8`.
pub fn list(cpus: &[u32]) -> String {
    let mut sorted = cpus.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1] == sorted[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            sorted[i].to_string()
        } else {
            format!("{}-{}", sorted[i], sorted[j])
        });
        i = j + 1;
    }
    parts.join(",")
}

pub fn parse_list(text: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => out.extend(a.trim().parse::<u32>().ok()?..=b.trim().parse().ok()?),
            None => out.push(part.trim().parse().ok()?),
        }
    }
    Some(out)
}

/// A CPU mask as sysfs writes one: 32-bit hex groups, highest first, comma-separated.
pub fn mask(cpus: &[u32]) -> String {
    let groups = cpus.iter().max().map_or(1, |m| *m as usize / 32 + 1);
    let mut words = vec![0u32; groups];
    for &c in cpus {
        words[c as usize / 32] |= 1 << (c % 32);
    }
    words
        .iter()
        .rev()
        .map(|w| format!("{w:08x}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The CPUs of a mask; `None` when it is not one.
pub fn parse_mask(text: &str) -> Option<Vec<u32>> {
    let mut cpus = Vec::new();
    for (i, group) in text.trim().split(',').rev().enumerate() {
        let word = u32::from_str_radix(group.trim(), 16).ok()?;
        cpus.extend(
            (0..32)
                .filter(|b| word & (1 << b) != 0)
                .map(|b| i as u32 * 32 + b),
        );
    }
    Some(cpus)
}

/// Whether two masks name the same CPUs, however they are padded.
pub fn same_mask(a: &str, b: &str) -> bool {
    matches!((parse_mask(a), parse_mask(b)), (Some(x), Some(y)) if x == y)
}

/// The value XPS gives transmit queue `index` of `queues`: the CPUs `c` with `c % queues == index`
/// (every CPU when that leaves none).
pub fn xps_cpus(cpus: &[u32], index: usize, queues: usize) -> Vec<u32> {
    let mine: Vec<u32> = cpus
        .iter()
        .enumerate()
        .filter(|(i, _)| i % queues.max(1) == index)
        .map(|(_, c)| *c)
        .collect();
    if mine.is_empty() {
        cpus.to_vec()
    } else {
        mine
    }
}

/// The `ethtool` to run: the system's, or the fake one of a test root.
pub fn ethtool_bin(root: &Path) -> PathBuf {
    if root == Path::new("/") {
        PathBuf::from("ethtool")
    } else {
        root.join("usr/sbin/ethtool")
    }
}

pub fn run_ethtool(root: &Path, args: &[&str]) -> Result<String, String> {
    let bin = ethtool_bin(root);
    let output = std::process::Command::new(&bin)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    if !output.status.success() {
        let err = String::from_utf8_lossy(&output.stderr);
        return Err(format!(
            "ethtool {} failed: {}",
            args.join(" "),
            err.lines().next().unwrap_or("")
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The first and the last value of `key:` in an ethtool report (the first word after the colon).
/// `ethtool -g` lists the maximums first and the current settings last.
pub fn ethtool_values(report: &str, key: &str) -> (Option<String>, Option<String>) {
    let values: Vec<String> = report
        .lines()
        .filter_map(|line| {
            let (k, v) = line.split_once(':')?;
            (k.trim() == key).then(|| v.split_whitespace().next().unwrap_or("").to_string())
        })
        .collect();
    (values.first().cloned(), values.last().cloned())
}

/// The entries of a directory whose names start with `prefix`, sorted naturally (`rx-2` before
/// `rx-10`).
pub fn entries(dir: &Path, prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(String::from))
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort_by_key(|n| {
        let digits: String = n.chars().filter(char::is_ascii_digit).collect();
        (digits.parse::<u64>().unwrap_or(0), n.clone())
    });
    names
}

/// The CPUs `serve` should leave to NIC interrupts, as `tune apply` recorded them under `root`.
pub fn recorded_nic_cpus(root: &Path) -> Option<Vec<u32>> {
    let text = std::fs::read_to_string(root.join(NIC_CPUS_FILE)).ok()?;
    parse_list(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_and_masks_as_the_kernel_writes_them() {
        assert_eq!(list(&[0, 1, 2, 3, 8, 10, 11]), "0-3,8,10-11");
        assert_eq!(
            parse_list("0-3,8,10-11").unwrap(),
            vec![0, 1, 2, 3, 8, 10, 11]
        );
        assert_eq!(mask(&[0, 1]), "00000003");
        assert_eq!(mask(&[0, 33]), "00000002,00000001");
        assert_eq!(parse_mask("00000002,00000001").unwrap(), vec![0, 33]);
        assert!(same_mask("3", "00000000,00000003"));
        assert!(!same_mask("3", "1"));
    }

    #[test]
    fn interrupt_cores_grow_with_the_host() {
        let cpus = |n: u32| (0..n).collect::<Vec<u32>>();
        assert_eq!(
            nic_cpus(&cpus(2)),
            vec![0, 1],
            "small hosts share every core"
        );
        assert_eq!(shard_cpus(&cpus(2)), vec![0, 1]);
        assert_eq!(nic_cpus(&cpus(16)), vec![0]);
        assert_eq!(shard_cpus(&cpus(16)), (1..16).collect::<Vec<_>>());
        assert_eq!(nic_cpus(&cpus(64)), vec![0, 1, 2, 3]);
        assert_eq!(xps_cpus(&cpus(8), 1, 4), vec![1, 5]);
        assert_eq!(xps_cpus(&cpus(2), 3, 4), vec![0, 1]);
    }

    #[test]
    fn reads_ethtool_reports() {
        let rings = "Ring parameters for eth0:\nPre-set maximums:\nRX:\t\t4096\nTX:\t\t4096\n\
                     Current hardware settings:\nRX:\t\t256\nTX:\t\t512\n";
        assert_eq!(
            ethtool_values(rings, "RX"),
            (Some("4096".into()), Some("256".into()))
        );
        let coalesce = "Coalesce parameters for eth0:\nAdaptive RX: off  TX: off\n";
        assert_eq!(
            ethtool_values(coalesce, "Adaptive RX").1.as_deref(),
            Some("off")
        );
        let features = "generic-receive-offload: on\ntcp-segmentation-offload: off [fixed]\n";
        assert_eq!(
            ethtool_values(features, "tcp-segmentation-offload")
                .1
                .as_deref(),
            Some("off")
        );
    }
}
