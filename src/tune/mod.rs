//! `sluice tune`: host tuning profiles (data in `tuning/`, embedded in the binary) checked against
//! /proc and /sys, applied with a record of what they replaced, and reverted from that record.
//! Every path is read under a root (`/`, or a fake tree in tests).

pub mod iotune;
pub mod nic;

use std::path::{Path, PathBuf};

/// The profiles, as shipped in `tuning/`.
pub const PROFILES: &[(&str, &str)] = &[
    (
        "os/production",
        include_str!("../../tuning/os/production.toml"),
    ),
    (
        "os/development",
        include_str!("../../tuning/os/development.toml"),
    ),
    ("disk/nvme", include_str!("../../tuning/disk/nvme.toml")),
    ("disk/ssd", include_str!("../../tuning/disk/ssd.toml")),
    ("disk/hdd", include_str!("../../tuning/disk/hdd.toml")),
    (
        "cpu/performance",
        include_str!("../../tuning/cpu/performance.toml"),
    ),
    ("nic/split", include_str!("../../tuning/nic/split.toml")),
];

/// Where `apply` records what it replaced, under the root.
pub const REVERT_FILE: &str = "var/lib/sluice/tune.revert";
/// Marks a revert entry that is an ethtool command (`{value}` to fill in), not a file.
const ETHTOOL_PREFIX: &str = "ethtool ";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting {
    pub name: String,
    /// The file under /proc or /sys, with `{device}`, `{iface}`, `{cpu}` placeholders.
    pub path: Option<String>,
    pub value: String,
    /// A kernel boot parameter instead of a file: printed, never applied.
    pub boot: Option<String>,
    pub reason: String,
    /// `{cpu}` runs over every CPU.
    pub each_cpu: bool,
    /// The value is a CPU mask: compared as the CPUs it names, not as text.
    pub mask: bool,
    /// A NIC setting read and written with ethtool instead of a file.
    pub ethtool: Option<EthtoolSetting>,
}

/// `ethtool <read> <iface>` reports the setting as `key: value`; `ethtool <write>` (with `{iface}`
/// and `{value}` filled in) sets it. A wanted value of `max` is the first value the report gives
/// for the key (`ethtool -g` lists the maximums before the current settings).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EthtoolSetting {
    pub read: String,
    pub key: String,
    pub write: String,
}

#[derive(Clone, Debug)]
pub struct Profile {
    pub name: String,
    pub description: String,
    pub settings: Vec<Setting>,
}

pub fn profile(name: &str) -> Result<Profile, String> {
    let text = PROFILES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| *text)
        .ok_or_else(|| {
            let names: Vec<&str> = PROFILES.iter().map(|(n, _)| *n).collect();
            format!("no profile `{name}` (there are: {})", names.join(", "))
        })?;
    parse(name, text)
}

