//! DescribeConfigs v0-v4, AlterConfigs v0-v2 and IncrementalAlterConfigs v0-v1 for topics and
//! this broker. Changes go through the controller and take effect on every shard and partition at
//! once. Broker configs changed at runtime (metadata::DYNAMIC_BROKER_KEYS, the `log.*` defaults
//! among them) override the config file and `--set` and survive restarts; the others (listeners,
//! log.dirs, ...) are refused with a message that says to restart.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{
    alter_configs_response::AlterConfigsResourceResponse, AlterConfigsRequest,
    AlterConfigsResponse, ApiKey, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};

use super::{str_bytes, Answer, Api, Request};
use crate::cluster::Change;
use crate::config::{topic_effective, ConfigSource, Key, Kind, BROKER_KEYS, TOPIC_KEYS};
use crate::protocol::ResponseError as E;
use crate::security::acl::Operation;
use crate::server::authz::Authz;
use crate::server::controller::Refusal;
use crate::server::Shard;

pub const DESCRIBE: Api = Api {
    key: ApiKey::DescribeConfigs,
    min_version: 0,
    max_version: 4,
    handle: |shard, request| Box::pin(describe(shard, request)),
};

pub const ALTER: Api = Api {
    key: ApiKey::AlterConfigs,
    min_version: 0,
    max_version: 2,
    handle: |shard, request| Box::pin(alter(shard, request)),
};

pub const INCREMENTAL_ALTER: Api = Api {
    key: ApiKey::IncrementalAlterConfigs,
    min_version: 0,
    max_version: 1,
    handle: |shard, request| Box::pin(incremental_alter(shard, request)),
};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

/// DescribeConfigs' config_type codes.
fn config_type(kind: Kind) -> i8 {
    match kind {
        Kind::Bool => 1,
        Kind::Text | Kind::Enum(_) | Kind::Any => 2,
        Kind::Int { max, .. } if max <= i32::MAX as i64 => 3,
        Kind::Int { .. } => 5,
        Kind::Double { .. } => 6,
        Kind::CleanupPolicy | Kind::Listeners { .. } => 7,
    }
}

fn entry(
    key: &Key,
    value: Option<String>,
    source: ConfigSource,
    version: i16,
) -> DescribeConfigsResourceResult {
    let mut c = DescribeConfigsResourceResult::default();
    c.name = str_bytes(key.name);
    c.is_sensitive = crate::config::is_sensitive(key.name);
    c.value = value.filter(|_| !c.is_sensitive).map(str_bytes);
    c.read_only = false;
    if version == 0 {
        c.is_default = source == ConfigSource::Default;
    } else {
        c.config_source = source.kafka_code();
    }
    if version >= 3 {
        c.config_type = match c.is_sensitive {
            true => 9, // PASSWORD
            false => config_type(key.kind),
        };
        c.documentation = Some(str_bytes(key.doc));
    }
    c
}

