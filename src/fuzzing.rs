//! The bodies of the fuzz targets (`fuzz/fuzz_targets/`), here so that the regression tests
//! (`tests/it/fuzz_regressions.rs`) replay every committed input through exactly the same checks.
//! Each takes arbitrary bytes, drives the code that takes that input from a client, and panics
//! only when an invariant breaks: a malformed input must come back as an error, never as a
//! panic, an abort or an allocation larger than the input justifies.

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestKind};

use crate::model::records::{self, Record};
use crate::model::{BatchView, Codec};
use crate::protocol::{self, bounded, schema};

/// What a request may take decoded in these checks (the broker's own limit).
pub const REQUEST_DECODED_BYTES_MAX: u64 = 64 << 20;
/// What a batch may inflate to in these checks.
pub const INFLATED_BYTES_MAX: usize = 1 << 20;

/// A request frame (without its length prefix), as the broker's dispatch sees it: the bounded
/// walk first; whatever it accepts must decode, header and body, reading exactly the bytes the
/// walk read and allocating no more than the walk's estimate. `allocated` reads the bytes the
/// process has allocated so far (the fuzz target counts them in its global allocator; 0 where
/// nothing counts).
pub fn request(frame: &[u8], allocated: &dyn Fn() -> u64) {
    let Ok(prefix) = protocol::parse_prefix(frame) else {
        return;
    };
    let Ok(api) = ApiKey::try_from(prefix.api_key) else {
        return;
    };
    let limits = bounded::Limits {
        decoded_bytes_max: REQUEST_DECODED_BYTES_MAX,
    };
    let Ok((body_start, walked)) =
        bounded::walk_request(prefix.api_key, prefix.api_version, frame, limits)
    else {
        return;
    };
    let checked = protocol::check_request(api, prefix, frame, limits)
        .expect("check_request agrees with walk_request");
    assert_eq!(checked.decoded_bytes(), walked.decoded_bytes);
    let mut rest = Bytes::copy_from_slice(frame);
    let header = protocol::decode_header(api, prefix.api_version, &mut rest, &checked)
        .unwrap_or_else(|e| panic!("the walk accepted a header the crate refuses: {e}"));
    assert_eq!(header.correlation_id, prefix.correlation_id);
    assert_eq!(frame.len() - rest.len(), body_start, "header length");
    let before = allocated();
    let decoded = RequestKind::decode(api, &mut rest, prefix.api_version);
    let used = allocated().saturating_sub(before);
    if let Err(e) = decoded {
        panic!(
            "the walk accepted {api:?} v{} the crate refuses: {e}",
            prefix.api_version
        );
    }
    assert_eq!(
        frame.len() - rest.len(),
        body_start + walked.end,
        "the crate read a different length than the walk"
    );
    assert!(
        used <= walked.decoded_bytes,
        "{api:?} v{} allocated {used} bytes decoding, the walk estimated {}",
        prefix.api_version,
        walked.decoded_bytes
    );
}

/// Record batches as a producer sends them: validated as the log validates an append (and, for
/// half the inputs, with what Produce asks of a client's batch), opened as compaction and
/// recompression open them (records decoded within a bound), then recompressed to another codec
/// and opened again: the same records must come out. If the first byte is even, every batch's
/// CRC is set right first, so that the fuzzer gets past the checksum into the records.
pub fn record_batches(data: &[u8]) {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let mut bytes = data.to_vec();
    if mode % 2 == 0 {
        fix_crcs(&mut bytes);
    }
    let as_produced = mode % 4 < 2;
    let Ok((all, any_empty)) = open_batches(&bytes, as_produced, INFLATED_BYTES_MAX) else {
        return;
    };
    let codec = [Codec::None, Codec::Lz4, Codec::Zstd][mode as usize % 3];
    let recoded = match records::recompress(&bytes, codec, INFLATED_BYTES_MAX) {
        Ok(Some(recoded)) => recoded,
        Ok(None) => return,
        // A data batch of no records cannot be rebuilt; Produce refuses it earlier.
        Err(_) if any_empty => return,
        Err(e) => panic!("batches that validated and decoded do not recompress: {e}"),
    };
    let (again, _) = open_batches(&recoded, false, usize::MAX)
        .unwrap_or_else(|e| panic!("a recompressed batch does not open: {e}"));
    assert_eq!(all, again, "recompression changed the records");
}