fn parse(name: &str, text: &str) -> Result<Profile, String> {
    let table: toml::Table = text.parse().map_err(|e| format!("profile {name}: {e}"))?;
    let text_of =
        |t: &toml::Table, key: &str| t.get(key).and_then(|v| v.as_str()).map(String::from);
    let mut settings = Vec::new();
    for entry in table
        .get("setting")
        .and_then(|s| s.as_array())
        .into_iter()
        .flatten()
    {
        let t = entry
            .as_table()
            .ok_or_else(|| format!("profile {name}: a setting is not a table"))?;
        let setting = Setting {
            name: text_of(t, "name")
                .ok_or_else(|| format!("profile {name}: a setting has no name"))?,
            path: text_of(t, "path"),
            value: text_of(t, "value").unwrap_or_default(),
            boot: text_of(t, "boot"),
            reason: text_of(t, "reason").unwrap_or_default(),
            each_cpu: t.get("each_cpu").and_then(|v| v.as_bool()).unwrap_or(false),
            mask: t.get("mask").and_then(|v| v.as_bool()).unwrap_or(false),
            ethtool: t
                .get("ethtool")
                .and_then(|v| v.as_table())
                .map(|e| EthtoolSetting {
                    read: text_of(e, "read").unwrap_or_default(),
                    key: text_of(e, "key").unwrap_or_default(),
                    write: text_of(e, "write").unwrap_or_default(),
                }),
        };
        let kinds = [
            setting.path.is_some(),
            setting.boot.is_some(),
            setting.ethtool.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() != 1 {
            return Err(format!(
                "profile {name}: setting {} needs exactly one of path, boot and ethtool",
                setting.name
            ));
        }
        settings.push(setting);
    }
    Ok(Profile {
        name: name.to_string(),
        description: text_of(&table, "description").unwrap_or_default(),
        settings,
    })
}

/// The machine a command runs against.
#[derive(Clone, Debug)]
pub struct Target {
    pub root: PathBuf,
    pub device: Option<String>,
    pub iface: Option<String>,
}

impl Target {
    fn under(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    Ok,
    Differs,
    /// The file is missing or unreadable (no such device, a kernel without the knob).
    Unavailable(String),
    /// A boot parameter not on the kernel command line: needs a reboot.
    NeedsReboot,
}

/// One concrete setting on this machine.
#[derive(Clone, Debug)]
pub struct Row {
    pub name: String,
    /// The real path (not under the root); `None` for boot parameters.
    pub path: Option<String>,
    pub current: Option<String>,
    /// The current value as it can be written back (raw text; of a choice list, the choice).
    pub restorable: Option<String>,
    pub wanted: String,
    pub reason: String,
    pub state: State,
    /// For an ethtool setting: its write command, `{value}` still to fill in.
    pub command: Option<String>,
}

/// Normalises a value as /proc and /sys show it: whitespace collapsed, and of a choice list
/// (`[none] mq-deadline`) the selected entry.
pub fn normalise(text: &str) -> String {
    if let (Some(open), Some(close)) = (text.find('['), text.find(']')) {
        if open < close {
            return text[open + 1..close].trim().to_string();
        }
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn cpu_ids(target: &Target) -> Vec<u32> {
    let mut cpus: Vec<u32> = std::fs::read_dir(target.under("/sys/devices/system/cpu"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("cpu")?.parse().ok())
        .collect();
    cpus.sort();
    cpus
}

fn cpus(target: &Target) -> Vec<String> {
    cpu_ids(target).into_iter().map(|c| c.to_string()).collect()
}

/// Expands `{irq}` (the interrupts of `--iface`), `{rxq}` and `{txq}` (its queues) in `path`,
/// with the value each expanded path wants (`{nic_cpus}`, `{shard_cpus_mask}`, `{xps_mask}` and
/// `{rps_flow_cnt}` computed from the CPUs and queues).
fn expand_nic(target: &Target, path: &str, value: &str) -> Vec<(String, String)> {
    if !path.contains('{') && !value.contains('{') {
        return vec![(path.to_string(), value.to_string())];
    }
    let cpus = cpu_ids(target);
    let iface = target.iface.clone().unwrap_or_default();
    let queues = target.under(&format!("/sys/class/net/{iface}/queues"));
    let rx = nic::entries(&queues, "rx-");
    let tx = nic::entries(&queues, "tx-");
    let fill = |v: &str, tx_index: Option<usize>| {
        v.replace("{nic_cpus}", &nic::list(&nic::nic_cpus(&cpus)))
            .replace("{shard_cpus_mask}", &nic::mask(&nic::shard_cpus(&cpus)))
            .replace("{rps_flow_cnt}", &(32768 / rx.len().max(1)).to_string())
            .replace(
                "{xps_mask}",
                &nic::mask(&nic::xps_cpus(&cpus, tx_index.unwrap_or(0), tx.len())),
            )
    };
    // No interrupts or queues found (a virtual NIC, no such interface): one row, left with its
    // placeholder, which `check` reports unavailable.
    let none = |list: &[String]| {
        list.is_empty()
            .then(|| vec![(path.to_string(), fill(value, None))])
    };
    if path.contains("{irq}") {
        let irqs = nic::entries(
            &target.under(&format!("/sys/class/net/{iface}/device/msi_irqs")),
            "",
        );
        if let Some(row) = none(&irqs) {
            return row;
        }
        return irqs
            .iter()
            .map(|irq| (path.replace("{irq}", irq), fill(value, None)))
            .collect();
    }
    if path.contains("{rxq}") {
        if let Some(row) = none(&rx) {
            return row;
        }
        return rx
            .iter()
            .map(|q| (path.replace("{rxq}", q), fill(value, None)))
            .collect();
    }
    if path.contains("{txq}") {
        if let Some(row) = none(&tx) {
            return row;
        }
        return tx
            .iter()
            .enumerate()
            .map(|(i, q)| (path.replace("{txq}", q), fill(value, Some(i))))
            .collect();
    }
    vec![(path.to_string(), fill(value, None))]
}

/// An ethtool setting of `--iface`, read now.
fn check_ethtool(setting: &Setting, spec: &EthtoolSetting, target: &Target) -> Row {
    let iface = target.iface.clone().unwrap_or_default();
    let report = nic::run_ethtool(&target.root, &[spec.read.as_str(), iface.as_str()]);
    let (first, last) = match &report {
        Ok(text) => nic::ethtool_values(text, &spec.key),
        Err(_) => (None, None),
    };
    let wanted = if setting.value == "max" {
        first.clone().unwrap_or_else(|| "max".into())
    } else {
        setting.value.clone()
    };
    let state = match (&report, &last) {
        (Err(e), _) => State::Unavailable(e.clone()),
        (Ok(_), None) => {
            State::Unavailable(format!("ethtool {} shows no `{}`", spec.read, spec.key))
        }
        (Ok(_), Some(current)) if *current == wanted => State::Ok,
        (Ok(_), Some(_)) => State::Differs,
    };
    Row {
        name: format!("{} ({iface})", setting.name),
        path: None,
        current: last.clone(),
        restorable: last,
        wanted,
        reason: setting.reason.clone(),
        state,
        command: Some(spec.write.replace("{iface}", &iface)),
    }
}

/// The settings of `profiles` on `target`, each read now.
pub fn check(profiles: &[Profile], target: &Target) -> Result<Vec<Row>, String> {
    let cmdline = std::fs::read_to_string(target.under("/proc/cmdline")).unwrap_or_default();
    let mut rows = Vec::new();
    for profile in profiles {
        for setting in &profile.settings {
            if let Some(boot) = &setting.boot {
                let present = boot
                    .split_whitespace()
                    .all(|p| cmdline.split_whitespace().any(|c| c == p));
                rows.push(Row {
                    name: setting.name.clone(),
                    path: None,
                    current: Some(if present { boot.clone() } else { "-".into() }),
                    restorable: None,
                    wanted: boot.clone(),
                    reason: setting.reason.clone(),
                    state: if present {
                        State::Ok
                    } else {
                        State::NeedsReboot
                    },
                    command: None,
                });
                continue;
            }
            if let Some(spec) = &setting.ethtool {
                if target.iface.is_none() {
                    return Err(format!("profile {} needs --iface", profile.name));
                }
                rows.push(check_ethtool(setting, spec, target));
                continue;
            }
            let template = setting.path.as_deref().expect("a path, boot or ethtool");
            let mut paths = vec![template.to_string()];
            for (key, value) in [("{device}", &target.device), ("{iface}", &target.iface)] {
                if template.contains(key) {
                    let value = value.as_ref().ok_or_else(|| {
                        format!(
                            "profile {} needs --{}",
                            profile.name,
                            key.trim_matches(|c| c == '{' || c == '}')
                        )
                    })?;
                    paths = paths.iter().map(|p| p.replace(key, value)).collect();
                }
            }
            if setting.each_cpu {
                paths = cpus(target)
                    .iter()
                    .flat_map(|cpu| paths.iter().map(move |p| p.replace("{cpu}", cpu)))
                    .collect();
            }
            let paths: Vec<(String, String)> = paths
                .iter()
                .flat_map(|p| expand_nic(target, p, &setting.value))
                .collect();
            for (path, wanted) in paths {
                if let Some(what) = unexpanded(&path) {
                    let iface = target.iface.as_deref().unwrap_or("");
                    rows.push(Row {
                        name: setting.name.clone(),
                        path: None,
                        current: None,
                        restorable: None,
                        wanted,
                        reason: setting.reason.clone(),
                        state: State::Unavailable(format!("{iface} has no {what}")),
                        command: None,
                    });
                    continue;
                }
                let read = std::fs::read_to_string(target.under(&path));
                let (current, restorable, state) = match read {
                    Ok(text) => {
                        let current = normalise(&text);
                        let same = if setting.mask {
                            nic::same_mask(&current, &wanted)
                        } else {
                            current == normalise(&wanted)
                        };
                        let state = if same { State::Ok } else { State::Differs };
                        let restorable = if text.contains('[') {
                            current.clone()
                        } else {
                            text.trim_end_matches('\n').to_string()
                        };
                        (Some(current), Some(restorable), state)
                    }
                    Err(e) => (None, None, State::Unavailable(e.to_string())),
                };
                let name = match (&target.device, path.contains("/block/")) {
                    (Some(device), true) => format!("{} ({device})", setting.name),
                    _ if setting.each_cpu => format!("{} ({})", setting.name, cpu_of(&path)),
                    _ if path.contains("/queues/") || path.starts_with("/proc/irq/") => {
                        format!("{} ({})", setting.name, nic_part_of(&path))
                    }
                    _ => setting.name.clone(),
                };
                rows.push(Row {
                    name,
                    path: Some(path),
                    current,
                    restorable,
                    wanted,
                    reason: setting.reason.clone(),
                    state,
                    command: None,
                });
            }
        }
    }
    Ok(rows)
}

/// What a path left with a placeholder found none of (an interface without MSI interrupts or
/// queues in sysfs, as virtual NICs are).
fn unexpanded(path: &str) -> Option<&'static str> {
    [
        ("{irq}", "MSI interrupts in sysfs"),
        ("{rxq}", "receive queues in sysfs"),
        ("{txq}", "transmit queues in sysfs"),
    ]
    .iter()
    .find(|(token, _)| path.contains(token))
    .map(|(_, what)| *what)
}

/// `rx-0` of a queue path, `irq 42` of an interrupt's.
fn nic_part_of(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').collect();
    if let Some(i) = parts.iter().position(|p| *p == "irq") {
        return format!("irq {}", parts.get(i + 1).unwrap_or(&""));
    }
    parts
        .iter()
        .find(|p| p.starts_with("rx-") || p.starts_with("tx-"))
        .unwrap_or(&"")
        .to_string()
}

fn cpu_of(path: &str) -> &str {
    path.split('/')
        .find(|part| part.starts_with("cpu") && part[3..].parse::<u32>().is_ok())
        .unwrap_or("cpu")
}

/// What `apply` did with one row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    AlreadySet,
    Written {
        previous: String,
    },
    /// `--dry-run`: the command that would run.
    WouldRun(String),
    /// A boot parameter: the operator adds it and reboots.
    Printed(String),
    Failed(String),
}

/// Writes every differing setting; records each replaced value (the first one, if a path was
/// already recorded) in the revert file, so that `revert` restores the machine as it was.
pub fn apply(rows: &[Row], target: &Target, dry_run: bool) -> Vec<Outcome> {
    let mut record = read_revert(target).unwrap_or_default();
    let mut outcomes = Vec::new();
    for row in rows {
        let outcome = match (&row.state, &row.path) {
            (State::Ok, _) => Outcome::AlreadySet,
            (State::NeedsReboot, _) => Outcome::Printed(format!(
                "add `{}` to the kernel command line and reboot",
                row.wanted
            )),
            (State::Unavailable(why), _) => Outcome::Failed(why.clone()),
            (State::Differs, None) if row.command.is_some() => {
                let template = row.command.clone().unwrap_or_default();
                let command = template.replace("{value}", &row.wanted);
                if dry_run {
                    Outcome::WouldRun(format!("ethtool {command}"))
                } else {
                    let args: Vec<&str> = command.split_whitespace().collect();
                    match nic::run_ethtool(&target.root, &args) {
                        Ok(_) => {
                            let key = format!("{ETHTOOL_PREFIX}{template}");
                            if !record.iter().any(|(p, _)| *p == key) {
                                record.push((key, row.restorable.clone().unwrap_or_default()));
                            }
                            Outcome::Written {
                                previous: row.current.clone().unwrap_or_default(),
                            }
                        }
                        Err(e) => Outcome::Failed(e),
                    }
                }
            }
            (State::Differs, Some(path)) if dry_run => {
                Outcome::WouldRun(format!("echo '{}' > {path}", row.wanted))
            }
            (State::Differs, Some(path)) => {
                let previous = row.current.clone().unwrap_or_default();
                let restorable = row.restorable.clone().unwrap_or_default();
                match std::fs::write(target.under(path), format!("{}\n", row.wanted)) {
                    Ok(()) => {
                        if !record.iter().any(|(p, _)| p == path) {
                            record.push((path.clone(), restorable));
                        }
                        Outcome::Written { previous }
                    }
                    Err(e) => Outcome::Failed(e.to_string()),
                }
            }
            (State::Differs, None) => Outcome::Failed("no path".into()),
        };
        outcomes.push(outcome);
    }
    if !dry_run {
        if let Err(e) = write_revert(target, &record) {
            outcomes.push(Outcome::Failed(format!(
                "cannot record the replaced values in {}: {e}",
                target.under(REVERT_FILE).display()
            )));
        }
    }
    outcomes
}

/// A path and the value written back to it, or why it could not be.
pub type Restored = (String, Result<String, String>);

/// Restores every value `apply` replaced, newest first; returns (path, result) per value. The
/// record is removed once everything was restored.
pub fn revert(target: &Target) -> Result<Vec<Restored>, String> {
    let record = read_revert(target).map_err(|e| {
        format!(
            "nothing to revert ({}: {e})",
            target.under(REVERT_FILE).display()
        )
    })?;
    let mut results = Vec::new();
    for (path, previous) in record.iter().rev() {
        let written = match path.strip_prefix(ETHTOOL_PREFIX) {
            Some(template) => {
                let command = template.replace("{value}", previous);
                let args: Vec<&str> = command.split_whitespace().collect();
                nic::run_ethtool(&target.root, &args).map(|_| previous.clone())
            }
            None => std::fs::write(target.under(path), format!("{previous}\n"))
                .map(|()| previous.clone())
                .map_err(|e| e.to_string()),
        };
        results.push((path.clone(), written));
    }
    if results.iter().all(|(_, r)| r.is_ok()) {
        let _ = std::fs::remove_file(target.under(REVERT_FILE));
        let _ = std::fs::remove_file(target.under(nic::NIC_CPUS_FILE));
    }
    Ok(results)
}

/// The revert file: one `path<TAB>previous value` per line, in the order applied.
fn read_revert(target: &Target) -> std::io::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(target.under(REVERT_FILE))?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let (path, value) = line.split_once('\t')?;
            Some((path.to_string(), value.to_string()))
        })
        .collect())
}

