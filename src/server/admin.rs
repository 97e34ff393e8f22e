//! The admin listener (`admin.listener`, default `127.0.0.1:9644`, Redpanda's port): plain HTTP
//! on the controller shard, for operators and their tools. `GET /metrics` (Prometheus text,
//! see `metrics.rs`), `GET /v1/health` (the process serves), `GET /v1/ready` (storage recovered,
//! metadata loaded and, in a cluster, this node registered: it serves what it leads),
//! `GET /v1/cluster` and `GET /v1/partitions` (JSON), and `GET`/`PUT /v1/log-level` (the log
//! filter in `RUST_LOG`'s syntax, changed at run time).
//!
//! Requests are parsed by `httparse`; one request per connection (`Connection: close`), its head
//! bounded to `HEAD_BYTES_MAX` and `HEAD_TIMEOUT`, so a slow or hostile client costs one task
//! and a few KiB. Nothing here touches the Kafka listeners.
//!
//! With `admin.require.auth`, every request but `/v1/health` and `/v1/ready` (for probes) needs
//! HTTP Basic credentials of a SCRAM user, checked as SASL/PLAIN checks them; with ACLs on, that
//! user needs DESCRIBE on the cluster to read, ALTER to change the log level, and READ on a
//! topic to browse its messages.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;

use super::admission::Admission;
use super::authz::Authz;
use super::metrics::{self, PartitionLog, Scrape, ShardCounts, ShardGauges, ShardGroups};
use super::Shard;
use crate::io;
use crate::model::NodeId;
use crate::security::acl::Operation;

/// The longest request head taken.
const HEAD_BYTES_MAX: usize = 8 << 10;
/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Admin connections served at once; past it new ones wait in the backlog.
const CONNECTIONS_MAX: usize = 64;