/// The key, value and header count of every data record in `bytes`, and whether some batch
/// held no records.
type Opened = (Vec<(Option<Bytes>, Option<Bytes>, usize)>, bool);

fn open_batches(bytes: &[u8], as_produced: bool, limit: usize) -> Result<Opened, String> {
    let mut rest = bytes;
    let mut all = Vec::new();
    let mut any_empty = false;
    while !rest.is_empty() {
        let (view, after) = BatchView::validate(rest).map_err(|e| e.to_string())?;
        if as_produced {
            view.check_produced().map_err(|e| e.to_string())?;
        }
        let decoded: Vec<Record> = records::decode(&view, limit).map_err(|e| e.to_string())?;
        assert!(decoded.len() <= view.records_count() as usize);
        any_empty |= decoded.is_empty();
        if !view.is_control() {
            all.extend(
                decoded
                    .into_iter()
                    .map(|r| (r.key, r.value, r.headers.len())),
            );
        }
        rest = after;
    }
    Ok((all, any_empty))
}

/// Sets the CRC of each framed batch in `bytes` to what its contents give.
fn fix_crcs(bytes: &mut [u8]) {
    let mut at = 0;
    while let Ok(len) = BatchView::total_len(&bytes[at..]) {
        let Some(end) = at.checked_add(len).filter(|end| *end <= bytes.len()) else {
            return;
        };
        crate::model::batch::set_crc(&mut bytes[at..end]);
        at = end;
    }
}

/// Compressed data of any codec (picked by the first byte): inflating it either fails with a
/// typed error or stays within the limit.
pub fn decompress(data: &[u8]) {
    let Some((&pick, data)) = data.split_first() else {
        return;
    };
    let codec = [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd][pick as usize % 4];
    let limit = (pick as usize / 4 + 1) * 1024;
    if let Ok(out) = codec.decompress(data, limit) {
        assert!(out.len() <= limit, "{codec:?} inflated past its limit");
    }
}

/// What a client sends to authenticate, picked by the first byte: 0, a SASL/PLAIN message; 1
/// and 2, the messages of a SCRAM-SHA-256 / -512 exchange (separated by 0xff bytes, which UTF-8
/// never holds) against a user `user` whose password is `pencil`; 3, a stored credential's
/// text; 4, a client certificate (its subject becomes the principal). Each either works or
/// comes back as an error; an exchange that failed stays failed.
pub fn sasl(data: &[u8]) {
    use crate::security::scram::{self, Credential, Mechanism, ServerExchange, Step};
    let Some((&pick, data)) = data.split_first() else {
        return;
    };
    match pick % 5 {
        0 => {
            if let Ok((user, password)) = scram::parse_plain(data) {
                assert!(!user.is_empty() && !password.is_empty());
            }
        }
        pick @ (1 | 2) => {
            let mechanism = [Mechanism::Sha256, Mechanism::Sha512][pick as usize - 1];
            let salted = scram::salt_password(mechanism, "pencil", b"salt", 1);
            let credential = Credential::from_salted(mechanism, &salted, b"salt".to_vec(), 4096);
            let mut exchange = ServerExchange::new(mechanism);
            let mut failed = false;
            for message in data.split(|&b| b == 0xff) {
                let step =
                    exchange.step(message, |user| (user == "user").then(|| credential.clone()));
                match step {
                    Err(_) => failed = true,
                    Ok(_) if failed => panic!("an exchange went on after it failed"),
                    Ok(Step::Authenticated { user, .. }) => assert_eq!(user, "user"),
                    Ok(Step::Challenge(_)) => {}
                }
            }
        }
        3 => {
            if let Some(credential) = std::str::from_utf8(data)
                .ok()
                .and_then(Credential::from_text)
            {
                assert_eq!(
                    Credential::from_text(&credential.to_text()),
                    Some(credential)
                );
            }
        }
        _ => {
            let _ = crate::security::tls::subject_of(data);
            // The same bytes as mapping rules, and the rules applied to them.
            if let Ok(rules) = std::str::from_utf8(data)
                .map_err(|e| e.to_string())
                .and_then(crate::security::principal::PrincipalRules::parse)
            {
                let _ = rules.apply(std::str::from_utf8(data).unwrap_or_default());
            }
        }
    }
}

