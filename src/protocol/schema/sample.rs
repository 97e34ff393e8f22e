//! Random well-formed requests, made from the schema: short arrays, strings and byte fields,
//! nulls where a field allows them, known tagged fields sometimes present and an unknown one now
//! and then. The tests check the walker and the crate agree on every one of them, and the
//! fuzzers start from them (`fuzz/seeds`).

use super::{Field, Kind, Message, Struct};

/// A small deterministic generator (xorshift64*), so that a seed replays.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// The most elements an array gets, and how deep arrays nest before they are left empty.
const ARRAY_ELEMENTS_MAX: u64 = 3;
const ARRAY_DEPTH_MAX: u32 = 4;
/// Tags no message defines, sent now and then as unknown tagged fields.
const UNKNOWN_TAG_BASE: u32 = 10_000;

/// One random encoding of `message` at `version` (the body, without the request header).
pub fn sample(message: &Message, version: i16, rng: &mut Rng) -> Vec<u8> {
    let mut writer = Writer {
        out: Vec::new(),
        version,
        flexible: message.flexible.has(version),
        rng,
        depth: 0,
    };
    writer.structure(message.body);
    writer.out
}

/// A whole request frame body (header v1/v2 as the version needs, then `sample`), without the
/// four-byte length prefix.
pub fn sample_request(
    message: &Message,
    version: i16,
    correlation_id: i32,
    rng: &mut Rng,
) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&message.api_key.to_be_bytes());
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&correlation_id.to_be_bytes());
    let header_version = crate::protocol::bounded::header_version(message, version);
    if header_version >= 1 {
        let client = b"sample";
        out.extend_from_slice(&(client.len() as i16).to_be_bytes());
        out.extend_from_slice(client);
    }
    if header_version >= 2 {
        out.push(0); // no tagged fields
    }
    out.extend_from_slice(&sample(message, version, rng));
    out
}

struct Writer<'a> {
    out: Vec<u8>,
    version: i16,
    flexible: bool,
    rng: &'a mut Rng,
    depth: u32,
}

impl Writer<'_> {
    fn uvarint(&mut self, mut value: u32) {
        while value >= 0x80 {
            self.out.push((value as u8) | 0x80);
            value >>= 7;
        }
        self.out.push(value as u8);
    }

    fn structure(&mut self, structure: &'static Struct) {
        for field in structure.fields {
            if field.versions.has(self.version)
                && !(self.flexible && field.is_tagged_at(self.version))
            {
                self.field(field);
            }
        }
        if !self.flexible {
            return;
        }
        let mut tagged: Vec<(u32, Vec<u8>)> = Vec::new();
        for field in structure.fields {
            if field.versions.has(self.version)
                && field.is_tagged_at(self.version)
                && self.rng.below(2) == 0
            {
                let outer = std::mem::take(&mut self.out);
                self.field(field);
                let value = std::mem::replace(&mut self.out, outer);
                tagged.push((field.tag.expect("a tagged field has a tag"), value));
            }
        }
        if self.rng.below(8) == 0 {
            let len = self.rng.below(4) as usize;
            let value = (0..len).map(|_| self.rng.next_u64() as u8).collect();
            tagged.push((UNKNOWN_TAG_BASE + self.rng.below(100) as u32, value));
        }
        self.uvarint(tagged.len() as u32);
        for (tag, value) in tagged {
            self.uvarint(tag);
            self.uvarint(value.len() as u32);
            self.out.extend_from_slice(&value);
        }
    }

    fn field(&mut self, field: &'static Field) {
        let compact = match field.flexible {
            Some(versions) => versions.has(self.version),
            None => self.flexible,
        };
        let nullable = field.nullable.has(self.version);
        self.value(&field.kind, compact, nullable);
    }

    /// The length prefix of a string (`short`), bytes or array: `None` writes a null.
    fn length(&mut self, compact: bool, short: bool, len: Option<usize>) {
        match (compact, len) {
            (true, None) => self.uvarint(0),
            (true, Some(len)) => self.uvarint(len as u32 + 1),
            (false, None) if short => self.out.extend_from_slice(&(-1i16).to_be_bytes()),
            (false, None) => self.out.extend_from_slice(&(-1i32).to_be_bytes()),
            (false, Some(len)) if short => self.out.extend_from_slice(&(len as i16).to_be_bytes()),
            (false, Some(len)) => self.out.extend_from_slice(&(len as i32).to_be_bytes()),
        }
    }

    fn random_bytes(&mut self, len: usize) {
        for _ in 0..len {
            let byte = self.rng.next_u64() as u8;
            self.out.push(byte);
        }
    }

    fn value(&mut self, kind: &'static Kind, compact: bool, nullable: bool) {
        let null = nullable && self.rng.below(5) == 0;
        match kind {
            Kind::Bool => self.out.push(self.rng.below(2) as u8),
            Kind::Int8 => self.random_bytes(1),
            Kind::Int16 | Kind::UInt16 => self.random_bytes(2),
            Kind::Int32 | Kind::UInt32 => self.random_bytes(4),
            Kind::Int64 | Kind::Float64 => self.random_bytes(8),
            Kind::Uuid => self.random_bytes(16),
            Kind::String if null => self.length(compact, true, None),
            Kind::String => {
                let len = self.rng.below(9) as usize;
                self.length(compact, true, Some(len));
                for _ in 0..len {
                    let letter = b'a' + self.rng.below(26) as u8;
                    self.out.push(letter);
                }
            }
            Kind::Bytes | Kind::Records if null => self.length(compact, false, None),
            Kind::Bytes | Kind::Records => {
                let len = self.rng.below(17) as usize;
                self.length(compact, false, Some(len));
                self.random_bytes(len);
            }
            Kind::Struct(_) if null => self.out.push(0xff),
            Kind::Struct(structure) => {
                if nullable {
                    self.out.push(1);
                }
                self.structure(structure)
            }
            Kind::Array(_) if null => self.length(compact, false, None),
            Kind::Array(element) => {
                let count = if self.depth >= ARRAY_DEPTH_MAX {
                    0
                } else {
                    self.rng.below(ARRAY_ELEMENTS_MAX + 1) as usize
                };
                self.length(compact, false, Some(count));
                self.depth += 1;
                for _ in 0..count {
                    self.value(element, compact, false);
                }
                self.depth -= 1;
            }
        }
    }
}
