//! SaslHandshake and SaslAuthenticate (KIP-43, KIP-152): PLAIN and SCRAM-SHA-256/512 against
//! the users' SCRAM credentials in the cluster metadata; and the SCRAM credentials' own admin
//! APIs, DescribeUserScramCredentials and AlterUserScramCredentials (KIP-554).
//!
//! The connection (`server::auth::Conn`) holds the exchange's state; a SASL listener's
//! connection sends these one at a time until it has authenticated (`connection.rs` waits for
//! each answer before it reads the next request).

use std::collections::BTreeSet;
use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};

use super::{str_bytes, Answer, Api, Request};
use crate::cluster::Change;
use crate::io;
use crate::protocol::ResponseError as E;
use crate::security::acl::Operation;
use crate::security::scram::{self, Credential, Mechanism, ServerExchange, Step};
use crate::server::auth::SaslState;
use crate::server::authz::Authz;
use crate::server::controller::Refusal;
use crate::server::metrics::Attempt;
use crate::server::Shard;

// Version 0 of SaslHandshake sends the tokens unframed after it; every client that matters
// uses version 1 and SaslAuthenticate.
api!(HANDSHAKE, SaslHandshake, 1, 1, handshake);
api!(AUTHENTICATE, SaslAuthenticate, 0, 2, authenticate);
api!(
    DESCRIBE_SCRAM,
    DescribeUserScramCredentials,
    0,
    0,
    describe_scram
);
api!(ALTER_SCRAM, AlterUserScramCredentials, 0, 0, alter_scram);

async fn handshake(shard: Rc<Shard>, request: Request) -> Answer {
    let body: SaslHandshakeRequest = request.decode("SaslHandshakeRequest")?;
    let conn = &request.conn;
    let mechanisms = &conn.listener.mechanisms;
    let mut response = SaslHandshakeResponse::default();
    response.mechanisms = mechanisms.iter().map(|m| str_bytes(m.as_str())).collect();
    let chosen = body.mechanism.as_str();
    let state = conn.sasl().take();
    let state = match state {
        // An authenticated session re-authenticates (KIP-368), with the mechanism it used.
        None if conn.listener.protocol.sasl() && conn.mechanism().is_some() => {
            match conn.begin_reauthentication(chosen) {
                true => conn.sasl().take(),
                false => {
                    let used = conn.mechanism().unwrap_or_default();
                    response.error_code = E::UnsupportedSaslMechanism.code();
                    response.mechanisms = vec![str_bytes(used)];
                    shard.metrics.authentication(Attempt::Again, false);
                    conn.fail(
                        chosen,
                        None,
                        &format_args!("re-authentication must use the session's mechanism {used}"),
                    );
                    return answer_failed(&request, &response).await;
                }
            }
        }
        state => state,
    };
    match state {
        Some(SaslState::Handshake) if mechanisms.iter().any(|m| m == chosen) => {
            *conn.sasl() = Some(match Mechanism::from_name(chosen) {
                Some(m) => SaslState::Scram(ServerExchange::new(m)),
                None => SaslState::Plain,
            });
        }
        Some(SaslState::Handshake) => {
            response.error_code = E::UnsupportedSaslMechanism.code();
            shard.metrics.authentication(Attempt::First, false);
            conn.fail(
                chosen,
                None,
                &"the mechanism is not enabled on this listener",
            );
        }
        other => {
            *conn.sasl() = other;
            response.error_code = E::IllegalSaslState.code();
        }
    }
    answer_failed(&request, &response).await
}