/// The seed inputs of each target (`fuzz/seeds/<target>/<name>`): a random well-formed request
/// for every API version the broker serves, the hostile counts that once aborted it, batches of
/// every codec with keys, nulls and headers, and compressed data of every codec.
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut seeds = Vec::new();
    let mut rng = schema::sample::Rng::new(0x5eed);
    for (api_key, versions) in crate::server::served_apis() {
        let message = schema::request(api_key).expect("a served API has a schema");
        for version in versions {
            let frame = schema::sample::sample_request(message, version, 1, &mut rng);
            seeds.push(("request", format!("api{api_key}-v{version}"), frame));
            let mut hostile = frame_header(api_key, version, message);
            for _ in 0..4 {
                hostile.extend_from_slice(&[0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x07]);
            }
            seeds.push(("request", format!("api{api_key}-v{version}-count"), hostile));
        }
    }
    let sample = |key: Option<&str>, value: Option<&str>, headers: usize| Record {
        offset: crate::model::Offset(0),
        timestamp: crate::model::TimestampMs(1_700_000_000_000),
        key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
        value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
        headers: (0..headers)
            .map(|i| records::Header {
                key: Bytes::from(format!("h{i}")),
                value: (i % 2 == 0).then(|| Bytes::from_static(b"v")),
            })
            .collect(),
    };
    let batch = [
        sample(Some("k1"), Some("hello"), 0),
        sample(None, Some("world"), 2),
        sample(Some("k1"), None, 1),
    ];
    for codec in [
        Codec::None,
        Codec::Gzip,
        Codec::Snappy,
        Codec::Lz4,
        Codec::Zstd,
    ] {
        let built = records::BatchBuilder {
            codec,
            ..Default::default()
        }
        .build(&batch);
        let mut input = vec![0];
        input.extend_from_slice(&built);
        seeds.push(("record_batch", format!("{codec:?}").to_lowercase(), input));
        let plain = b"sluice sluice sluice sluice sluice sluice".repeat(8);
        let pick = [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd]
            .iter()
            .position(|c| *c == codec);
        if let Some(pick) = pick {
            let mut input = vec![pick as u8];
            input.extend_from_slice(&codec.compress(&plain));
            seeds.push(("decompress", format!("{codec:?}").to_lowercase(), input));
        }
    }
    let two = [
        records::BatchBuilder::default().build(&batch[..1]),
        records::marker_batch(7, 0, true, 0, crate::model::TimestampMs(1)),
    ]
    .concat();
    seeds.push((
        "record_batch",
        "data-then-marker".into(),
        [&[2u8][..], &two].concat(),
    ));
    let sasl: [(&str, &[u8]); 6] = [
        ("plain", b"\0\0user\0pencil"),
        ("scram-sha-256", b"\x01n,,n=user,r=rOprNGfwEbeRWgbNEkqO"),
        (
            "scram-sha-512-final",
            b"\x02n,,n=user,r=abc\xffc=biws,r=abcdef,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        ),
        ("scram-unknown-user", b"\x01n,a=bob,n=bob,r=abc"),
        ("credential", b"\x03c2FsdA==:4096:AAEC:AwQF"),
        ("certificate", b"\x04\x30\x82\x01\x00"),
    ];
    for (name, input) in sasl {
        seeds.push(("sasl", name.to_string(), input.to_vec()));
    }
    seeds
}

/// A request header for `api_key` at `version` (correlation id 1, client id "seed").
fn frame_header(api_key: i16, version: i16, message: &schema::Message) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&api_key.to_be_bytes());
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&1i32.to_be_bytes());
    let header_version = bounded::header_version(message, version);
    if header_version >= 1 {
        out.extend_from_slice(&4i16.to_be_bytes());
        out.extend_from_slice(b"seed");
    }
    if header_version >= 2 {
        out.push(0);
    }
    out
}
