//! `sluice group list|describe|delete|reset-offsets`.

use std::collections::BTreeMap;

use kafka_protocol::messages::{
    ConsumerProtocolAssignment, GroupId, OffsetCommitRequest, OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::groups::GroupInfo;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;

use super::cluster::{existing, metadata};
use super::table::Table;
use super::topic::options;
use super::{emit, error_name, print_json, report, wait, Connection, Failure, Outcome};

#[derive(clap::Subcommand, Debug)]
pub enum GroupCommand {
    /// List consumer groups with their state and member counts
    List,
    /// A group's members, assignments, committed offsets and lag per partition
    Describe {
        #[arg(required = true)]
        groups: Vec<String>,
    },
    /// Delete groups that have no members, with their committed offsets
    Delete {
        #[arg(required = true)]
        groups: Vec<String>,
    },
    /// Move a stopped group's committed offsets
    ResetOffsets(ResetArgs),
}

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("to").required(true).args(
    ["to_earliest", "to_latest", "to_offset", "to_datetime", "shift_by"])))]
#[command(group(clap::ArgGroup::new("which").required(true).args(["topic", "all_topics"])))]
pub struct ResetArgs {
    group: String,
    /// A topic, or topic:partition,partition...; repeat for more
    #[arg(long, value_name = "TOPIC[:P,P...]")]
    topic: Vec<String>,
    /// Every topic the group has committed offsets for
    #[arg(long)]
    all_topics: bool,
    /// To each partition's log start
    #[arg(long)]
    to_earliest: bool,
    /// To each partition's log end (high watermark)
    #[arg(long)]
    to_latest: bool,
    /// To this offset (kept within each partition's log start and end)
    #[arg(long, value_name = "OFFSET")]
    to_offset: Option<i64>,
    /// To the first offset at or after this time: YYYY-MM-DDTHH:MM:SS[.mmm][Z] in UTC, or
    /// milliseconds since the epoch
    #[arg(long, value_name = "TIME")]
    to_datetime: Option<String>,
    /// By this many offsets from the committed one (negative moves back)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    shift_by: Option<i64>,
    /// Print the new offsets without committing them
    #[arg(long)]
    dry_run: bool,
}

pub fn run(command: GroupCommand, conn: &Connection) -> Outcome {
    match command {
        GroupCommand::List => list(conn),
        GroupCommand::Describe { groups } => {
            let mut documents = Vec::new();
            for (i, group) in groups.iter().enumerate() {
                if i > 0 && !conn.json {
                    println!();
                }
                documents.push(describe(conn, group)?);
            }
            if conn.json {
                print_json(&json!(documents));
            }
            Ok(())
        }
        GroupCommand::Delete { groups } => {
            let admin = conn.admin()?;
            let names: Vec<&str> = groups.iter().map(String::as_str).collect();
            let results = wait(admin.delete_groups(&names, &options(conn)))
                .map_err(|e| Failure::Failed(format!("DeleteGroups: {e}")))?;
            report(conn, "group", "deleted", results)
        }
        GroupCommand::ResetOffsets(args) => reset(conn, &args),
    }
}

fn consumer(conn: &Connection) -> Result<BaseConsumer, Failure> {
    conn.client(&[("group.id", "sluice-cli"), ("enable.auto.commit", "false")])
}

fn list(conn: &Connection) -> Outcome {
    let client = consumer(conn)?;
    let found = client
        .fetch_group_list(None, conn.timeout())
        .map_err(|e| Failure::Failed(format!("ListGroups: {e}")))?;
    let mut groups: Vec<&GroupInfo> = found.groups().iter().collect();
    groups.sort_by(|a, b| a.name().cmp(b.name()));
    let mut table = Table::new(&["GROUP", "STATE", "PROTOCOL-TYPE", "MEMBERS"]);
    let mut rows = Vec::new();
    for g in groups {
        rows.push(json!({
            "group": g.name(),
            "state": g.state(),
            "protocol_type": g.protocol_type(),
            "members": g.members().len(),
        }));
        table.row(vec![
            g.name().to_string(),
            g.state().to_string(),
            g.protocol_type().to_string(),
            g.members().len().to_string(),
        ]);
    }
    emit(conn, &table, &json!(rows));
    Ok(())
}

