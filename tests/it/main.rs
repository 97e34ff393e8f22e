//! The integration tests, one binary (one link of librdkafka, one process whose tests run in
//! parallel): real `sluice serve` processes and real Kafka clients (rdkafka), raw Kafka frames,
//! the storage engine on real files and the CLI. `kit` is what they share. (The benchmark
//! harness has a binary of its own, `tests/bench_harness.rs`: it measures rates.)

mod kit;

mod admin_api;
mod cli;
mod cli_client;
mod cluster_faults;
mod cluster_quorum;
mod cluster_reassign;
mod cluster_replication;
mod cluster_roles;
mod cluster_security;
mod console;
mod fuzz_regressions;
mod kafka_admin;
mod kafka_bad_input;
mod kafka_compat;
mod kafka_durability;
mod kafka_groups;
mod kafka_hostile;
mod kafka_idempotence;
mod kafka_produce_fetch;
mod kafka_raw_apis;
mod kafka_read_committed;
mod kafka_scale;
mod kafka_transactions;
mod security;
mod security_acl;
mod security_keys;
mod security_matrix;
mod security_reauth;
mod storage_idempotence;
mod storage_limits;
mod storage_log;
mod storage_model;
mod storage_recovery;
mod storage_segments;
mod tune;
