//! Where the node listens: its client listeners (each with its security protocol, its port
//! reserved until every shard listens on it), what each advertises, and which one the brokers
//! use between them (`inter.broker.listener.name`).

use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::OwnedFd;

use super::bootstrap::{io_error, ServeError};
use crate::cluster::Endpoint;
use crate::config::Values;
use crate::io;
use crate::security::peer::PeerSecurity;
use crate::security::{self, ListenerSpec};

/// Where the broker listens (its ports reserved until every shard listens on them) and what it
/// advertises to clients: its first client listener's address, and each listener's by name.
pub(super) struct Addresses {
    pub(super) reserved: Vec<OwnedFd>,
    /// The client listeners, each with the address it is bound to.
    pub(super) listeners: Vec<(ListenerSpec, SocketAddr)>,
    pub(super) listen: SocketAddr,
    /// The inter-broker listener's (`inter.broker.listener.name`) advertised address, and its
    /// place in `listeners`.
    pub(super) advertised_host: String,
    pub(super) advertised_port: u16,
    pub(super) inter_broker: usize,
    pub(super) endpoints: Vec<Endpoint>,
}

impl Addresses {
    /// A controller-only node's: no client listener (its controller listener names it).
    pub(super) fn controller_only(setup: &super::quorum::Setup) -> Addresses {
        let listen = setup
            .listen
            .expect("a controller has a controller listener");
        Addresses {
            reserved: Vec::new(),
            listeners: Vec::new(),
            listen,
            advertised_host: listen.ip().to_string(),
            advertised_port: listen.port(),
            inter_broker: 0,
            endpoints: Vec::new(),
        }
    }

    pub(super) fn of(broker: &Values) -> Result<Addresses, ServeError> {
        // The listeners for clients (not the one for the other controllers).
        let specs = security::listeners(broker, broker.get("listeners"), |name| {
            !super::quorum::is_controller_listener(broker, name)
        })
        .map_err(ServeError::Config)?;
        if specs.is_empty() {
            return Err(ServeError::Config(
                "listeners: no listener for clients".to_string(),
            ));
        }
        let advertised = security::listeners(broker, broker.get("advertised.listeners"), |_| true)
            .map_err(|e| ServeError::Config(format!("advertised.{e}")))?;
        let inter_broker = broker.get("inter.broker.listener.name").trim();
        let inter_broker = match inter_broker {
            "" => specs[0].name.clone(),
            name if specs.iter().any(|s| s.name == name) => name.to_string(),
            name => {
                return Err(ServeError::Config(format!(
                    "inter.broker.listener.name: `{name}` is not a client listener of `listeners`"
                )))
            }
        };
        let mut addresses = Addresses {
            reserved: Vec::new(),
            listeners: Vec::new(),
            listen: SocketAddr::from(([0, 0, 0, 0], 0)),
            advertised_host: String::new(),
            advertised_port: 0,
            inter_broker: 0,
            endpoints: Vec::new(),
        };
        for spec in specs {
            let host = spec.host.as_str();
            let listen = (host, spec.port)
                .to_socket_addrs()
                .map_err(io_error(format!("resolving {host}")))?
                .next()
                .ok_or_else(|| ServeError::Config(format!("listeners: `{host}` has no address")))?;
            let (reserved, listen) =
                io::net::reserve_port(listen).map_err(io_error(format!("binding {listen}")))?;
            let endpoint = match advertised.iter().find(|a| a.name == spec.name) {
                Some(a) => Endpoint {
                    name: spec.name.clone(),
                    host: a.host.clone(),
                    port: a.port,
                },
                None => Endpoint {
                    name: spec.name.clone(),
                    host: match listen.ip().is_unspecified() {
                        true => "localhost".to_string(),
                        false => listen.ip().to_string(),
                    },
                    port: listen.port(),
                },
            };
            if addresses.listeners.is_empty() {
                addresses.listen = listen;
            }
            if spec.name == inter_broker {
                addresses.advertised_host = endpoint.host.clone();
                addresses.advertised_port = endpoint.port;
                addresses.inter_broker = addresses.listeners.len();
            }
            addresses.reserved.push(reserved);
            addresses.listeners.push((spec, listen));
            addresses.endpoints.push(endpoint);
        }
        Ok(addresses)
    }
}

/// How this broker secures its connections to the other brokers (its inter-broker listener's
/// protocol, `security::peer`). The controller listener's TLS is the quorum's
/// (`server::quorum::setup`).
pub(super) fn peer_security(
    broker: &Values,
    addresses: &Addresses,
    cluster: bool,
) -> Result<PeerSecurity, ServeError> {
    // A node alone never connects to another: what it lacks for that is no reason to stop.
    match addresses.listeners.get(addresses.inter_broker) {
        Some((spec, _)) if cluster => {
            PeerSecurity::of(broker, &spec.name, spec.protocol).map_err(ServeError::Config)
        }
        _ => Ok(PeerSecurity::default()),
    }
}
