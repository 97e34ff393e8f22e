//! The shard table: which shard owns a partition. A pure function of the topic name, the
//! partition and the number of shards, so every shard (and every restart with the same core count)
//! computes the same answer with no shared state; the partitions of one topic go round-robin over
//! all shards from a per-topic starting point.

use crate::model::{ShardId, TopicPartition};

/// FNV-1a: stable across builds and platforms (unlike std's randomly seeded hasher).
fn topic_hash(topic: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in topic.bytes() {
        hash ^= byte as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The shard (0..shards) that owns `tp`.
pub fn owner(tp: &TopicPartition, shards: usize) -> ShardId {
    assert!(shards > 0, "at least one shard");
    let start = topic_hash(&tp.topic) % shards as u64;
    ShardId(((start + tp.partition.max(0) as u64) % shards as u64) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_spreads_over_every_shard() {
        for shards in 1..=8 {
            let mut seen = vec![0; shards];
            for partition in 0..(shards as i32 * 2) {
                seen[owner(&TopicPartition::new("events", partition), shards).index()] += 1;
            }
            assert!(seen.iter().all(|&n| n == 2), "{shards}: {seen:?}");
        }
    }

    #[test]
    fn owner_is_stable() {
        let tp = TopicPartition::new("orders", 3);
        assert_eq!(owner(&tp, 4), owner(&tp.clone(), 4));
        assert_eq!(topic_hash("a"), 0xaf63_dc4c_8601_ec8c);
    }
}
