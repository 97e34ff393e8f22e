//! The test kit: starting brokers (`broker`) and clusters of them (`cluster`), network namespaces
//! to cut nodes apart (`netns`), librdkafka clients (`client`), raw Kafka frames (`raw`), record
//! batches and logs for the storage tests
//! (`batches`).

pub mod batches;
pub mod broker;
pub mod browser;
pub mod client;
pub mod cluster;
pub mod netns;
pub mod pki;
pub mod raw;
