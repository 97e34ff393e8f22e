//! The codecs of a batch's records: gzip, snappy (xerial framing, as the Java client writes it; raw
//! blocks are read too, as some clients send them), lz4 (frame format) and zstd. The broker never
//! decompresses on the produce or fetch path; only compaction and timestamp lookups do.

use std::io::{Read, Write};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CompressionError {
    #[error("{codec:?} data is corrupt: {detail}")]
    Corrupt { codec: Codec, detail: String },
    #[error("{codec:?} data inflates past the limit of {limit_bytes} bytes")]
    TooLarge { codec: Codec, limit_bytes: usize },
}

const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
const XERIAL_HEADER_BYTES: usize = 16;
const XERIAL_BLOCK_BYTES: usize = 32 * 1024;

impl Codec {
    pub fn from_attribute(bits: i16) -> Option<Codec> {
        match bits {
            0 => Some(Codec::None),
            1 => Some(Codec::Gzip),
            2 => Some(Codec::Snappy),
            3 => Some(Codec::Lz4),
            4 => Some(Codec::Zstd),
            _ => None,
        }
    }

    pub fn attribute(self) -> i16 {
        match self {
            Codec::None => 0,
            Codec::Gzip => 1,
            Codec::Snappy => 2,
            Codec::Lz4 => 3,
            Codec::Zstd => 4,
        }
    }

    pub fn compress(self, data: &[u8]) -> Vec<u8> {
        match self {
            Codec::None => data.to_vec(),
            Codec::Gzip => {
                let mut encoder =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                encoder
                    .write_all(data)
                    .expect("writing to a Vec cannot fail");
                encoder.finish().expect("writing to a Vec cannot fail")
            }
            Codec::Snappy => xerial_compress(data),
            Codec::Lz4 => {
                let mut encoder = lz4_flex::frame::FrameEncoder::new(Vec::new());
                encoder
                    .write_all(data)
                    .expect("writing to a Vec cannot fail");
                encoder.finish().expect("writing to a Vec cannot fail")
            }
            Codec::Zstd => zstd::bulk::compress(data, 3).expect("zstd compression of memory"),
        }
    }

    /// Decompresses `data`, refusing to produce more than `limit_bytes`.
    pub fn decompress(self, data: &[u8], limit_bytes: usize) -> Result<Vec<u8>, CompressionError> {
        let corrupt = |detail: String| CompressionError::Corrupt {
            codec: self,
            detail,
        };
        let out = match self {
            Codec::None => data.to_vec(),
            Codec::Gzip => read_bounded(flate2::read::GzDecoder::new(data), limit_bytes, self)?,
            Codec::Lz4 => {
                read_bounded(lz4_flex::frame::FrameDecoder::new(data), limit_bytes, self)?
            }
            Codec::Zstd => {
                let decoder =
                    zstd::stream::read::Decoder::new(data).map_err(|e| corrupt(e.to_string()))?;
                read_bounded(decoder, limit_bytes, self)?
            }
            Codec::Snappy => snappy_decompress(data, limit_bytes)?,
        };
        if out.len() > limit_bytes {
            return Err(CompressionError::TooLarge {
                codec: self,
                limit_bytes,
            });
        }
        Ok(out)
    }
}

fn read_bounded(
    reader: impl Read,
    limit_bytes: usize,
    codec: Codec,
) -> Result<Vec<u8>, CompressionError> {
    let mut out = Vec::new();
    let read = reader
        .take((limit_bytes as u64).saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| CompressionError::Corrupt {
            codec,
            detail: e.to_string(),
        })?;
    if read > limit_bytes {
        return Err(CompressionError::TooLarge { codec, limit_bytes });
    }
    Ok(out)
}

fn xerial_compress(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(XERIAL_HEADER_BYTES + data.len() / 2);
    out.extend_from_slice(&XERIAL_MAGIC);
    out.extend_from_slice(&1i32.to_be_bytes()); // version
    out.extend_from_slice(&1i32.to_be_bytes()); // minimum compatible version
    let mut encoder = snap::raw::Encoder::new();
    for block in data.chunks(XERIAL_BLOCK_BYTES) {
        let compressed = encoder
            .compress_vec(block)
            .expect("snappy compression of memory");
        out.extend_from_slice(&(compressed.len() as i32).to_be_bytes());
        out.extend_from_slice(&compressed);
    }
    out
}

fn snappy_decompress(data: &[u8], limit_bytes: usize) -> Result<Vec<u8>, CompressionError> {
    let corrupt = |detail: String| CompressionError::Corrupt {
        codec: Codec::Snappy,
        detail,
    };
    let too_large = CompressionError::TooLarge {
        codec: Codec::Snappy,
        limit_bytes,
    };
    let mut decoder = snap::raw::Decoder::new();
    if !data.starts_with(&XERIAL_MAGIC) {
        let len = snap::raw::decompress_len(data).map_err(|e| corrupt(e.to_string()))?;
        if len > limit_bytes {
            return Err(too_large);
        }
        return decoder
            .decompress_vec(data)
            .map_err(|e| corrupt(e.to_string()));
    }
    let mut rest = data
        .get(XERIAL_HEADER_BYTES..)
        .ok_or_else(|| corrupt("xerial header truncated".into()))?;
    let mut out = Vec::new();
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(corrupt("xerial block length truncated".into()));
        }
        let block_len = i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let block = usize::try_from(block_len)
            .ok()
            .and_then(|len| rest.get(4..4 + len))
            .ok_or_else(|| {
                corrupt(format!(
                    "xerial block of {block_len} bytes overruns the data"
                ))
            })?;
        let len = snap::raw::decompress_len(block).map_err(|e| corrupt(e.to_string()))?;
        if out.len() + len > limit_bytes {
            return Err(too_large);
        }
        let start = out.len();
        out.resize(start + len, 0);
        decoder
            .decompress(block, &mut out[start..])
            .map_err(|e| corrupt(e.to_string()))?;
        rest = &rest[4 + block.len()..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_codec_round_trips_and_respects_the_limit() {
        let data: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for codec in [
            Codec::None,
            Codec::Gzip,
            Codec::Snappy,
            Codec::Lz4,
            Codec::Zstd,
        ] {
            let compressed = codec.compress(&data);
            assert_eq!(
                codec.decompress(&compressed, data.len()).unwrap(),
                data,
                "{codec:?}"
            );
            assert!(
                matches!(
                    codec.decompress(&compressed, data.len() - 1),
                    Err(CompressionError::TooLarge { .. })
                ),
                "{codec:?} must refuse to inflate past the limit"
            );
        }
    }

    #[test]
    fn raw_snappy_blocks_are_read_too() {
        let data = b"hello hello hello hello".repeat(50);
        let raw = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        assert_eq!(Codec::Snappy.decompress(&raw, 1 << 20).unwrap(), data);
    }

    #[test]
    fn garbage_is_a_typed_error() {
        for codec in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
            assert!(
                codec
                    .decompress(b"\x82SNAPPY\0garbage-garbage", 1 << 20)
                    .is_err(),
                "{codec:?}"
            );
        }
    }
}
