//! The accept loop of a shard's listener: admission (`admission.rs`) before a connection is
//! served, and log lines about refusals that cannot flood.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument as _;

use super::{admission, auth, connection, Shard};
use crate::io::{self, Throttled};
use crate::server::metrics::Attempt;

/// How long the accept loop waits before it looks again for room under `max.connections`, or
/// after a failed accept.
const ACCEPT_WAIT_MS: u64 = 10;

/// Accepts connections while `max.connections` has room (at the limit they wait in the
/// listen queue, or, one per shard, accepted and unserved), closing at once one over
/// `max.connections.per.ip`. Refusals and accept failures are logged at most once a second,
/// with how many there were.
pub(super) async fn accept_loop(
    shard: Rc<Shard>,
    listener: io::net::Listener,
    admission: Arc<admission::Admission>,
    named: Rc<auth::Listener>,
) {
    let mut refusals = Throttled::default();
    loop {
        while !admission.has_room() {
            io::sleep(Duration::from_millis(ACCEPT_WAIT_MS)).await;
        }
        let (reader, writer) = match listener.accept().await {
            Ok(halves) => halves,
            Err(e) => {
                refusals.note(|count| tracing::warn!(error = %e, count, "accept failed"));
                io::sleep(Duration::from_millis(ACCEPT_WAIT_MS)).await;
                continue;
            }
        };
        let ip = reader.peer().map(|p| p.ip());
        let mut admitted = admission.admit(ip);
        // Accepted while another shard took the last place: it waits here, unserved (this
        // shard accepts nothing more meanwhile), as the ones still in the listen queue wait.
        while let Err(admission::Refused::Total { .. }) = admitted {
            io::sleep(Duration::from_millis(ACCEPT_WAIT_MS)).await;
            admitted = admission.admit(ip);
        }
        match admitted {
            Ok(admitted) => {
                // Every line about this connection names its peer and, once its first
                // request is read, its client id.
                let span = tracing::error_span!(
                    "conn",
                    peer = %reader.peer().map_or("?".to_string(), |p| p.to_string()),
                    client = tracing::field::Empty
                );
                let connection = serve(shard.clone(), (reader, writer), admitted, named.clone());
                shard.hot.spawn(connection.instrument(span)).detach();
            }
            Err(refused) => {
                let peer = reader.peer();
                let connections = admission.connections();
                refusals.note(|count| {
                    tracing::warn!(?peer, %refused, connections, count, "connection refused")
                });
                writer.shutdown();
            }
        }
    }
}

/// Serves one accepted connection: its TLS handshake first, on a TLS listener.
async fn serve(
    shard: Rc<Shard>,
    halves: (io::net::ReadHalf, io::net::WriteHalf),
    admitted: admission::Admitted,
    listener: Rc<auth::Listener>,
) {
    let peer = halves.0.peer();
    let (reader, writer) = match &listener.tls {
        None => halves,
        Some(tls) => {
            let config = tls.borrow_mut().current();
            match io::net::tls::accept(halves, config, listener.handshake).await {
                Ok(halves) => halves,
                // Closed before it began (a reachability probe, a load balancer's check): not
                // an authentication that failed.
                Err(io::net::tls::HandshakeError::NotStarted) => {
                    tracing::debug!(?peer, listener = %listener.name, "closed before the TLS handshake");
                    drop(admitted);
                    return;
                }
                Err(e) => {
                    shard.metrics.authentication(Attempt::First, false);
                    HANDSHAKE_FAILURES.with(|throttle| {
                        throttle.borrow_mut().note(|count| {
                            tracing::warn!(?peer, listener = %listener.name, error = %e, count, "TLS handshake failed")
                        })
                    });
                    // connection.failed.authentication.delay.ms before the close.
                    io::sleep(listener.failure_delay).await;
                    drop(admitted);
                    return;
                }
            }
        }
    };
    // The certificate's subject, mapped by ssl.principal.mapping.rules: none applying refuses
    // the client, as Kafka does.
    let subject = reader
        .peer_certificate()
        .and_then(|der| crate::security::tls::subject_of(&der));
    let principal = match subject {
        None => None,
        Some(subject) => match listener.principal_rules.apply(&subject) {
            Some(name) => Some(name),
            None => {
                shard.metrics.authentication(Attempt::First, false);
                HANDSHAKE_FAILURES.with(|throttle| {
                    throttle.borrow_mut().note(|count| {
                        tracing::warn!(?peer, listener = %listener.name, %subject, count, "no ssl.principal.mapping.rules rule applies to the client certificate")
                    })
                });
                io::sleep(listener.failure_delay).await;
                drop(admitted);
                return;
            }
        },
    };
    if listener.protocol == crate::security::Protocol::Ssl {
        shard.metrics.authentication(Attempt::First, true);
    }
    let conn = Rc::new(auth::Conn::new(listener, peer, principal));
    connection::serve(shard, reader, writer, admitted, conn).await
}

thread_local! {
    /// This shard's failed TLS handshakes, logged at most once a second.
    static HANDSHAKE_FAILURES: std::cell::RefCell<Throttled> = std::cell::RefCell::new(Throttled::default());
}
