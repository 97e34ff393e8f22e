use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::Decodable;

use super::*;
use crate::protocol::schema::sample::{sample, sample_request, Rng};
use crate::protocol::schema::{MESSAGES, REQUEST_HEADER_MESSAGE};

const GENEROUS: Limits = Limits {
    decoded_bytes_max: u64::MAX,
};

/// The crate's decoder for `api_key` at `version`: `Ok(bytes consumed)`.
fn crate_decode(api_key: ApiKey, version: i16, bytes: &[u8]) -> Result<usize, String> {
    let mut buf = Bytes::copy_from_slice(bytes);
    RequestKind::decode(api_key, &mut buf, version).map_err(|e| e.to_string())?;
    Ok(bytes.len() - buf.len())
}

fn crate_messages() -> impl Iterator<Item = (ApiKey, &'static Message)> {
    MESSAGES.iter().filter_map(|message| {
        let key = ApiKey::try_from(message.api_key).ok()?;
        Some((key, *message))
    })
}

fn versions(message: &Message) -> impl Iterator<Item = i16> {
    message.valid.min..=message.valid.max
}

#[test]
fn messages_are_indexed_by_api_key() {
    assert_eq!(MESSAGES[0].api_key, -1);
    for (index, message) in MESSAGES.iter().enumerate().skip(1) {
        assert_eq!(message.api_key as usize, index - 1);
        assert!(std::ptr::eq(
            schema::request(message.api_key).unwrap(),
            *message
        ));
    }
    assert!(schema::request(-1).is_none());
    assert!(schema::request(i16::MAX).is_none());
}

#[test]
fn the_schema_covers_every_version_the_crate_decodes() {
    for (key, message) in crate_messages() {
        let crate_versions = key.valid_versions();
        assert_eq!(
            (message.valid.min, message.valid.max),
            (crate_versions.min, crate_versions.max),
            "{key:?}"
        );
        for version in versions(message) {
            assert_eq!(
                header_version(message, version),
                key.request_header_version(version),
                "{key:?} v{version}"
            );
        }
    }
}

#[test]
fn walker_and_crate_agree_on_random_well_formed_requests() {
    let mut rng = Rng::new(0x5eed);
    for (key, message) in crate_messages() {
        for version in versions(message) {
            for _ in 0..50 {
                let bytes = sample(message, version, &mut rng);
                let walked = walk(message, version, &bytes, GENEROUS)
                    .unwrap_or_else(|e| panic!("{key:?} v{version}: {e}: {bytes:02x?}"));
                assert_eq!(walked.end, bytes.len(), "{key:?} v{version}");
                let decoded = crate_decode(key, version, &bytes)
                    .unwrap_or_else(|e| panic!("crate: {key:?} v{version}: {e}: {bytes:02x?}"));
                assert_eq!(decoded, bytes.len(), "crate consumed, {key:?} v{version}");
            }
        }
    }
}

#[test]
fn whole_frames_walk_and_the_header_agrees_with_the_crate() {
    let mut rng = Rng::new(7);
    for (key, message) in crate_messages() {
        for version in versions(message) {
            let frame = sample_request(message, version, 42, &mut rng);
            let (body_start, walked) = walk_request(message.api_key, version, &frame, GENEROUS)
                .unwrap_or_else(|e| panic!("{key:?} v{version}: {e}"));
            assert_eq!(body_start + walked.end, frame.len());
            let mut buf = Bytes::copy_from_slice(&frame);
            let header =
                RequestHeader::decode(&mut buf, key.request_header_version(version)).unwrap();
            assert_eq!(header.correlation_id, 42);
            assert_eq!(frame.len() - buf.len(), body_start, "{key:?} v{version}");
        }
    }
}

/// Whatever the walker accepts, the crate decodes, reading exactly as many bytes.
fn assert_accepted_decodes(key: ApiKey, message: &Message, version: i16, bytes: &[u8]) {
    if let Ok(walked) = walk(message, version, bytes, GENEROUS) {
        match crate_decode(key, version, bytes) {
            Ok(consumed) => assert_eq!(consumed, walked.end, "{key:?} v{version}: {bytes:02x?}"),
            Err(e) => {
                panic!("walker accepted, crate refused {key:?} v{version}: {e}: {bytes:02x?}")
            }
        }
    }
}

#[test]
fn mutated_requests_are_refused_or_decode_as_walked() {
    let mut rng = Rng::new(99);
    for (key, message) in crate_messages() {
        for version in versions(message) {
            for _ in 0..20 {
                let bytes = sample(message, version, &mut rng);
                for cut in 0..bytes.len() {
                    assert_accepted_decodes(key, message, version, &bytes[..cut]);
                }
                for _ in 0..8 {
                    let mut mutated = bytes.clone();
                    if mutated.is_empty() {
                        break;
                    }
                    let at = rng.below(mutated.len() as u64) as usize;
                    mutated[at] = match rng.below(4) {
                        0 => 0xff,
                        1 => 0x7f,
                        2 => 0x80,
                        _ => rng.next_u64() as u8,
                    };
                    assert_accepted_decodes(key, message, version, &mutated);
                }
            }
        }
    }
}

