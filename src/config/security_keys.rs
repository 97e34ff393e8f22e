//! The broker keys of security (`security/`): listener protocols, TLS, SASL. Kafka's names,
//! defaults and meanings, but for `ssl.keystore.type` (PEM: Sluice reads no JKS) and
//! `sasl.enabled.mechanisms` (Kafka's default, GSSAPI, is not served).

use super::keys::{broker, int, Kind, I32};
use super::Key;

pub(super) const KEYS: &[Key] = &[
    broker(
        "listener.security.protocol.map",
        Kind::Any,
        "",
        "NAME:PROTOCOL,... for each listener (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL); empty: \
         each protocol's name maps to itself and CONTROLLER to PLAINTEXT",
    ),
    broker(
        "inter.broker.listener.name",
        Kind::Any,
        "",
        "the client listener brokers replicate and send transaction markers over (registered \
         as the broker's address); empty: the first. TLS and SASL on it use the broker's own \
         ssl.* keys and sasl.jaas.config",
    ),
    broker(
        "ssl.keystore.location",
        Kind::Any,
        "",
        "PEM file with the TLS listeners' private key and certificate chain (read again when \
         it changes)",
    ),
    broker("ssl.keystore.type", Kind::Enum(&["PEM"]), "PEM", "PEM only"),
    broker(
        "ssl.keystore.certificate.chain",
        Kind::Any,
        "",
        "the certificate chain in PEM, in-line, where there is no ssl.keystore.location",
    ),
    broker(
        "ssl.keystore.key",
        Kind::Any,
        "",
        "the private key in PEM, in-line, where there is no ssl.keystore.location",
    ),
    broker(
        "ssl.key.password",
        Kind::Any,
        "",
        "the password of the private key (ssl.keystore.location or ssl.keystore.key) where it \
         is encrypted PKCS#8 (ENCRYPTED PRIVATE KEY)",
    ),
    broker(
        "ssl.truststore.location",
        Kind::Any,
        "",
        "PEM file of the CAs client certificates must chain to (for ssl.client.auth)",
    ),
    broker(
        "ssl.client.auth",
        Kind::Enum(&["none", "requested", "required"]),
        "none",
        "whether TLS clients must present a certificate; its subject is their principal",
    ),
    broker(
        "ssl.principal.mapping.rules",
        Kind::Any,
        "DEFAULT",
        "how a client certificate's subject (CN=alice,OU=eng,...) becomes its principal's name: \
         RULE:pattern/replacement/[LU] and DEFAULT, comma-separated, the first that matches \
         the whole subject applies; none: the client is refused",
    ),
    broker(
        "sasl.enabled.mechanisms",
        Kind::Any,
        "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
        "the SASL mechanisms SASL listeners offer; PLAIN checks the password against the \
         user's stored SCRAM credential",
    ),
    broker(
        "authorizer.class.name",
        Kind::Any,
        "",
        "turns ACLs on when set (Kafka's org.apache.kafka.metadata.authorizer.StandardAuthorizer, \
         or any name: Sluice's own authorizer serves it); empty: every client may do anything",
    ),
    broker(
        "super.users",
        Kind::Any,
        "",
        "principals the ACLs do not apply to, `User:admin;User:broker`",
    ),
    broker(
        "allow.everyone.if.no.acl.found",
        Kind::Bool,
        "false",
        "with ACLs on, whether a resource no ACL names is open to everyone",
    ),
    broker(
        "sasl.mechanism.inter.broker.protocol",
        Kind::Any,
        "GSSAPI",
        "the SASL mechanism a broker authenticates with to the others when the inter-broker \
         listener is SASL_PLAINTEXT or SASL_SSL: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (Kafka's \
         default, GSSAPI, is not served)",
    ),
    broker(
        "sasl.jaas.config",
        Kind::Any,
        "",
        "the broker's own credentials on a SASL inter-broker listener, as Kafka writes them: \
         `listener.name.LISTENER.MECHANISM.sasl.jaas.config=org.apache.kafka.common.security.\
         scram.ScramLoginModule required username=\"broker\" password=\"...\";` (username and \
         password are read; PLAIN's user_NAME entries are not: users are SCRAM credentials)",
    ),
    broker(
        "ssl.endpoint.identification.algorithm",
        Kind::Any,
        "https",
        "https: a broker checks that another broker's certificate names the host it connects \
         to; empty: only that it chains to ssl.truststore.location",
    ),
    broker(
        "connections.max.reauth.ms",
        int(0, i64::MAX),
        "0",
        "how long an authenticated SASL session lasts before the client must re-authenticate on \
         its connection (KIP-368); a connection that has not is closed at its next request. 0: \
         for the connection's life",
    ),
    broker(
        "connection.failed.authentication.delay.ms",
        int(0, I32),
        "100",
        "how long the answer to a failed authentication (and the close after a failed TLS \
         handshake) waits, to slow clients guessing passwords; keep it below \
         connections.max.idle.ms",
    ),
    broker(
        "sasl.handshake.timeout.ms",
        int(1, I32),
        "10000",
        "a connection of a TLS or SASL listener that has not finished its handshake and \
         authenticated within this is closed. Sluice's own",
    ),
];
