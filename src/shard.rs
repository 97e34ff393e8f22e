//! The shard table: which shard owns a partition. A pure function of the topic name, the
//! partition and the number of shards, so every shard (and every restart with the same core count)
//! computes the same answer with no shared state; the partitions of one topic go round-robin over
//! all shards from a per-topic starting point.

use crate::model::TopicPartition;

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
pub fn owner(tp: &TopicPartition, shards: usize) -> usize {
    assert!(shards > 0, "at least one shard");
    let start = topic_hash(&tp.topic) % shards as u64;
    ((start + tp.partition.max(0) as u64) % shards as u64) as usize
}

/// Parses `--cores`: a count (`4`: the first four available CPUs) or a list (`0,2,4-7`).
pub fn parse_cores(text: &str, available: &[usize]) -> Result<Vec<usize>, String> {
    let text = text.trim();
    if !text.contains(',') && !text.contains('-') {
        let count: usize = text
            .parse()
            .map_err(|_| format!("--cores `{text}`: expected a count or a list like 0,2,4-7"))?;
        if count == 0 || count > available.len() {
            return Err(format!(
                "--cores {count}: between 1 and the {} available CPUs",
                available.len()
            ));
        }
        return Ok(available[..count].to_vec());
    }
    let mut cores = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let parse = |s: &str| {
            s.parse::<usize>()
                .map_err(|_| format!("--cores `{text}`: `{part}` is not a CPU or a range"))
        };
        let (first, last) = (parse(first)?, parse(last)?);
        if first > last {
            return Err(format!("--cores `{text}`: `{part}` runs backwards"));
        }
        for cpu in first..=last {
            if !available.contains(&cpu) {
                return Err(format!(
                    "--cores `{text}`: CPU {cpu} is not available to this process"
                ));
            }
            if !cores.contains(&cpu) {
                cores.push(cpu);
            }
        }
    }
    Ok(cores)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_spreads_over_every_shard() {
        for shards in 1..=8 {
            let mut seen = vec![0; shards];
            for partition in 0..(shards as i32 * 2) {
                seen[owner(&TopicPartition::new("events", partition), shards)] += 1;
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

    #[test]
    fn parses_counts_and_lists() {
        let available = [0, 1, 2, 3, 4, 5, 6, 7];
        assert_eq!(parse_cores("2", &available).unwrap(), vec![0, 1]);
        assert_eq!(
            parse_cores("0,2,4-6", &available).unwrap(),
            vec![0, 2, 4, 5, 6]
        );
        assert!(parse_cores("0", &available).is_err());
        assert!(parse_cores("9", &available).is_err());
        assert!(parse_cores("3-1", &available).is_err());
        assert!(parse_cores("8-9", &available).is_err());
        assert!(parse_cores("x", &available).is_err());
    }
}