async fn authenticate(shard: Rc<Shard>, request: Request) -> Answer {
    let body: SaslAuthenticateRequest = request.decode("SaslAuthenticateRequest")?;
    let conn = request.conn.clone();
    let mut response = SaslAuthenticateResponse::default();
    let again = conn.reauthenticating();
    let state = conn.sasl().take();
    let outcome: Result<Option<Bytes>, (&str, Option<String>, String)> = match state {
        Some(SaslState::Plain) => match scram::parse_plain(&body.auth_bytes) {
            Err(e) => Err(("PLAIN", None, e.to_string())),
            Ok((user, password)) => {
                let (user, password) = (user.to_string(), password.to_string());
                let matches = super::super::auth::password_matches(&shard, &user, password).await;
                match matches {
                    true => match conn.authenticated("PLAIN", &user) {
                        Ok(()) => Ok(None),
                        Err(e) => Err(("PLAIN", Some(user), e)),
                    },
                    false => Err(("PLAIN", Some(user), "invalid credentials".into())),
                }
            }
        },
        Some(SaslState::Scram(mut exchange)) => {
            let mechanism = exchange
                .mechanism()
                .expect("a SCRAM state has its mechanism");
            let image = shard.image();
            let mut user_named = exchange.user().map(str::to_string);
            let step = exchange.step(&body.auth_bytes, |user| {
                user_named = Some(user.to_string());
                image.scram.get(user)?.get(&mechanism).cloned()
            });
            match step {
                Ok(Step::Challenge(challenge)) => {
                    *conn.sasl() = Some(SaslState::Scram(exchange));
                    Ok(Some(challenge.into()))
                }
                Ok(Step::Authenticated { user, last }) => {
                    match conn.authenticated(mechanism.name(), &user) {
                        Ok(()) => Ok(Some(last.into())),
                        Err(e) => Err((mechanism.name(), Some(user), e)),
                    }
                }
                Err(e) => Err((mechanism.name(), user_named, e.to_string())),
            }
        }
        other => {
            *conn.sasl() = other;
            response.error_code = E::IllegalSaslState.code();
            response.error_message = Some(str_bytes(
                "SaslAuthenticate before SaslHandshake, or after authentication",
            ));
            return request.answer(&response);
        }
    };
    let attempt = match again {
        true => Attempt::Again,
        false => Attempt::First,
    };
    let count = |succeeded| shard.metrics.authentication(attempt, succeeded);
    match outcome {
        Ok(bytes) => {
            // Done (not a SCRAM challenge): counted, and the session's lifetime told.
            if !conn.authenticating() {
                count(true);
                tracing::debug!(principal = %conn.principal(), again, "authenticated");
                response.session_lifetime_ms = conn.session_lifetime_ms();
            }
            response.auth_bytes = bytes.unwrap_or_default();
        }
        Err((mechanism, user, reason)) => {
            count(false);
            conn.fail(mechanism, user.as_deref(), &reason);
            response.error_code = E::SaslAuthenticationFailed.code();
            response.error_message = Some(str_bytes(format!(
                "Authentication failed during authentication due to invalid credentials with \
                 SASL mechanism {mechanism}"
            )));
        }
    }
    answer_failed(&request, &response).await
}

/// The answer, once `connection.failed.authentication.delay.ms` has passed where the
/// connection failed to authenticate (it closes after).
async fn answer_failed<R: kafka_protocol::protocol::Encodable>(
    request: &Request,
    response: &R,
) -> Answer {
    if request.conn.failed() {
        io::sleep(request.conn.listener.failure_delay).await;
    }
    request.answer(response)
}

async fn describe_scram(shard: Rc<Shard>, request: Request) -> Answer {
    let body: DescribeUserScramCredentialsRequest =
        request.decode("DescribeUserScramCredentialsRequest")?;
    let image = shard.image();
    let mut response = DescribeUserScramCredentialsResponse::default();
    // DESCRIBE on the cluster.
    if !Authz::of(&shard, &request).cluster(Operation::Describe) {
        response.error_code = E::ClusterAuthorizationFailed.code();
        return request.answer(&response);
    }
    let users: Vec<String> = match body.users {
        None => image.scram.keys().cloned().collect(),
        Some(users) => users.iter().map(|u| u.name.to_string()).collect(),
    };
    let mut seen = BTreeSet::new();
    let twice: BTreeSet<&String> = users.iter().filter(|u| !seen.insert(*u)).collect();
    for user in users.iter().collect::<BTreeSet<_>>() {
        let mut result = DescribeUserScramCredentialsResult::default();
        result.user = str_bytes(user.as_str());
        if twice.contains(user) {
            result.error_code = E::DuplicateResource.code();
            result.error_message = Some(str_bytes(format!("user `{user}` is named twice")));
        } else if let Some(credentials) = image.scram.get(user) {
            for (mechanism, credential) in credentials {
                let mut info = CredentialInfo::default();
                info.mechanism = mechanism.kafka_type();
                info.iterations = credential.iterations as i32;
                result.credential_infos.push(info);
            }
        } else {
            result.error_code = E::ResourceNotFound.code();
            result.error_message = Some(str_bytes(format!(
                "Attempt to describe a user credential that does not exist: {user}"
            )));
        }
        response.results.push(result);
    }
    request.answer(&response)
}

