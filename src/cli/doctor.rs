//! `sluice doctor`: the host against the `os/production` profile, the cluster's health as
//! Metadata shows it (brokers, controller, offline and under-replicated partitions), and how full
//! the broker's log directories are.

use std::path::PathBuf;

use serde_json::json;

use super::cluster::{metadata, topic_name};
use super::table::Table;
use super::{print_json, Connection, Failure, Outcome};

/// A log directory fuller than this (percent used) is a warning; past `DISK_FAIL`, a failure.
const DISK_WARN: u64 = 80;
const DISK_FAIL: u64 = 95;

#[derive(clap::Args, Debug)]
pub struct DoctorArgs {
    /// A log directory to check for space (default: ./sluice-data when it exists); repeat for more
    #[arg(long, value_name = "DIR")]
    log_dir: Vec<PathBuf>,
    /// The tuning profile the host is compared with
    #[arg(long, default_value = "os/production")]
    profile: String,
    /// The root of the /proc and /sys to read (for tests)
    #[arg(long, default_value = "/", hide = true)]
    root: PathBuf,
}

#[derive(Clone, Copy, PartialEq, PartialOrd)]
enum Level {
    Ok,
    Warn,
    Fail,
}

struct Finding {
    check: String,
    level: Level,
    detail: String,
}

pub fn run(args: DoctorArgs, conn: &Connection) -> Outcome {
    let mut findings = Vec::new();
    host(&args, &mut findings);
    cluster(conn, &mut findings);
    disks(&args, &mut findings);
    let worst = findings
        .iter()
        .map(|f| f.level)
        .fold(Level::Ok, |a, b| if b > a { b } else { a });
    let name = |l: Level| match l {
        Level::Ok => "ok",
        Level::Warn => "warn",
        Level::Fail => "FAIL",
    };
    if conn.json {
        let rows: Vec<_> = findings
            .iter()
            .map(|f| json!({"check": f.check, "status": name(f.level), "detail": f.detail}))
            .collect();
        print_json(&json!({"status": name(worst), "checks": rows}));
    } else {
        let mut table = Table::new(&["CHECK", "STATUS", "DETAIL"]);
        for f in &findings {
            table.row(vec![
                f.check.clone(),
                name(f.level).into(),
                f.detail.clone(),
            ]);
        }
        table.print();
    }
    if worst == Level::Fail {
        Err(Failure::Reported)
    } else {
        Ok(())
    }
}

fn host(args: &DoctorArgs, findings: &mut Vec<Finding>) {
    use sluice::tune::{self, State, Target};
    let target = Target {
        root: args.root.clone(),
        device: None,
        iface: None,
    };
    let rows = tune::profile(&args.profile).and_then(|p| tune::check(&[p], &target));
    match rows {
        Err(why) => findings.push(Finding {
            check: format!("host {}", args.profile),
            level: Level::Warn,
            detail: why,
        }),
        Ok(rows) => {
            let mut differ = 0;
            for r in rows.iter().filter(|r| r.state != State::Ok) {
                differ += 1;
                let now = r.current.as_deref().unwrap_or("unreadable");
                findings.push(Finding {
                    check: format!("host {}", r.name),
                    level: Level::Warn,
                    detail: format!("{now}; {} wants {} ({})", args.profile, r.wanted, r.reason),
                });
            }
            findings.push(Finding {
                check: format!("host {}", args.profile),
                level: if differ == 0 { Level::Ok } else { Level::Warn },
                detail: if differ == 0 {
                    format!("all {} settings as the profile wants", rows.len())
                } else {
                    format!(
                        "{differ} of {} settings differ: `sluice tune apply --profile {}`",
                        rows.len(),
                        args.profile
                    )
                },
            });
        }
    }
}

fn cluster(conn: &Connection, findings: &mut Vec<Finding>) {
    let found = match metadata(conn, None) {
        Ok(found) => found,
        Err(Failure::Unreachable(why) | Failure::Failed(why)) => {
            findings.push(Finding {
                check: "brokers".into(),
                level: Level::Fail,
                detail: why,
            });
            return;
        }
        Err(Failure::Reported) => return,
    };
    let controller = found.controller_id.0;
    findings.push(Finding {
        check: "brokers".into(),
        level: if controller < 0 {
            Level::Fail
        } else {
            Level::Ok
        },
        detail: format!(
            "{} live, controller {}",
            found.brokers.len(),
            if controller < 0 {
                "none".to_string()
            } else {
                controller.to_string()
            }
        ),
    });
    let mut offline = Vec::new();
    let mut under = Vec::new();
    let mut total = 0;
    for topic in &found.topics {
        let name = topic_name(topic);
        for p in &topic.partitions {
            total += 1;
            if p.leader_id.0 < 0 {
                offline.push(format!("{name}-{}", p.partition_index));
            } else if p.isr_nodes.len() < p.replica_nodes.len() {
                under.push(format!("{name}-{}", p.partition_index));
            }
        }
    }
    findings.push(partitions_finding(
        "offline partitions",
        Level::Fail,
        "without a leader",
        &offline,
        total,
    ));
    findings.push(partitions_finding(
        "under-replicated",
        Level::Warn,
        "with replicas out of the ISR",
        &under,
        total,
    ));
}

/// A check over partitions: ok when `found` is empty, else `level`, naming up to ten of them.
fn partitions_finding(
    check: &str,
    level: Level,
    what: &str,
    found: &[String],
    total: usize,
) -> Finding {
    if found.is_empty() {
        return Finding {
            check: check.into(),
            level: Level::Ok,
            detail: format!("none of {total}"),
        };
    }
    let shown: Vec<&str> = found.iter().take(10).map(String::as_str).collect();
    let more = match found.len().saturating_sub(10) {
        0 => String::new(),
        more => format!(" and {more} more"),
    };
    Finding {
        check: check.into(),
        level,
        detail: format!("{} {what}: {}{more}", found.len(), shown.join(", ")),
    }
}

fn disks(args: &DoctorArgs, findings: &mut Vec<Finding>) {
    let mut dirs = args.log_dir.clone();
    if dirs.is_empty() && std::path::Path::new("sluice-data").is_dir() {
        dirs.push(PathBuf::from("sluice-data"));
    }
    for dir in dirs {
        let check = format!("disk {}", dir.display());
        // df(1) reads statvfs for us (no unsafe call here); -P gives one line per file system.
        let used = std::process::Command::new("df")
            .arg("-P")
            .arg(&dir)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| {
                let text = String::from_utf8_lossy(&o.stdout).into_owned();
                let line = text.lines().nth(1)?.to_string();
                let percent = line.split_whitespace().nth(4)?.trim_end_matches('%');
                percent.parse::<u64>().ok()
            });
        findings.push(match used {
            None => Finding {
                check,
                level: Level::Warn,
                detail: "cannot read its file system's usage (df -P)".into(),
            },
            Some(used) => Finding {
                check,
                level: if used >= DISK_FAIL {
                    Level::Fail
                } else if used >= DISK_WARN {
                    Level::Warn
                } else {
                    Level::Ok
                },
                detail: format!("{used}% used"),
            },
        });
    }
}
