//! `sluice cluster info|unregister`, and the Metadata request the other commands share.

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::{
    BrokerId, MetadataRequest, MetadataResponse, TopicName, UnregisterBrokerRequest,
};
use kafka_protocol::protocol::StrBytes;
use serde_json::json;

use super::table::Table;
use super::{print_json, Connection, Failure, Outcome};

#[derive(clap::Subcommand, Debug)]
pub enum ClusterCommand {
    /// The cluster id, the controller and the brokers with their addresses and racks
    Info,
    /// Takes a broker that was shut down for good out of the cluster (Kafka's `kafka-cluster.sh
    /// unregister`): no longer listed nor given new replicas; a broker that does not vote also
    /// leaves the metadata quorum. Reassign its replicas first: they stay offline
    Unregister {
        /// The broker's node.id
        #[arg(long)]
        id: i32,
    },
}

/// Metadata v12 from a bootstrap broker: every topic (`None`), the named ones, or, with an empty
/// list, only the brokers.
pub fn metadata(conn: &Connection, topics: Option<&[String]>) -> Result<MetadataResponse, Failure> {
    let mut request = MetadataRequest::default();
    request.topics = topics.map(|names| {
        names
            .iter()
            .map(|name| {
                let mut topic = MetadataRequestTopic::default();
                topic.name = Some(TopicName(StrBytes::from_string(name.clone())));
                topic
            })
            .collect()
    });
    request.allow_auto_topic_creation = false;
    conn.bootstrap()?.call(12, &request)
}

pub fn run(command: ClusterCommand, conn: &Connection) -> Outcome {
    match command {
        ClusterCommand::Unregister { id } => {
            let mut request = UnregisterBrokerRequest::default();
            request.broker_id = BrokerId(id);
            let answer = conn.bootstrap()?.call(0, &request)?;
            if answer.error_code != 0 {
                return Err(Failure::Failed(format!(
                    "unregistering broker {id}: {}: {}",
                    super::error_name(answer.error_code),
                    answer.error_message.as_deref().unwrap_or("")
                )));
            }
            match conn.json {
                true => print_json(&json!({ "unregistered": id })),
                false => println!("broker {id} unregistered"),
            }
            Ok(())
        }
        ClusterCommand::Info => {
            let found = metadata(conn, Some(&[]))?;
            let cluster_id = found.cluster_id.as_deref().unwrap_or_default().to_string();
            let controller = found.controller_id.0;
            let mut brokers = found.brokers.clone();
            brokers.sort_by_key(|b| b.node_id.0);
            if conn.json {
                let brokers: Vec<_> = brokers
                    .iter()
                    .map(|b| {
                        json!({
                            "id": b.node_id.0,
                            "host": b.host.as_str(),
                            "port": b.port,
                            "rack": b.rack.as_deref(),
                            "controller": b.node_id.0 == controller,
                        })
                    })
                    .collect();
                print_json(&json!({
                    "cluster_id": cluster_id,
                    "controller": controller,
                    "brokers": brokers,
                }));
                return Ok(());
            }
            println!("CLUSTER     {cluster_id}");
            println!("CONTROLLER  {controller}");
            println!();
            let mut table = Table::new(&["ID", "HOST", "PORT", "RACK"]);
            for b in &brokers {
                let star = if b.node_id.0 == controller { "*" } else { "" };
                table.row(vec![
                    format!("{}{star}", b.node_id.0),
                    b.host.to_string(),
                    b.port.to_string(),
                    b.rack.as_deref().unwrap_or("-").to_string(),
                ]);
            }
            table.print();
            Ok(())
        }
    }
}

/// A Metadata topic's name ("" when the answer has none).
pub fn topic_name(
    topic: &kafka_protocol::messages::metadata_response::MetadataResponseTopic,
) -> String {
    topic
        .name
        .as_ref()
        .map(|n| n.0.to_string())
        .unwrap_or_default()
}

/// The named topics of a Metadata answer, each with its name, or the first one that is refused.
pub fn existing(
    found: &MetadataResponse,
) -> Result<Vec<(String, &MetadataResponseTopic)>, Failure> {
    found
        .topics
        .iter()
        .map(|topic| {
            let name = topic_name(topic);
            match topic.error_code {
                0 => Ok((name, topic)),
                code => Err(Failure::Failed(format!(
                    "topic {name}: {}",
                    super::error_name(code)
                ))),
            }
        })
        .collect()
}