async fn describe(shard: Rc<Shard>, request: Request) -> Answer {
    let body: DescribeConfigsRequest = request.decode("DescribeConfigsRequest")?;
    let mut response = DescribeConfigsResponse::default();
    let authz = Authz::of(&shard, &request);
    for resource in body.resources {
        let mut result = DescribeConfigsResult::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name.clone();
        let wanted = |name: &str| {
            resource
                .configuration_keys
                .as_ref()
                .is_none_or(|keys| keys.iter().any(|k| k.as_str() == name))
        };
        let name = resource.resource_name.to_string();
        // DESCRIBE_CONFIGS on the topic, or on the cluster for a broker.
        if let Err(refusal) = may(
            &authz,
            Operation::DescribeConfigs,
            resource.resource_type,
            &name,
        ) {
            result.error_code = refusal.code;
            result.error_message = Some(str_bytes(refusal.message));
            response.results.push(result);
            continue;
        }
        match resource.resource_type {
            RESOURCE_TOPIC => match shard.topic(&name) {
                Some(meta) => {
                    let effective = topic_effective(&shard.broker(), &meta.config_values());
                    for (key_name, value, source) in effective {
                        let key = TOPIC_KEYS
                            .iter()
                            .find(|k| k.name == key_name)
                            .expect("declared");
                        if wanted(key_name) {
                            // A topic key always has a value: clients write back what they
                            // read, and librdkafka refuses a null.
                            result
                                .configs
                                .push(entry(key, Some(value), source, request.version));
                        }
                    }
                }
                None => {
                    result.error_code = E::UnknownTopicOrPartition.code();
                    result.error_message =
                        Some(str_bytes(format!("topic `{name}` does not exist")));
                }
            },
            RESOURCE_BROKER if name.is_empty() || name == shard.node_id.to_string() => {
                for key in BROKER_KEYS.iter().filter(|k| wanted(k.name)) {
                    let source = if shard.image().broker_configs.contains_key(key.name) {
                        ConfigSource::Dynamic
                    } else if shard.static_broker.is_set(key.name) {
                        ConfigSource::Broker
                    } else {
                        ConfigSource::Default
                    };
                    let value = shard.broker().get(key.name).to_string();
                    // A key with no default that Sluice does not use is null, as Kafka says.
                    let value = (key.effect || !value.is_empty()).then_some(value);
                    result
                        .configs
                        .push(entry(key, value, source, request.version));
                }
            }
            RESOURCE_BROKER => {
                result.error_code = E::InvalidRequest.code();
                result.error_message = Some(str_bytes(format!("this is broker {}", shard.node_id)));
            }
            other => {
                result.error_code = E::InvalidRequest.code();
                result.error_message =
                    Some(str_bytes(format!("resource type {other} is not served")));
            }
        }
        response.results.push(result);
    }
    request.answer(&response)
}

/// Whether the principal may do `operation` on a topic's configs, or a broker's (the
/// cluster's).
fn may(authz: &Authz, operation: Operation, resource_type: i8, name: &str) -> Result<(), Refusal> {
    match resource_type {
        RESOURCE_TOPIC if !authz.topic(operation, name) => Err(Refusal::new(
            E::TopicAuthorizationFailed,
            format!("not authorized for {} on topic `{name}`", operation.name()),
        )),
        RESOURCE_BROKER if !authz.cluster(operation) => Err(Refusal::new(
            E::ClusterAuthorizationFailed,
            format!("not authorized for {} on the cluster", operation.name()),
        )),
        _ => Ok(()),
    }
}

/// Validates and applies new overrides for a topic (or a broker: refused), where the
/// principal may alter them.
async fn set_configs(
    shard: &Shard,
    authz: &Authz,
    resource_type: i8,
    name: &str,
    edit: impl FnOnce(&mut BTreeMap<String, String>) -> Result<(), Refusal>,
    validate_only: bool,
) -> Result<(), Refusal> {
    may(authz, Operation::AlterConfigs, resource_type, name)?;
    match resource_type {
        RESOURCE_TOPIC => {
            let meta = shard.topic(name).ok_or_else(|| {
                Refusal::new(
                    E::UnknownTopicOrPartition,
                    format!("topic `{name}` does not exist"),
                )
            })?;
            let mut configs = meta.configs.clone();
            edit(&mut configs)?;
            let change = Change::SetTopicConfigs {
                name: name.to_string(),
                configs,
            };
            let changed = shard.change(change, validate_only).await;
            changed.map(|_| ()).map_err(Refusal::from)
        }
        RESOURCE_BROKER if name.is_empty() || name == shard.node_id.to_string() => {
            let before = shard.image().broker_configs.clone();
            let mut configs = before.clone();
            edit(&mut configs)?;
            // Dynamic configs live in the cluster metadata in the clear: no passwords there.
            if let Some((key, _)) = configs.iter().find(|(key, value)| {
                crate::config::is_sensitive(key) && before.get(*key) != Some(*value)
            }) {
                return Err(Refusal::new(
                    E::InvalidConfig,
                    format!(
                        "`{key}` is a password: set it in the broker's config file (dynamic \
                         configs are kept unencrypted in the cluster metadata)"
                    ),
                ));
            }
            let change = Change::SetBrokerConfigs { configs };
            let changed = shard.change(change, validate_only).await;
            changed.map(|_| ()).map_err(Refusal::from)
        }
        RESOURCE_BROKER => Err(Refusal::new(
            E::InvalidRequest,
            format!("this is broker {}", shard.node_id),
        )),
        other => Err(Refusal::new(
            E::InvalidRequest,
            format!("resource type {other} is not served"),
        )),
    }
}

