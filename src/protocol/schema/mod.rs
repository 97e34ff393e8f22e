//! The shape of every Kafka request, as data: for each message its fields in wire order, with
//! the versions each field exists in, where it may be null, which are tagged, and which structs
//! and arrays nest. `requests.rs` is generated from Kafka's own JSON message definitions (the
//! same files the kafka-protocol crate is generated from) by `scripts/gen_request_schemas.py`;
//! [`super::bounded`] walks a request against it before anything is decoded.

#[rustfmt::skip]
mod requests;
pub mod sample;

pub use requests::{MESSAGES, REQUEST_HEADER_MESSAGE};

/// An inclusive range of versions; `V::NONE` holds none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct V {
    pub min: i16,
    pub max: i16,
}

impl V {
    pub const NONE: V = V { min: 1, max: 0 };

    pub const fn from(min: i16) -> V {
        V { min, max: i16::MAX }
    }

    pub const fn range(min: i16, max: i16) -> V {
        V { min, max }
    }

    pub const fn has(self, version: i16) -> bool {
        self.min <= version && version <= self.max
    }
}

/// What a field holds.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Bool,
    Int8,
    Int16,
    UInt16,
    Int32,
    UInt32,
    Int64,
    Float64,
    Uuid,
    String,
    Bytes,
    /// Record batches: bytes on the wire.
    Records,
    Struct(&'static Struct),
    Array(&'static Kind),
}

#[derive(Clone, Copy, Debug)]
pub struct Field {
    pub name: &'static str,
    pub kind: Kind,
    pub versions: V,
    pub nullable: V,
    /// The tag, for a field sent in the tagged section in `tagged` versions.
    pub tag: Option<u32>,
    pub tagged: V,
    /// Overrides the message's flexible versions for this field's length prefix (the request
    /// header's client id is never compact).
    pub flexible: Option<V>,
}

impl Field {
    pub const fn new(name: &'static str, kind: Kind, versions: V) -> Field {
        Field {
            name,
            kind,
            versions,
            nullable: V::NONE,
            tag: None,
            tagged: V::NONE,
            flexible: None,
        }
    }

    pub const fn nullable(mut self, versions: V) -> Field {
        self.nullable = versions;
        self
    }

    pub const fn tagged(mut self, tag: u32, versions: V) -> Field {
        self.tag = Some(tag);
        self.tagged = versions;
        self
    }

    pub const fn flexible(mut self, versions: V) -> Field {
        self.flexible = Some(versions);
        self
    }

    /// Whether this field is in the tagged section (not in line) at `version`.
    pub fn is_tagged_at(&self, version: i16) -> bool {
        self.tag.is_some() && self.tagged.has(version)
    }
}

#[derive(Debug)]
pub struct Struct {
    pub name: &'static str,
    /// An upper estimate of what one decoded instance takes in memory, its own fields included
    /// (nested arrays are counted per element as they are walked).
    pub memory_bytes: u32,
    pub fields: &'static [Field],
}

#[derive(Debug)]
pub struct Message {
    /// -1 for the request header.
    pub api_key: i16,
    pub valid: V,
    pub flexible: V,
    pub body: &'static Struct,
}

/// The request message of an API key. `MESSAGES` is the header, then keys 0, 1, ... in order
/// (the generator sorts them; a test checks it), so this is an index.
pub fn request(api_key: i16) -> Option<&'static Message> {
    let index = usize::try_from(api_key).ok()? + 1;
    MESSAGES
        .get(index)
        .copied()
        .filter(|message| message.api_key == api_key)
}

/// In-memory bytes of one decoded element of a primitive kind (a `Struct`'s are its own).
pub fn element_memory_bytes(kind: &Kind) -> u64 {
    match kind {
        Kind::Uuid => 16,
        Kind::String | Kind::Bytes | Kind::Records => 32,
        Kind::Struct(s) => s.memory_bytes as u64,
        Kind::Array(_) => 24,
        _ => 8,
    }
}