async fn alter_scram(shard: Rc<Shard>, request: Request) -> Answer {
    let body: AlterUserScramCredentialsRequest =
        request.decode("AlterUserScramCredentialsRequest")?;
    // ALTER on the cluster: every user named is refused without it.
    let allowed = Authz::of(&shard, &request).cluster(Operation::Alter);
    // Each user's changes, in order: deletions, then upsertions.
    let mut changes: Vec<(String, Result<Change, Refusal>)> = Vec::new();
    let mut named = BTreeSet::new();
    let mut twice = BTreeSet::new();
    for deletion in &body.deletions {
        let user = deletion.name.to_string();
        if !named.insert((user.clone(), deletion.mechanism)) {
            twice.insert(user.clone());
        }
        let change = mechanism_of(deletion.mechanism).map(|mechanism| Change::SetScramCredential {
            user: user.clone(),
            mechanism,
            credential: None,
        });
        changes.push((user, change));
    }
    for upsertion in &body.upsertions {
        let user = upsertion.name.to_string();
        if !named.insert((user.clone(), upsertion.mechanism)) {
            twice.insert(user.clone());
        }
        let change = mechanism_of(upsertion.mechanism).and_then(|mechanism| {
            let iterations = u32::try_from(upsertion.iterations).unwrap_or(0);
            if upsertion.salt.is_empty() || upsertion.salted_password.is_empty() {
                return Err(Refusal::new(
                    E::UnacceptableCredential,
                    "the salt and the salted password must not be empty",
                ));
            }
            let credential = Credential::from_salted(
                mechanism,
                &upsertion.salted_password,
                upsertion.salt.to_vec(),
                iterations,
            );
            Ok(Change::SetScramCredential {
                user: user.clone(),
                mechanism,
                credential: Some(credential),
            })
        });
        changes.push((user, change));
    }
    let mut outcomes: Vec<(String, Option<Refusal>)> = Vec::new();
    for (user, change) in changes {
        let index = match outcomes.iter().position(|(u, _)| *u == user) {
            Some(index) => index,
            None => {
                outcomes.push((user.clone(), None));
                outcomes.len() - 1
            }
        };
        if outcomes[index].1.is_some() {
            continue;
        }
        let refused = if !allowed {
            Some(Refusal::new(
                E::ClusterAuthorizationFailed,
                "not authorized to alter users",
            ))
        } else if twice.contains(&user) {
            Some(Refusal::new(
                E::DuplicateResource,
                format!("a mechanism of user `{user}` is named twice"),
            ))
        } else {
            match change {
                Err(refusal) => Some(refusal),
                Ok(change) => shard.change(change, false).await.err().map(Refusal::from),
            }
        };
        outcomes[index].1 = refused;
    }
    let mut response = AlterUserScramCredentialsResponse::default();
    for (user, refused) in outcomes {
        let mut result = AlterUserScramCredentialsResult::default();
        result.user = str_bytes(user);
        if let Some(refusal) = refused {
            result.error_code = refusal.code;
            result.error_message = Some(str_bytes(refusal.message));
        }
        response.results.push(result);
    }
    request.answer(&response)
}

fn mechanism_of(kind: i8) -> Result<Mechanism, Refusal> {
    Mechanism::from_kafka_type(kind).ok_or_else(|| {
        Refusal::new(
            E::UnsupportedSaslMechanism,
            format!("SCRAM mechanism type {kind} is not SCRAM-SHA-256 (1) or SCRAM-SHA-512 (2)"),
        )
    })
}