/// The group's state and members as its coordinator describes them.
fn group_info(client: &BaseConsumer, conn: &Connection, group: &str) -> Result<Info, Failure> {
    let found = client
        .fetch_group_list(Some(group), conn.timeout())
        .map_err(|e| Failure::Failed(format!("DescribeGroups {group}: {e}")))?;
    let info = found
        .groups()
        .iter()
        .find(|g| g.name() == group)
        .ok_or_else(|| Failure::Failed(format!("group {group}: not described")))?;
    let mut members = Vec::new();
    for m in info.members() {
        let mut assigned = Vec::new();
        if let Some(mut bytes) = m.assignment().map(bytes::Bytes::copy_from_slice) {
            if bytes.len() >= 2 {
                let version = i16::from_be_bytes([bytes[0], bytes[1]]);
                let _ = bytes::Buf::get_i16(&mut bytes);
                if let Ok(a) = ConsumerProtocolAssignment::decode(&mut bytes, version.clamp(0, 3)) {
                    for t in a.assigned_partitions {
                        for p in t.partitions {
                            assigned.push((t.topic.0.to_string(), p));
                        }
                    }
                }
            }
        }
        members.push(Member {
            id: m.id().to_string(),
            client_id: m.client_id().to_string(),
            host: m.client_host().to_string(),
            assigned,
        });
    }
    Ok(Info {
        state: info.state().to_string(),
        protocol: info.protocol().to_string(),
        members,
    })
}

struct Info {
    state: String,
    protocol: String,
    members: Vec<Member>,
}

struct Member {
    id: String,
    client_id: String,
    host: String,
    assigned: Vec<(String, i32)>,
}

/// The group's committed offsets, every topic (OffsetFetch to its coordinator).
fn committed(conn: &Connection, group: &str) -> Result<BTreeMap<(String, i32), i64>, Failure> {
    let mut request = OffsetFetchRequest::default();
    request.group_id = GroupId(StrBytes::from_string(group.to_string()));
    request.topics = None;
    let answer = conn.coordinator(group)?.call(7, &request)?;
    if answer.error_code != 0 {
        return Err(Failure::Failed(format!(
            "OffsetFetch {group}: {}",
            error_name(answer.error_code)
        )));
    }
    let mut offsets = BTreeMap::new();
    for topic in answer.topics {
        for p in topic.partitions {
            if p.error_code == 0 && p.committed_offset >= 0 {
                offsets.insert(
                    (topic.name.0.to_string(), p.partition_index),
                    p.committed_offset,
                );
            }
        }
    }
    Ok(offsets)
}