async fn alter(shard: Rc<Shard>, request: Request) -> Answer {
    let body: AlterConfigsRequest = request.decode("AlterConfigsRequest")?;
    let mut response = AlterConfigsResponse::default();
    let authz = Authz::of(&shard, &request);
    for resource in body.resources {
        let name = resource.resource_name.to_string();
        // AlterConfigs replaces the whole set of overrides.
        let replacement: BTreeMap<String, String> = resource
            .configs
            .iter()
            .filter_map(|c| {
                c.value
                    .as_ref()
                    .map(|v| (c.name.to_string(), v.to_string()))
            })
            .collect();
        let outcome = set_configs(
            &shard,
            &authz,
            resource.resource_type,
            &name,
            |configs| {
                *configs = replacement;
                Ok(())
            },
            body.validate_only,
        )
        .await;
        tracing::debug!(resource = %name, ?outcome, "AlterConfigs");
        let mut result = AlterConfigsResourceResponse::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name;
        if let Err(e) = outcome {
            result.error_code = e.code;
            result.error_message = Some(str_bytes(e.message));
        }
        response.responses.push(result);
    }
    request.answer(&response)
}

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

async fn incremental_alter(shard: Rc<Shard>, request: Request) -> Answer {
    let body: IncrementalAlterConfigsRequest = request.decode("IncrementalAlterConfigsRequest")?;
    let mut response = IncrementalAlterConfigsResponse::default();
    let authz = Authz::of(&shard, &request);
    for resource in body.resources {
        let name = resource.resource_name.to_string();
        let ops: Vec<(String, i8, Option<String>)> = resource
            .configs
            .iter()
            .map(|c| {
                (
                    c.name.to_string(),
                    c.config_operation,
                    c.value.as_ref().map(|v| v.to_string()),
                )
            })
            .collect();
        let broker = shard.broker();
        let static_broker = shard.static_broker.clone();
        let resource_type = resource.resource_type;
        let edit = move |configs: &mut BTreeMap<String, String>| {
            for (key, op, value) in ops {
                let list = |configs: &BTreeMap<String, String>| -> Vec<String> {
                    let current = configs.get(&key).cloned().unwrap_or_else(|| {
                        if resource_type == RESOURCE_BROKER {
                            return static_broker.get_or_default(&key);
                        }
                        let meta = crate::cluster::TopicMeta {
                            id: uuid::Uuid::nil(),
                            partitions: 1,
                            configs: configs.clone(),
                            assignments: Default::default(),
                        };
                        topic_effective(&broker, &meta.config_values())
                            .into_iter()
                            .find(|(k, _, _)| *k == key)
                            .map(|(_, v, _)| v)
                            .unwrap_or_default()
                    });
                    current
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                };
                match (op, value) {
                    (OP_SET, Some(value)) => {
                        configs.insert(key, value);
                    }
                    (OP_DELETE, _) => {
                        configs.remove(&key);
                    }
                    (OP_APPEND, Some(value)) => {
                        let mut items = list(configs);
                        for v in value.split(',').map(str::trim) {
                            if !items.iter().any(|i| i == v) {
                                items.push(v.to_string());
                            }
                        }
                        configs.insert(key, items.join(","));
                    }
                    (OP_SUBTRACT, Some(value)) => {
                        let remove: Vec<&str> = value.split(',').map(str::trim).collect();
                        let items: Vec<String> = list(configs)
                            .into_iter()
                            .filter(|i| !remove.contains(&i.as_str()))
                            .collect();
                        configs.insert(key, items.join(","));
                    }
                    (op, _) => {
                        return Err(Refusal::new(
                            E::InvalidRequest,
                            format!("config operation {op} on `{key}` needs a value or is unknown"),
                        ))
                    }
                }
            }
            Ok(())
        };
        let outcome = set_configs(
            &shard,
            &authz,
            resource.resource_type,
            &name,
            edit,
            body.validate_only,
        )
        .await;
        let mut result = kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name;
        if let Err(e) = outcome {
            result.error_code = e.code;
            result.error_message = Some(str_bytes(e.message));
        }
        response.responses.push(result);
    }
    request.answer(&response)
}