/// Serves the admin listener until the shard stops.
pub async fn serve(shard: Rc<Shard>, listener: io::net::Listener, admission: Arc<Admission>) {
    let open = Rc::new(std::cell::Cell::new(0usize));
    loop {
        if shard.is_stopping() {
            return;
        }
        while open.get() >= CONNECTIONS_MAX {
            io::sleep(Duration::from_millis(10)).await;
        }
        match listener.accept().await {
            Ok((read, write)) => {
                open.set(open.get() + 1);
                let (shard, admission, open) = (shard.clone(), admission.clone(), open.clone());
                io::spawn(async move {
                    answer(&shard, &admission, read, write).await;
                    open.set(open.get() - 1);
                })
                .detach();
            }
            Err(e) => {
                crate::throttled!(
                    |count| tracing::warn!(error = %e, count, "admin listener: accept failed")
                );
                io::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// An HTTP answer: status line, content type, body.
struct Reply {
    status: &'static str,
    content_type: &'static str,
    body: String,
}

impl Reply {
    fn text(status: &'static str, body: impl Into<String>) -> Reply {
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }

    fn json(status: &'static str, body: String) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body,
        }
    }

    /// 401, asking for HTTP Basic credentials.
    fn unauthorized(why: &str) -> Reply {
        Reply::text(UNAUTHORIZED, format!("{why}\n"))
    }
}

const UNAUTHORIZED: &str = "401 Unauthorized";

async fn answer(
    shard: &Rc<Shard>,
    admission: &Admission,
    mut read: io::net::ReadHalf,
    mut write: io::net::WriteHalf,
) {
    let reply = match io::net::timeout(HEAD_TIMEOUT, read_request(&mut read)).await {
        None => Reply::text("408 Request Timeout", "the request head took too long\n"),
        Some(Err(reply)) => reply,
        Some(Ok(request)) => {
            let peer = read.peer().map(|p| p.ip().to_string()).unwrap_or_default();
            match authenticate(shard, &request, &peer).await {
                Ok(authz) => route(shard, admission, &request, &authz).await,
                Err(reply) => reply,
            }
        }
    };
    let challenge = match reply.status {
        UNAUTHORIZED => "www-authenticate: Basic realm=\"sluice\", charset=\"UTF-8\"\r\n",
        _ => "",
    };
    let head = format!(
        "HTTP/1.1 {}\r\ncontent-type: {}\r\ncontent-length: {}\r\n{challenge}connection: close\r\n\r\n",
        reply.status,
        reply.content_type,
        reply.body.len()
    );
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(reply.body.as_bytes());
    if write.write_all(&bytes).await.is_ok() {
        let _ = write.flush().await;
    }
    if !reply.status.starts_with('2') {
        // A refused request may have left bytes unread (a head too large): closing on them
        // would reset the connection before the client reads the answer. Take them first.
        let mut sink = [0u8; 4096];
        let drain = async {
            let mut taken = 0;
            while taken < LINGER_BYTES_MAX {
                match read.read_some(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => taken += n,
                }
            }
        };
        let _ = io::net::timeout(LINGER, drain).await;
    }
}

/// How long, and how many bytes, a refused request's unread rest is taken before closing.
const LINGER: Duration = Duration::from_millis(500);
const LINGER_BYTES_MAX: usize = 64 << 10;

/// A request as the routes take it.
struct HttpRequest {
    method: String,
    path: String,
    body: Vec<u8>,
    /// HTTP Basic credentials (user, password), where the request carries them.
    basic: Option<(String, String)>,
}

/// The user and password of an `authorization: Basic ...` header.
fn basic_credentials(value: &[u8]) -> Option<(String, String)> {
    use base64::Engine as _;
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// `admin.require.auth`: the request's credentials checked (a SCRAM user's password, as
/// SASL/PLAIN checks it), and the checks of its user's ACLs; `/v1/health` and `/v1/ready` stay
/// open for probes. Without it, every request is served and no ACL applies.
async fn authenticate(shard: &Shard, request: &HttpRequest, peer: &str) -> Result<Authz, Reply> {
    let path = request.path.split('?').next().unwrap_or_default();
    if !shard.broker().bool("admin.require.auth") || matches!(path, "/v1/health" | "/v1/ready") {
        return Ok(Authz::open());
    }
    let Some((user, password)) = &request.basic else {
        return Err(Reply::unauthorized(
            "admin.require.auth: HTTP Basic credentials of a SCRAM user are needed",
        ));
    };
    if !super::auth::password_matches(shard, user, password.clone()).await {
        crate::throttled!(|count| tracing::warn!(
            peer,
            user,
            count,
            "admin listener: authentication failed"
        ));
        return Err(Reply::unauthorized("invalid credentials"));
    }
    let principal: Rc<str> = format!("User:{user}").into();
    Ok(Authz::as_principal(shard, || (principal, peer.to_string())))
}

/// The longest request body taken (a log filter).
const BODY_BYTES_MAX: usize = 4 << 10;

/// Reads a request (its head, and the body its `content-length` names), or the answer that
/// refuses it.
async fn read_request(read: &mut io::net::ReadHalf) -> Result<HttpRequest, Reply> {
    let mut buf = Vec::with_capacity(1024);
    let (method, path, length, head_len, basic) = loop {
        read_more(read, &mut buf, "the connection closed").await?;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buf) {
            Ok(httparse::Status::Complete(head_len)) => {
                let length = request
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .map(|h| {
                        std::str::from_utf8(h.value)
                            .ok()
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .ok_or_else(|| Reply::text("400 Bad Request", "a bad content-length\n"))
                    })
                    .transpose()?
                    .unwrap_or(0);
                let method = request.method.unwrap_or_default().to_string();
                let path = request.path.unwrap_or_default().to_string();
                let basic = request
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("authorization"))
                    .and_then(|h| basic_credentials(h.value));
                break (method, path, length, head_len, basic);
            }
            Ok(httparse::Status::Partial) if buf.len() < HEAD_BYTES_MAX => continue,
            Ok(httparse::Status::Partial) => {
                return Err(Reply::text(
                    "431 Request Header Fields Too Large",
                    format!("a request head over {HEAD_BYTES_MAX} bytes\n"),
                ))
            }
            Err(e) => return Err(Reply::text("400 Bad Request", format!("{e}\n"))),
        }
    };
    if length > BODY_BYTES_MAX {
        return Err(Reply::text(
            "413 Content Too Large",
            format!("a body over {BODY_BYTES_MAX} bytes\n"),
        ));
    }
    let mut body = buf.split_off(head_len);
    while body.len() < length {
        read_more(read, &mut body, "the body was cut short").await?;
    }
    body.truncate(length);
    Ok(HttpRequest {
        method,
        path,
        body,
        basic,
    })
}

/// Appends what arrives next to `buf`; at the end of the connection, 400 with `closed`.
async fn read_more(
    read: &mut io::net::ReadHalf,
    buf: &mut Vec<u8>,
    closed: &str,
) -> Result<(), Reply> {
    let mut chunk = [0u8; 1024];
    let n = read
        .read_some(&mut chunk)
        .await
        .map_err(|e| Reply::text("400 Bad Request", format!("{e}\n")))?;
    if n == 0 {
        return Err(Reply::text("400 Bad Request", format!("{closed}\n")));
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

async fn route(
    shard: &Rc<Shard>,
    admission: &Admission,
    request: &HttpRequest,
    authz: &Authz,
) -> Reply {
    let path = request.path.split('?').next().unwrap_or_default();
    let forbidden = |operation: Operation| {
        Reply::text(
            "403 Forbidden",
            format!("not authorized for {} on the cluster\n", operation.name()),
        )
    };
    let is_asset = super::console::asset(path).is_some();
    match (request.method.as_str(), path) {
        ("PUT", _) if !authz.cluster(Operation::Alter) => return forbidden(Operation::Alter),
        // Messages are checked against their topic; the console's own files need no right.
        ("GET", "/v1/messages" | "/v1/health" | "/v1/ready") => {}
        ("GET", _) if !is_asset && !authz.cluster(Operation::Describe) => {
            return forbidden(Operation::Describe)
        }
        _ => {}
    }
    match (request.method.as_str(), path) {
        ("PUT", "/v1/log-level") => {
            let directives = String::from_utf8_lossy(&request.body).trim().to_string();
            return match super::log_level::set(&directives) {
                Ok(()) => Reply::text("200 OK", format!("{directives}\n")),
                Err(e) => Reply::text("400 Bad Request", format!("{e}\n")),
            };
        }
        ("GET", "/v1/log-level") => {
            return match super::log_level::current() {
                Some(current) => Reply::text("200 OK", format!("{current}\n")),
                None => Reply::text("404 Not Found", "no log filter in this process\n"),
            };
        }
        ("GET", _) => {}
        _ => return Reply::text("405 Method Not Allowed", "only GET is served here\n"),
    }
    if let Some((content_type, body)) = super::console::asset(path) {
        return Reply {
            status: "200 OK",
            content_type,
            body: body.to_string(),
        };
    }
    match path {
        "/v1/topics" => Reply::json("200 OK", super::console::topics(shard)),
        "/v1/groups" => Reply::json("200 OK", super::console::groups(shard).await),
        "/v1/messages" => {
            let query = request.path.split_once('?').map_or("", |(_, q)| q);
            match super::console::messages(shard, query, authz).await {
                Ok(body) => Reply::json("200 OK", body),
                Err((status, why)) => {
                    Reply::json(status, format!("{}\n", serde_json::json!({"error": why})))
                }
            }
        }
        "/metrics" => Reply {
            status: "200 OK",
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: metrics::render(&scrape(shard, admission).await),
        },
        "/v1/health" => Reply::json("200 OK", "{\"status\":\"live\"}\n".into()),
        "/v1/cluster" => Reply::json("200 OK", cluster(shard).await),
        "/v1/partitions" => Reply::json("200 OK", partitions(shard).await),
        "/v1/ready" => {
            if shard.caught_up.load(Ordering::Acquire) {
                Reply::json("200 OK", "{\"status\":\"ready\"}\n".into())
            } else {
                let why = "waiting for this node's registration in the cluster's metadata";
                Reply::json(
                    "503 Service Unavailable",
                    format!("{{\"status\":\"starting\",\"reason\":\"{why}\"}}\n"),
                )
            }
        }
        _ => Reply::text("404 Not Found", format!("no such path: {path}\n")),
    }
}

/// Every shard's counters and gauges (one message to each other shard), and the node's.
async fn scrape(shard: &Rc<Shard>, admission: &Admission) -> Scrape {
    let partition_series = shard.broker().bool("metrics.partition.series");
    let mut shards = vec![(ShardCounts::default(), ShardGauges::default()); shard.shards];
    let mut groups = vec![ShardGroups::default(); shard.shards];
    let mut partitions = Vec::new();
    let mine = shard.counts_and_gauges(partition_series);
    let others = join_all(shard.mesh.peers().map(|peer| {
        let asked = shard.mesh.remote(peer, move |s| async move {
            s.counts_and_gauges(partition_series)
        });
        async move { (peer, asked.await) }
    }))
    .await;
    let answers = others
        .into_iter()
        .filter_map(|(peer, answer)| Some((peer, answer.ok()?)));
    for (id, held) in std::iter::once((shard.id, mine)).chain(answers) {
        shards[id.index()] = (held.counts, held.gauges);
        groups[id.index()] = held.groups;
        partitions.extend(held.partitions);
    }
    let image = shard.image();
    let offline_partitions = image
        .topics
        .values()
        .flat_map(|meta| meta.assignments.iter())
        .filter(|a| !image.is_live(&a.leader))
        .count() as u64;
    Scrape {
        shards,
        partitions,
        partition_series,
        groups,
        connections: admission.open() as u64,
        active_controller: shard.active_controller() == shard.node_id,
        offline_partitions,
    }
}

/// `/v1/cluster`: the cluster as this node's metadata has it, and the metadata quorum's voters
/// and learners (brokers that do not vote) as its raft has them.
async fn cluster(shard: &Shard) -> String {
    let quorum = shard.quorum_membership().await.map(|(voters, learners)| {
        let ids = |nodes: Vec<NodeId>| nodes.into_iter().map(|n| n.0).collect::<Vec<i32>>();
        serde_json::json!({"voters": ids(voters), "learners": ids(learners)})
    });
    let image = shard.image();
    let brokers: Vec<serde_json::Value> = image
        .brokers
        .iter()
        .map(|(id, b)| {
            serde_json::json!({
                "node_id": id.0,
                "host": b.host,
                "port": b.port,
                "rack": b.rack,
                "fenced": image.fenced.contains(id),
            })
        })
        .collect();
    let controller = shard.active_controller();
    let body = serde_json::json!({
        "cluster_id": shard.cluster_id,
        "node_id": shard.node_id,
        "controller_id": (controller >= 0).then_some(controller),
        "brokers": brokers,
        "topics": image.topics.len(),
        "partitions": image.topics.values().map(|m| m.partitions as u64).sum::<u64>(),
        "quorum": quorum,
    });
    format!("{body}\n")
}

/// `/v1/partitions`: every partition this node holds a replica of, from the shard that owns
/// it: its leader, replicas and ISR, log start and end, high watermark and size on disk.
async fn partitions(shard: &Rc<Shard>) -> String {
    let mut all = shard.partition_rows();
    let others = join_all(shard.mesh.peers().map(|peer| {
        shard
            .mesh
            .remote(peer, |s| async move { s.partition_rows() })
    }))
    .await;
    all.extend(others.into_iter().flatten().flatten());
    all.sort_by(|a, b| {
        let key = |v: &serde_json::Value| (v["topic"].to_string(), v["partition"].as_i64());
        key(a).cmp(&key(b))
    });
    format!("{}\n", serde_json::Value::Array(all))
}

impl Shard {
    /// The rows of `/v1/partitions` this shard owns.
    fn partition_rows(&self) -> Vec<serde_json::Value> {
        let ids = |nodes: &[NodeId]| nodes.iter().map(|n| n.0).collect::<Vec<i32>>();
        self.partitions
            .all()
            .iter()
            .map(|p| {
                let assignment = p.assignment();
                serde_json::json!({
                    "topic": &*p.tp.topic,
                    "partition": p.tp.partition,
                    "node": self.node_id,
                    "shard": self.id.index(),
                    "leader": assignment.leader.0,
                    "leader_epoch": assignment.leader_epoch.0,
                    "replicas": ids(&assignment.replicas),
                    "isr": ids(&assignment.isr),
                    "log_start_offset": p.log.log_start().0,
                    "log_end_offset": p.log.log_end().0,
                    "high_watermark": p.high_watermark().0,
                    "size_bytes": p.log.size_bytes().ok(),
                })
            })
            .collect()
    }

    /// This shard's counters, what it holds now, its groups, and (with `per_partition`) its
    /// partitions' logs. The traffic of topics since deleted is forgotten here.
    fn counts_and_gauges(&self, per_partition: bool) -> Held {
        let image = self.image();
        self.metrics
            .retain_topics(|topic| image.topics.contains_key(topic));
        drop(image);
        let mut gauges = ShardGauges::default();
        let held = ShardGroups {
            groups: self.groups.committed(),
            high_watermarks: self.led_high_watermarks(),
        };
        let mut counts = self.metrics.snapshot();
        let mut partitions = Vec::new();
        for partition in self.partitions.all() {
            gauges.partitions += 1;
            let log = &partition.log;
            let bytes = log.size_bytes().unwrap_or(0);
            let segments = log.segment_count() as u64;
            gauges.log_bytes += bytes;
            gauges.segments += segments;
            counts.log.add(&log.stats());
            if per_partition {
                partitions.push(PartitionLog {
                    topic: partition.tp.topic.clone(),
                    partition: partition.tp.partition,
                    bytes,
                    segments,
                    log_start: log.log_start().0,
                    log_end: log.log_end().0,
                });
            }
            if partition.is_leader() {
                gauges.leaders += 1;
                let assignment = partition.assignment();
                if assignment.isr.len() < assignment.replicas.len() {
                    gauges.under_replicated += 1;
                }
                if assignment.isr.len() < partition.min_insync() {
                    gauges.under_min_isr += 1;
                }
            }
        }
        (counts.isr_shrinks, counts.isr_expands) = self.partitions.isr_changes();
        counts.rebalances = self.groups.rebalances();
        let depth = crate::io::disk_depth();
        gauges.disk_in_flight = depth.in_flight;
        counts.disk_depths = Some(depth.depths);
        Held {
            counts,
            gauges,
            groups: held,
            partitions,
        }
    }
}

impl Shard {
    /// (topic, partition, high watermark) of each partition this shard leads: a group's lag is
    /// the leader's high watermark less its committed offset.
    pub(super) fn led_high_watermarks(&self) -> Vec<(Arc<str>, i32, i64)> {
        self.partitions
            .all()
            .into_iter()
            .filter(|p| p.is_leader())
            .map(|p| (p.tp.topic.clone(), p.tp.partition, p.high_watermark().0))
            .collect()
    }
}

/// What one shard answers a scrape with.
struct Held {
    counts: ShardCounts,
    gauges: ShardGauges,
    groups: ShardGroups,
    partitions: Vec<PartitionLog>,
}
