//! `sluice topic create|list|describe|alter-config|add-partitions|delete`.

use rdkafka::admin::{
    AdminOptions, ConfigSource, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::types::RDKafkaErrorCode;
use serde_json::json;

use super::cluster::{existing, metadata, topic_name};
use super::table::{ids, Table};
use super::{emit, error_name, pair, print_json, report, wait, Connection, Failure, Outcome};

#[derive(clap::Subcommand, Debug)]
pub enum TopicCommand {
    /// Create topics
    Create {
        #[arg(required = true)]
        names: Vec<String>,
        /// Partitions per topic (-1: the broker's num.partitions)
        #[arg(short, long, default_value_t = -1, allow_negative_numbers = true)]
        partitions: i32,
        /// Replicas per partition (-1: the broker's default.replication.factor)
        #[arg(short, long, default_value_t = -1, allow_negative_numbers = true)]
        replication_factor: i32,
        /// A topic config (e.g. -c cleanup.policy=compact); repeat for more
        #[arg(short, long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
        /// Only check that the cluster would create them
        #[arg(long)]
        dry_run: bool,
    },
    /// List topics with their partition and replica counts
    List {
        /// Include internal topics (__consumer_offsets, __transaction_state)
        #[arg(short, long)]
        internal: bool,
    },
    /// A topic's partitions (leader, replicas, ISR, offsets) and configs
    Describe {
        #[arg(required = true)]
        names: Vec<String>,
        /// Every config, not only those set on the topic
        #[arg(short, long)]
        all_configs: bool,
    },
    /// Set or remove a topic's configs (IncrementalAlterConfigs)
    AlterConfig {
        name: String,
        /// A config to set; repeat for more
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// A config to remove (back to the broker's default); repeat for more
        #[arg(long = "delete", value_name = "KEY")]
        delete: Vec<String>,
        /// Only check that the cluster would accept the change
        #[arg(long)]
        dry_run: bool,
    },
    /// Add partitions to topics
    AddPartitions {
        #[arg(required = true)]
        names: Vec<String>,
        /// How many partitions to add to each
        #[arg(short, long)]
        num: u32,
    },
    /// Delete topics and their data
    Delete {
        #[arg(required = true)]
        names: Vec<String>,
    },
}

pub fn run(command: TopicCommand, conn: &Connection) -> Outcome {
    match command {
        TopicCommand::Create {
            names,
            partitions,
            replication_factor,
            configs,
            dry_run,
        } => {
            let configs = configs
                .iter()
                .map(|c| pair(c, "--config"))
                .collect::<Result<Vec<_>, _>>()?;
            let topics: Vec<NewTopic> = names
                .iter()
                .map(|name| {
                    configs.iter().fold(
                        NewTopic::new(
                            name,
                            partitions,
                            TopicReplication::Fixed(replication_factor),
                        ),
                        |topic, (k, v)| topic.set(k, v),
                    )
                })
                .collect();
            let admin = conn.admin()?;
            let results = wait(admin.create_topics(&topics, &options(conn).validate_only(dry_run)))
                .map_err(|e| Failure::Failed(format!("CreateTopics: {e}")))?;
            report(
                conn,
                "topic",
                if dry_run { "valid" } else { "created" },
                results,
            )
        }
        TopicCommand::List { internal } => list(conn, internal),
        TopicCommand::Describe { names, all_configs } => describe(conn, &names, all_configs),
        TopicCommand::AlterConfig {
            name,
            set,
            delete,
            dry_run,
        } => alter_config(conn, &name, &set, &delete, dry_run),
        TopicCommand::AddPartitions { names, num } => {
            let found = metadata(conn, Some(&names))?;
            let mut growth = Vec::new();
            for (name, topic) in existing(&found)? {
                growth.push((name, topic.partitions.len() + num as usize));
            }
            let requests: Vec<NewPartitions> = growth
                .iter()
                .map(|(name, total)| NewPartitions::new(name, *total))
                .collect();
            let admin = conn.admin()?;
            let results = wait(admin.create_partitions(&requests, &options(conn)))
                .map_err(|e| Failure::Failed(format!("CreatePartitions: {e}")))?;
            report(conn, "topic", "partitions added", results)
        }
        TopicCommand::Delete { names } => {
            let admin = conn.admin()?;
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let results = wait(admin.delete_topics(&names, &options(conn)))
                .map_err(|e| Failure::Failed(format!("DeleteTopics: {e}")))?;
            report(conn, "topic", "deleted", results)
        }
    }
}

pub fn options(conn: &Connection) -> AdminOptions {
    AdminOptions::new()
        .request_timeout(Some(conn.timeout()))
        .operation_timeout(Some(conn.timeout()))
}

/// The Kafka name of an error librdkafka passes on from a broker.
pub fn rd_error(code: RDKafkaErrorCode) -> String {
    let number = code as i32;
    if number > 0 {
        error_name(number as i16)
    } else {
        code.to_string()
    }
}

fn list(conn: &Connection, internal: bool) -> Outcome {
    let found = metadata(conn, None)?;
    let mut topics: Vec<_> = found
        .topics
        .iter()
        .filter(|t| internal || !t.is_internal)
        .collect();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    let mut table = Table::new(&["NAME", "PARTITIONS", "REPLICAS"]);
    let mut rows = Vec::new();
    for topic in topics {
        let name = topic_name(topic);
        let replicas = topic
            .partitions
            .first()
            .map_or(0, |p| p.replica_nodes.len());
        rows.push(json!({
            "name": name,
            "partitions": topic.partitions.len(),
            "replicas": replicas,
            "internal": topic.is_internal,
            "id": topic.topic_id.to_string(),
        }));
        table.row(vec![
            name,
            topic.partitions.len().to_string(),
            replicas.to_string(),
        ]);
    }
    emit(conn, &table, &json!(rows));
    Ok(())
}

fn describe(conn: &Connection, names: &[String], all_configs: bool) -> Outcome {
    let found = metadata(conn, Some(names))?;
    let admin = conn.admin()?;
    let timeout = conn.timeout();
    let mut documents = Vec::new();
    let mut printed = 0;
    let mut failed = false;
    for topic in &found.topics {
        let name = topic_name(topic);
        if topic.error_code != 0 {
            eprintln!("topic {name}: {}", error_name(topic.error_code));
            failed = true;
            continue;
        }
        let resource = [ResourceSpecifier::Topic(&name)];
        let configs = wait(admin.describe_configs(&resource, &options(conn)))
            .map_err(|e| Failure::Failed(format!("DescribeConfigs: {e}")))?;
        let mut settings = Vec::new();
        for resource in configs.into_iter().flatten() {
            for entry in resource.entries {
                let set_here = matches!(entry.source, ConfigSource::DynamicTopic);
                if all_configs || set_here {
                    settings.push((entry.name, entry.value.unwrap_or_default()));
                }
            }
        }
        let mut partitions = topic.partitions.clone();
        partitions.sort_by_key(|p| p.partition_index);
        let mut table = Table::new(&[
            "PARTITION",
            "LEADER",
            "EPOCH",
            "REPLICAS",
            "ISR",
            "OFFLINE",
            "LOG-START",
            "HIGH-WATERMARK",
        ]);
        let mut rows = Vec::new();
        for p in &partitions {
            let marks = admin
                .inner()
                .fetch_watermarks(&name, p.partition_index, timeout)
                .ok();
            let replicas: Vec<i32> = p.replica_nodes.iter().map(|b| b.0).collect();
            let isr: Vec<i32> = p.isr_nodes.iter().map(|b| b.0).collect();
            let offline: Vec<i32> = p.offline_replicas.iter().map(|b| b.0).collect();
            let mark = |m: Option<i64>| m.map_or("-".to_string(), |m| m.to_string());
            table.row(vec![
                p.partition_index.to_string(),
                p.leader_id.0.to_string(),
                p.leader_epoch.to_string(),
                ids(&replicas),
                ids(&isr),
                ids(&offline),
                mark(marks.map(|m| m.0)),
                mark(marks.map(|m| m.1)),
            ]);
            rows.push(json!({
                "partition": p.partition_index,
                "leader": p.leader_id.0,
                "leader_epoch": p.leader_epoch,
                "replicas": replicas,
                "isr": isr,
                "offline_replicas": offline,
                "log_start_offset": marks.map(|m| m.0),
                "high_watermark": marks.map(|m| m.1),
                "error": (p.error_code != 0).then(|| error_name(p.error_code)),
            }));
        }
        let replicas = partitions.first().map_or(0, |p| p.replica_nodes.len());
        if conn.json {
            let configs: serde_json::Map<String, serde_json::Value> = settings
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            documents.push(json!({
                "name": name,
                "id": topic.topic_id.to_string(),
                "internal": topic.is_internal,
                "partitions": rows,
                "replication_factor": replicas,
                "configs": configs,
            }));
            continue;
        }
        if printed > 0 {
            println!();
        }
        printed += 1;
        let mut summary = Table::new(&["NAME", &name]);
        summary.row(vec!["ID".into(), topic.topic_id.to_string()]);
        summary.row(vec!["PARTITIONS".into(), partitions.len().to_string()]);
        summary.row(vec!["REPLICAS".into(), replicas.to_string()]);
        let configs: Vec<String> = settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
        summary.row(vec!["CONFIGS".into(), configs.join(", ")]);
        summary.print();
        println!();
        table.print();
    }
    if conn.json {
        print_json(&json!(documents));
    }
    if failed {
        Err(Failure::Reported)
    } else {
        Ok(())
    }
}

fn alter_config(
    conn: &Connection,
    name: &str,
    set: &[String],
    delete: &[String],
    dry_run: bool,
) -> Outcome {
    use kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    use kafka_protocol::messages::IncrementalAlterConfigsRequest;
    use kafka_protocol::protocol::StrBytes;
    if set.is_empty() && delete.is_empty() {
        return Err(Failure::Failed(
            "name a config to change: --set KEY=VALUE or --delete KEY".into(),
        ));
    }
    let mut configs = Vec::new();
    for text in set {
        let (key, value) = pair(text, "--set")?;
        let mut config = AlterableConfig::default();
        config.name = StrBytes::from_string(key);
        config.config_operation = 0;
        config.value = Some(StrBytes::from_string(value));
        configs.push(config);
    }
    for key in delete {
        let mut config = AlterableConfig::default();
        config.name = StrBytes::from_string(key.clone());
        config.config_operation = 1;
        configs.push(config);
    }
    let mut resource = AlterConfigsResource::default();
    resource.resource_type = 2;
    resource.resource_name = StrBytes::from_string(name.to_string());
    resource.configs = configs;
    let mut request = IncrementalAlterConfigsRequest::default();
    request.resources = vec![resource];
    request.validate_only = dry_run;
    let answer = conn.bootstrap()?.call(1, &request)?;
    let mut failed = None;
    for response in &answer.responses {
        if response.error_code != 0 {
            let message = response.error_message.as_deref().unwrap_or_default();
            failed = Some(format!(
                "topic {name}: {}{}{message}",
                error_name(response.error_code),
                if message.is_empty() { "" } else { ": " }
            ));
        }
    }
    if conn.json {
        print_json(&json!({"topic": name, "error": failed}));
    } else if failed.is_none() {
        let what = if dry_run { "valid" } else { "altered" };
        println!("topic {name}: configs {what}");
    }
    match failed {
        Some(why) => Err(Failure::Failed(why)),
        None => Ok(()),
    }
}