fn describe(conn: &Connection, group: &str) -> Result<serde_json::Value, Failure> {
    let client = consumer(conn)?;
    let info = group_info(&client, conn, group)?;
    let committed = committed(conn, group)?;
    if info.state == "Dead" && committed.is_empty() {
        return Err(Failure::Failed(format!("group {group} does not exist")));
    }
    // Every partition the group has an offset for or a member holds.
    let mut owner: BTreeMap<(String, i32), Option<&Member>> =
        committed.keys().map(|k| (k.clone(), None)).collect();
    for m in &info.members {
        for tp in &m.assigned {
            owner.insert(tp.clone(), Some(m));
        }
    }
    let mut table = Table::new(&[
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "MEMBER-ID",
        "CLIENT-ID",
        "HOST",
    ]);
    let mut rows = Vec::new();
    let mut total_lag = 0i64;
    for ((topic, partition), member) in &owner {
        let end = client
            .fetch_watermarks(topic, *partition, conn.timeout())
            .ok()
            .map(|m| m.1);
        let current = committed.get(&(topic.clone(), *partition)).copied();
        let lag = match (current, end) {
            (Some(c), Some(e)) => Some((e - c).max(0)),
            _ => None,
        };
        total_lag += lag.unwrap_or(0);
        let show = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
        table.row(vec![
            topic.clone(),
            partition.to_string(),
            show(current),
            show(end),
            show(lag),
            member.map_or("-".into(), |m| m.id.clone()),
            member.map_or("-".into(), |m| m.client_id.clone()),
            member.map_or("-".into(), |m| m.host.clone()),
        ]);
        rows.push(json!({
            "topic": topic,
            "partition": partition,
            "current_offset": current,
            "log_end_offset": end,
            "lag": lag,
            "member_id": member.map(|m| m.id.clone()),
        }));
    }
    let members: Vec<_> = info
        .members
        .iter()
        .map(|m| {
            json!({
                "member_id": m.id,
                "client_id": m.client_id,
                "host": m.host,
                "assignment": m.assigned.iter()
                    .map(|(t, p)| json!({"topic": t, "partition": p}))
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    if !conn.json {
        println!("GROUP       {group}");
        println!("STATE       {}", info.state);
        println!("PROTOCOL    {}", info.protocol);
        println!("MEMBERS     {}", info.members.len());
        println!("TOTAL-LAG   {total_lag}");
        println!();
        table.print();
    }
    Ok(json!({
        "group": group,
        "state": info.state,
        "protocol": info.protocol,
        "members": members,
        "total_lag": total_lag,
        "partitions": rows,
    }))
}

fn reset(conn: &Connection, args: &ResetArgs) -> Outcome {
    let group = args.group.as_str();
    let client = consumer(conn)?;
    let info = group_info(&client, conn, group)?;
    if !info.members.is_empty() {
        return Err(Failure::Failed(format!(
            "group {group} is {} with {} member(s): stop its consumers first (offsets can be \
             reset only while a group has no members)",
            info.state,
            info.members.len()
        )));
    }
    let committed = committed(conn, group)?;
    // The partitions to move.
    let mut partitions: Vec<(String, i32)> = Vec::new();
    if args.all_topics {
        partitions.extend(committed.keys().cloned());
    }
    for spec in &args.topic {
        let (topic, list) = match spec.split_once(':') {
            Some((t, l)) => (t.to_string(), Some(l)),
            None => (spec.clone(), None),
        };
        match list {
            Some(list) => {
                for p in list.split(',') {
                    let p = p.trim().parse::<i32>().map_err(|_| {
                        Failure::Failed(format!("--topic {spec}: partitions are numbers"))
                    })?;
                    partitions.push((topic.clone(), p));
                }
            }
            None => {
                let found = metadata(conn, Some(std::slice::from_ref(&topic)))?;
                for (_, t) in existing(&found)? {
                    partitions.extend(
                        t.partitions
                            .iter()
                            .map(|p| (topic.clone(), p.partition_index)),
                    );
                }
            }
        }
    }
    partitions.sort();
    partitions.dedup();
    if partitions.is_empty() {
        return Err(Failure::Failed(format!(
            "group {group}: no partitions to reset (it has no committed offsets)"
        )));
    }
    let timestamp = match &args.to_datetime {
        Some(text) => Some(parse_time(text).ok_or_else(|| {
            Failure::Failed(format!(
                "--to-datetime {text}: expected YYYY-MM-DDTHH:MM:SS[.mmm][Z] or epoch milliseconds"
            ))
        })?),
        None => None,
    };
    let mut plan = Vec::new();
    for (topic, partition) in &partitions {
        let (low, high) = client
            .fetch_watermarks(topic, *partition, conn.timeout())
            .map_err(|e| Failure::Failed(format!("offsets of {topic}-{partition}: {e}")))?;
        let current = committed.get(&(topic.clone(), *partition)).copied();
        let wanted = if args.to_earliest {
            low
        } else if args.to_latest {
            high
        } else if let Some(offset) = args.to_offset {
            offset
        } else if let Some(shift) = args.shift_by {
            current.unwrap_or(high).saturating_add(shift)
        } else {
            let mut list = TopicPartitionList::new();
            list.add_partition_offset(topic, *partition, Offset::Offset(timestamp.unwrap_or(0)))
                .map_err(|e| Failure::Failed(e.to_string()))?;
            let found = client
                .offsets_for_times(list, conn.timeout())
                .map_err(|e| Failure::Failed(format!("ListOffsets {topic}-{partition}: {e}")))?;
            match found.find_partition(topic, *partition).map(|e| e.offset()) {
                Some(Offset::Offset(o)) if o >= 0 => o,
                _ => high,
            }
        };
        plan.push((topic.clone(), *partition, current, wanted.clamp(low, high)));
    }
    let mut table = Table::new(&["TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"]);
    let mut rows = Vec::new();
    for (topic, partition, current, new) in &plan {
        table.row(vec![
            topic.clone(),
            partition.to_string(),
            current.map_or("-".into(), |c| c.to_string()),
            new.to_string(),
        ]);
        rows.push(json!({"topic": topic, "partition": partition,
            "current_offset": current, "new_offset": new}));
    }
    if conn.json {
        print_json(&json!({"group": group, "dry_run": args.dry_run, "partitions": rows}));
    } else {
        table.print();
    }
    if args.dry_run {
        return Ok(());
    }
    commit(conn, group, &plan)
}

/// Commits `plan`'s new offsets for `group` as a client outside the group (generation -1).
fn commit(conn: &Connection, group: &str, plan: &[(String, i32, Option<i64>, i64)]) -> Outcome {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for (topic, partition, _, new) in plan {
        let mut p = OffsetCommitRequestPartition::default();
        p.partition_index = *partition;
        p.committed_offset = *new;
        p.committed_leader_epoch = -1;
        p.committed_metadata = Some(StrBytes::from_static_str(""));
        topics.entry(topic).or_default().push(p);
    }
    let mut request = OffsetCommitRequest::default();
    request.group_id = GroupId(StrBytes::from_string(group.to_string()));
    request.generation_id_or_member_epoch = -1;
    request.member_id = StrBytes::from_static_str("");
    request.topics = topics
        .into_iter()
        .map(|(name, partitions)| {
            let mut t = OffsetCommitRequestTopic::default();
            t.name = TopicName(StrBytes::from_string(name.to_string()));
            t.partitions = partitions;
            t
        })
        .collect();
    let answer = conn.coordinator(group)?.call(8, &request)?;
    let mut failures = Vec::new();
    for t in &answer.topics {
        for p in &t.partitions {
            if p.error_code != 0 {
                failures.push(format!(
                    "{}-{}: {}",
                    t.name.as_str(),
                    p.partition_index,
                    error_name(p.error_code)
                ));
            }
        }
    }
    if failures.is_empty() {
        if !conn.json {
            eprintln!("group {group}: offsets committed");
        }
        Ok(())
    } else {
        Err(Failure::Failed(format!(
            "committing offsets of group {group}: {}",
            failures.join(", ")
        )))
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.mmm][Z]` (UTC) or milliseconds since the epoch, as epoch milliseconds.
pub fn parse_time(text: &str) -> Option<i64> {
    if let Ok(ms) = text.parse::<i64>() {
        return Some(ms);
    }
    let text = text.strip_suffix('Z').unwrap_or(text);
    let (date, time) = text.split_once(['T', ' '])?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (d.next()??, d.next()??, d.next()??);
    let (time, millis) = match time.split_once('.') {
        Some((t, f)) => {
            let digits: String = f.chars().take(3).collect();
            (t, format!("{digits:0<3}").parse::<i64>().ok()?)
        }
        None => (time, 0),
    };
    let mut t = time.split(':').map(|p| p.parse::<i64>().ok());
    let (hour, minute) = (t.next()??, t.next()??);
    let second = t.next().flatten().unwrap_or(0);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millis)
}

#[cfg(test)]
mod tests {
    use super::parse_time;

    #[test]
    fn times_parse_as_utc_epoch_milliseconds() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_time("2026-12-07T01:32:37.5"), Some(1_796_607_157_500));
        assert_eq!(parse_time("2000-03-01 00:00:00"), Some(951_868_800_000));
        assert_eq!(parse_time("12345"), Some(12345));
        assert_eq!(parse_time("2026-13-01T00:00:00"), None);
        assert_eq!(parse_time("yesterday"), None);
    }
}