/// Fetch v12's fields before the topics: replica, max wait, min bytes, max bytes, isolation,
/// session id and epoch.
const FETCH_V12_FIXED_BYTES: usize = 4 * 4 + 1 + 4 * 2;

#[test]
fn a_huge_array_count_is_refused_before_anything_is_sized() {
    // Fetch v4 (not flexible): replica, max wait, min bytes, max bytes, isolation, then the
    // topic count 0x7fffffff with nothing after it: the request that aborted the broker.
    let mut body = Vec::new();
    body.extend_from_slice(&(-1i32).to_be_bytes());
    body.extend_from_slice(&500i32.to_be_bytes());
    body.extend_from_slice(&1i32.to_be_bytes());
    body.extend_from_slice(&1_048_576i32.to_be_bytes());
    body.push(0);
    body.extend_from_slice(&0x7fff_ffffi32.to_be_bytes());
    body.extend_from_slice(&[0, 1, 2]);
    let fetch = schema::request(1).unwrap();
    let error = walk(fetch, 4, &body, GENEROUS).unwrap_err();
    assert_eq!(error.field, "Topics");
    assert_eq!(
        error.problem,
        Problem::CountOverrun {
            count: 0x7fff_ffff,
            have: 3
        }
    );
    // The same count in a flexible version, as a varint.
    let mut body = vec![0; FETCH_V12_FIXED_BYTES];
    body.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x08]); // 2^31
    let error = walk(fetch, 12, &body, GENEROUS).unwrap_err();
    assert!(
        matches!(error.problem, Problem::CountOverrun { .. }),
        "{error}"
    );
}

#[test]
fn varints_past_32_bits_and_negative_lengths_are_refused() {
    let metadata = schema::request(3).unwrap();
    // v9 (flexible): the topic count as a six-byte varint.
    let error = walk(metadata, 9, &[0x80, 0x80, 0x80, 0x80, 0x80, 0x01], GENEROUS).unwrap_err();
    assert_eq!(error.problem, Problem::VarintTooLong);
    // v1: one topic whose name has length -2.
    let body = [0, 0, 0, 1, 0xff, 0xfe];
    let error = walk(metadata, 1, &body, GENEROUS).unwrap_err();
    assert_eq!(error.problem, Problem::NegativeLength(-2));
    // v1: a null name (Name is not nullable).
    let body = [0, 0, 0, 1, 0xff, 0xff];
    let error = walk(metadata, 1, &body, GENEROUS).unwrap_err();
    assert_eq!(error.problem, Problem::Null);
    // A name that is not UTF-8.
    let body = [0, 0, 0, 1, 0, 2, 0xc3, 0x28];
    let error = walk(metadata, 1, &body, GENEROUS).unwrap_err();
    assert_eq!(error.problem, Problem::NotUtf8);
}

#[test]
fn a_tagged_field_must_fill_its_declared_size() {
    // ApiVersions v3: client software name and version (compact strings), then tagged fields:
    // one unknown tag whose size runs past the end.
    let api_versions = schema::request(18).unwrap();
    let body = [1, 1, 1, 5, 3, 0xff, 0x7f];
    let error = walk(api_versions, 3, &body, GENEROUS).unwrap_err();
    assert!(
        matches!(error.problem, Problem::Truncated { .. }),
        "{error}"
    );
    // Fetch v12 tag 0 (ClusterId, a compact string) declared as 3 bytes holding a 1-byte string.
    let fetch = schema::request(1).unwrap();
    let mut body = vec![0; FETCH_V12_FIXED_BYTES];
    body.extend_from_slice(&[1, 1, 1]); // no topics, no forgotten topics, rack ""
    body.extend_from_slice(&[1, 0, 3, 2, b'x', 0]);
    let error = walk(fetch, 12, &body, GENEROUS).unwrap_err();
    assert_eq!(
        error.problem,
        Problem::TaggedSize {
            declared: 3,
            used: 2
        }
    );
}

#[test]
fn the_decoded_size_is_estimated_and_bounded() {
    // Metadata v1 with 10,000 one-letter topic names: 30 KB on the wire.
    let metadata = schema::request(3).unwrap();
    let mut body = 10_000i32.to_be_bytes().to_vec();
    for _ in 0..10_000 {
        body.extend_from_slice(&[0, 1, b't']);
    }
    let walked = walk(metadata, 1, &body, GENEROUS).unwrap();
    assert!(walked.decoded_bytes >= 10_000 * 32, "{walked:?}");
    let limits = Limits {
        decoded_bytes_max: walked.decoded_bytes - 1,
    };
    let error = walk(metadata, 1, &body, limits).unwrap_err();
    assert!(
        matches!(error.problem, Problem::TooExpensive { .. }),
        "{error}"
    );
}

#[test]
fn an_unknown_version_or_api_is_refused() {
    let fetch = schema::request(1).unwrap();
    let error = walk(fetch, 99, &[], GENEROUS).unwrap_err();
    assert_eq!(error.problem, Problem::Version(99));
    assert!(walk_request(9999, 0, &[0; 16], GENEROUS).is_err());
    let _ = REQUEST_HEADER_MESSAGE.body.name;
}
