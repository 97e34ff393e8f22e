//! Security under Kafka's names: each listener's protocol (`PLAINTEXT`, `SSL`,
//! `SASL_PLAINTEXT`, `SASL_SSL`, from `listener.security.protocol.map`), TLS (`tls`), SASL's
//! PLAIN and SCRAM mechanisms and the stored SCRAM credentials (`scram`). Kafka's error codes
//! for them are in `server/sasl.rs`.

pub mod acl;
pub mod peer;
pub mod principal;
pub mod scram;
pub mod tls;
pub mod tls_client;

use std::collections::BTreeMap;

use crate::config::{parse_listener, Values};

/// A listener's security protocol, as Kafka names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl Protocol {
    pub fn parse(name: &str) -> Option<Protocol> {
        match name.trim() {
            "PLAINTEXT" => Some(Protocol::Plaintext),
            "SSL" => Some(Protocol::Ssl),
            "SASL_PLAINTEXT" => Some(Protocol::SaslPlaintext),
            "SASL_SSL" => Some(Protocol::SaslSsl),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Plaintext => "PLAINTEXT",
            Protocol::Ssl => "SSL",
            Protocol::SaslPlaintext => "SASL_PLAINTEXT",
            Protocol::SaslSsl => "SASL_SSL",
        }
    }

    pub fn tls(self) -> bool {
        matches!(self, Protocol::Ssl | Protocol::SaslSsl)
    }

    pub fn sasl(self) -> bool {
        matches!(self, Protocol::SaslPlaintext | Protocol::SaslSsl)
    }
}

/// The principal of a connection that has not authenticated (Kafka's `User:ANONYMOUS`).
pub const ANONYMOUS: &str = "User:ANONYMOUS";

/// `listener.security.protocol.map` as a map from listener name to protocol. Kafka's default
/// maps each protocol's own name to itself (and KRaft's `CONTROLLER` to PLAINTEXT); a map that
/// is set replaces it.
pub fn protocol_map(broker: &Values) -> Result<BTreeMap<String, Protocol>, String> {
    let text = broker.get("listener.security.protocol.map").trim();
    let mut map = BTreeMap::new();
    if text.is_empty() {
        for protocol in [
            Protocol::Plaintext,
            Protocol::Ssl,
            Protocol::SaslPlaintext,
            Protocol::SaslSsl,
        ] {
            map.insert(protocol.name().to_string(), protocol);
        }
        map.insert("CONTROLLER".to_string(), Protocol::Plaintext);
        return Ok(map);
    }
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, protocol) = entry.split_once(':').ok_or_else(|| {
            format!("listener.security.protocol.map: `{entry}` is not NAME:PROTOCOL")
        })?;
        let protocol = Protocol::parse(protocol).ok_or_else(|| {
            format!(
                "listener.security.protocol.map: `{protocol}` is not PLAINTEXT, SSL, \
                 SASL_PLAINTEXT or SASL_SSL"
            )
        })?;
        map.insert(name.trim().to_string(), protocol);
    }
    Ok(map)
}

/// One entry of `listeners`, with its protocol.
#[derive(Clone, Debug, PartialEq)]
pub struct ListenerSpec {
    pub name: String,
    pub protocol: Protocol,
    pub host: String,
    pub port: u16,
}

/// The listeners named in `text` (a `listeners` value) that `keep` accepts, with their
/// protocols; a name the map does not know is an error, and so is a name used twice.
pub fn listeners(
    broker: &Values,
    text: &str,
    keep: impl Fn(&str) -> bool,
) -> Result<Vec<ListenerSpec>, String> {
    let map = protocol_map(broker)?;
    let mut specs: Vec<ListenerSpec> = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, host, port) =
            parse_listener(entry).ok_or_else(|| format!("listeners: bad listener `{entry}`"))?;
        if !keep(name) {
            continue;
        }
        let protocol = *map.get(name).ok_or_else(|| {
            format!(
                "listeners: `{name}` has no protocol in listener.security.protocol.map \
                 (add {name}:PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL)"
            )
        })?;
        if specs.iter().any(|s| s.name == name) {
            return Err(format!("listeners: `{name}` is named twice"));
        }
        specs.push(ListenerSpec {
            name: name.to_string(),
            protocol,
            host: host.to_string(),
            port,
        });
    }
    Ok(specs)
}

/// The authorizer as the broker's config sets it: on where `authorizer.class.name` names one
/// (Kafka's `org.apache.kafka.metadata.authorizer.StandardAuthorizer`, or any name: Sluice has
/// one), `super.users` (`User:a;User:b`), `allow.everyone.if.no.acl.found`.
pub fn authorizer(broker: &Values) -> acl::Authorizer {
    acl::Authorizer {
        enabled: !broker.get("authorizer.class.name").trim().is_empty(),
        super_users: broker
            .get("super.users")
            .split(';')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_string)
            .collect(),
        allow_if_no_acl: broker.bool("allow.everyone.if.no.acl.found"),
    }
}

/// `sasl.enabled.mechanisms`, checked: PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 are served.
pub fn enabled_mechanisms(broker: &Values) -> Result<Vec<String>, String> {
    let mut mechanisms = Vec::new();
    for name in broker
        .get("sasl.enabled.mechanisms")
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        if name != "PLAIN" && scram::Mechanism::from_name(name).is_none() {
            return Err(format!(
                "sasl.enabled.mechanisms: `{name}` is not served (PLAIN, SCRAM-SHA-256, \
                 SCRAM-SHA-512)"
            ));
        }
        mechanisms.push(name.to_string());
    }
    Ok(mechanisms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(pairs: &[(&str, &str)]) -> Values {
        let mut values = Values::new(&crate::config::BROKER_KEYS);
        for (key, value) in pairs {
            values.set(key, value).unwrap();
        }
        values
    }

    #[test]
    fn listeners_take_their_protocol_from_the_map() {
        let defaults = broker(&[]);
        let specs = listeners(
            &defaults,
            "PLAINTEXT://:9092,SASL_SSL://0.0.0.0:9094,CONTROLLER://:9093",
            |name| name != "CONTROLLER",
        )
        .unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[1].protocol, Protocol::SaslSsl);
        assert_eq!(specs[1].port, 9094);
        let mapped = broker(&[(
            "listener.security.protocol.map",
            "INTERNAL:PLAINTEXT,EXTERNAL:SASL_SSL",
        )]);
        let specs = listeners(&mapped, "EXTERNAL://:1,INTERNAL://:2", |_| true).unwrap();
        assert_eq!(specs[0].protocol, Protocol::SaslSsl);
        assert!(listeners(&mapped, "PLAINTEXT://:1", |_| true).is_err());
        assert!(listeners(&defaults, "SSL://:1,SSL://:2", |_| true).is_err());
        let bad = broker(&[("listener.security.protocol.map", "A:TLS")]);
        assert!(listeners(&bad, "A://:1", |_| true).is_err());
    }
}
