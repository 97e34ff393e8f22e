use bytes::Bytes;
use sluice::io;
use sluice::model::{records, Codec, Offset};
use sluice::storage::{AppendOptions, Log, LogConfig};

#[test]
fn append_read_reopen() {
    let dir = tempfile::tempdir().unwrap();
    io::block_on(async {
        let config = LogConfig {
            segment_bytes: 4096,
            index_interval_bytes: 256,
            ..LogConfig::default()
        };
        let log = Log::open(dir.path(), config.clone(), io::Faults::default())
            .await
            .unwrap();
        let mut expected = Vec::new();
        for i in 0..50 {
            let batch = records::simple_batch(3, 100, Codec::None);
            let info = log
                .append(vec![batch], AppendOptions::default())
                .await
                .unwrap();
            assert_eq!(info.first_offset, Offset(i * 3));
            expected.push(info);
        }
        assert!(log.segment_count() > 3, "{}", log.segment_count());
        let ranges = log
            .read(Offset(31), Offset(150), 1 << 20, true)
            .await
            .unwrap();
        assert_eq!(ranges[0].first_offset, Offset(30));
        assert_eq!(ranges.last().unwrap().next_offset, Offset(150));
        log.close().await.unwrap();
        drop(log);
        let log = Log::open(dir.path(), config, io::Faults::default())
            .await
            .unwrap();
        assert_eq!(log.log_end(), Offset(150));
        let ranges = log
            .read(Offset(0), Offset(150), 1 << 20, true)
            .await
            .unwrap();
        let total: u64 = ranges.iter().map(|r| r.bytes).sum();
        assert!(total > 0);
        let _ = Bytes::new();
    });
}