fn write_revert(target: &Target, record: &[(String, String)]) -> std::io::Result<()> {
    if record.is_empty() {
        return Ok(());
    }
    let path = target.under(REVERT_FILE);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let text: String = record.iter().map(|(p, v)| format!("{p}\t{v}\n")).collect();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, &path)
}

/// After a nic profile is applied: records its interrupt CPUs for `serve`, which pins its shards
/// to the other CPUs (unless `--cores` says otherwise).
pub fn record_nic_cpus(target: &Target) -> std::io::Result<String> {
    let cpus = nic::nic_cpus(&cpu_ids(target));
    let text = nic::list(&cpus);
    let path = target.under(nic::NIC_CPUS_FILE);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, format!("{text}\n"))?;
    Ok(text)
}

/// The table `check` prints.
pub fn table(rows: &[Row]) -> String {
    let cells: Vec<[String; 4]> = rows
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                r.current.clone().unwrap_or_else(|| "-".into()),
                r.wanted.clone(),
                match &r.state {
                    State::Ok => "ok".into(),
                    State::Differs => "DIFFERS".into(),
                    State::Unavailable(why) => format!("unavailable: {why}"),
                    State::NeedsReboot => "boot parameter: needs a reboot".into(),
                },
            ]
        })
        .collect();
    let header = ["setting", "current", "wanted", "ok?"].map(String::from);
    let widths: Vec<usize> = (0..4)
        .map(|i| {
            cells
                .iter()
                .chain(std::iter::once(&header))
                .map(|c| c[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&cells) {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// For `serve` with `mode=production`: one line per setting of `os/production` that the host
/// under `root` does not match.
pub fn production_warnings(root: &Path) -> Vec<String> {
    let target = Target {
        root: root.to_path_buf(),
        device: None,
        iface: None,
    };
    let profile = profile("os/production").expect("shipped");
    let rows = check(&[profile], &target).unwrap_or_default();
    rows.into_iter()
        .filter(|r| r.state != State::Ok)
        .map(|r| match r.state {
            State::Unavailable(why) => format!("{}: cannot read it ({why})", r.name),
            _ => format!(
                "{} is {}, the production profile wants {} ({})",
                r.name,
                r.current.unwrap_or_default(),
                r.wanted,
                r.reason
            ),
        })
        .collect()
}

/// Whether `root` is the real machine (where writing needs root privileges).
pub fn is_real_root(root: &Path) -> bool {
    root == Path::new("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_profile_parses_with_reasons() {
        for (name, _) in PROFILES {
            let p = profile(name).unwrap();
            assert!(!p.settings.is_empty(), "{name}");
            assert!(p.settings.iter().all(|s| !s.reason.is_empty()), "{name}");
        }
        assert!(profile("os/nope").unwrap_err().contains("os/production"));
    }

    #[test]
    fn production_mode_names_each_setting_off_profile() {
        let dir = tempfile::tempdir().unwrap();
        let put = |path: &str, value: &str| {
            let file = dir.path().join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, value).unwrap();
        };
        put("proc/sys/vm/swappiness", "60\n");
        put("proc/sys/net/core/somaxconn", "4096\n");
        let warnings = production_warnings(dir.path());
        assert!(warnings
            .iter()
            .any(|w| w.starts_with("vm.swappiness is 60, the production profile wants 1")));
        assert!(!warnings.iter().any(|w| w.starts_with("net.core.somaxconn")));
        assert!(warnings
            .iter()
            .any(|w| w.starts_with("fs.aio-max-nr: cannot read it")));
    }

    #[test]
    fn values_are_compared_as_the_kernel_shows_them() {
        assert_eq!(normalise("[none] mq-deadline kyber\n"), "none");
        assert_eq!(normalise("mq-deadline [kyber]"), "kyber");
        assert_eq!(normalise("4096\t87380   16777216\n"), "4096 87380 16777216");
        assert_eq!(normalise("always madvise [never]"), "never");
    }
}
