//! Bounded decoding: every request frame is walked against its schema ([`super::schema`],
//! generated from Kafka's message definitions) before the kafka-protocol crate decodes a byte of
//! it. The walk allocates nothing; it checks every count and length against the bytes that are
//! really there, every varint for overflow, every null against the field's nullable versions,
//! every tagged field against its declared size, every string for UTF-8, and adds up what the
//! decoded message will take in memory, so that the caller can charge it (or refuse it) first.
//!
//! Why a validating pre-pass and not decoders of our own: the crate's message types are what
//! every handler is written against, and its decoders are correct on valid input; what they lack
//! is bounds (`Vec::with_capacity(count)` straight off the wire aborts the process when the
//! allocation fails, and nothing can catch that). A walk over the same schema closes that hole
//! for every API and version at once, costs one pass over the request's fixed fields (record
//! batches are skipped by length, never read), and leaves no second set of message types to
//! keep in step. Once the walk accepts a frame, every array the crate sizes holds that many
//! elements in the frame, so no count can size anything larger than what was received.
//! The walk is stricter than the crate where the crate is lax (a tagged field must fill exactly
//! its declared size; a varint may not run past 32 bits), never more lenient.

use super::schema::{self, Field, Kind, Message, Struct};

/// Limits on one request.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The most memory the decoded request may take (the frame's own bytes aside).
    pub decoded_bytes_max: u64,
}

/// What decoded unknown tagged fields take: the crate keeps them in a `BTreeMap<i32, Bytes>`,
/// whose first leaf node (eleven slots) is about 408 bytes, and whose later entries cost at most
/// about 100 bytes each once nodes split (a leaf keeps at least five).
const UNKNOWN_TAG_FIRST_MEMORY_BYTES: u64 = 512;
const UNKNOWN_TAG_MEMORY_BYTES: u64 = 128;

/// What is wrong with a request, and where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{structure}.{field} at byte {at}: {problem}")]
pub struct Malformed {
    pub structure: &'static str,
    pub field: &'static str,
    pub at: usize,
    pub problem: Problem,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    #[error("needs {need} more bytes, {have} remain")]
    Truncated { need: u64, have: usize },
    #[error("a count of {count} elements with only {have} bytes left")]
    CountOverrun { count: u64, have: usize },
    #[error("negative length {0}")]
    NegativeLength(i64),
    #[error("null where the field may not be null")]
    Null,
    #[error("nullable struct marker {0} (neither -1 nor 1)")]
    StructMarker(i8),
    #[error("a varint longer than 32 bits")]
    VarintTooLong,
    #[error("a string that is not UTF-8")]
    NotUtf8,
    #[error("tag {tag} is not valid in this version")]
    TagNotValid { tag: u32 },
    #[error("tagged field declares {declared} bytes, its value takes {used}")]
    TaggedSize { declared: usize, used: usize },
    #[error("would take {bytes} bytes decoded, over the limit of {limit}")]
    TooExpensive { bytes: u64, limit: u64 },
    #[error("version {0} is not a version of this message")]
    Version(i16),
}

/// A walked message: where it ends in the input, and what it will take decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Walked {
    pub end: usize,
    pub decoded_bytes: u64,
}

/// Walks `message` at `version` from the start of `bytes`. Bytes after the message are not
/// looked at (Kafka ignores them; some clients send a few).
pub fn walk(
    message: &Message,
    version: i16,
    bytes: &[u8],
    limits: Limits,
) -> Result<Walked, Malformed> {
    let mut walker = Walker {
        bytes,
        at: 0,
        end: bytes.len(),
        version,
        flexible: message.flexible.has(version),
        memory: 0,
        limit: limits.decoded_bytes_max,
        structure: message.body.name,
        field: "(version)",
    };
    if !message.valid.has(version) {
        return Err(walker.fail(Problem::Version(version)));
    }
    walker.charge(message.body.memory_bytes as u64)?;
    walker.structure(message.body)?;
    Ok(Walked {
        end: walker.at,
        decoded_bytes: walker.memory,
    })
}

/// The request header version for an API's request version, as Kafka sets it: 2 for flexible
/// versions, 1 otherwise, and 0 only for ControlledShutdown v0.
pub fn header_version(message: &Message, version: i16) -> i16 {
    const CONTROLLED_SHUTDOWN: i16 = 7;
    if message.api_key == CONTROLLED_SHUTDOWN && version == 0 {
        0
    } else if message.flexible.has(version) {
        2
    } else {
        1
    }
}

/// Walks a whole request frame (header, then body) for an API key and version the caller has
/// already read from its first four bytes. `Ok` gives where the body starts and what the body
/// will take decoded.
pub fn walk_request(
    api_key: i16,
    version: i16,
    frame: &[u8],
    limits: Limits,
) -> Result<(usize, Walked), Malformed> {
    let Some(message) = schema::request(api_key) else {
        return Err(Malformed {
            structure: "RequestHeader",
            field: "RequestApiKey",
            at: 0,
            problem: Problem::Version(version),
        });
    };
    let header = walk(
        &schema::REQUEST_HEADER_MESSAGE,
        header_version(message, version),
        frame,
        limits,
    )?;
    let body = &frame[header.end..];
    let limits = Limits {
        decoded_bytes_max: limits
            .decoded_bytes_max
            .saturating_sub(header.decoded_bytes),
    };
    let walked = walk(message, version, body, limits).map_err(|mut e| {
        e.at += header.end;
        e
    })?;
    Ok((header.end, walked))
}

struct Walker<'a> {
    bytes: &'a [u8],
    at: usize,
    /// Where the current region ends: the input's end, or a tagged field's.
    end: usize,
    version: i16,
    flexible: bool,
    memory: u64,
    limit: u64,
    structure: &'static str,
    field: &'static str,
}

impl Walker<'_> {
    fn fail(&self, problem: Problem) -> Malformed {
        Malformed {
            structure: self.structure,
            field: self.field,
            at: self.at,
            problem,
        }
    }

    fn remaining(&self) -> usize {
        self.end - self.at
    }

    fn charge(&mut self, bytes: u64) -> Result<(), Malformed> {
        self.memory = self.memory.saturating_add(bytes);
        if self.memory > self.limit {
            return Err(self.fail(Problem::TooExpensive {
                bytes: self.memory,
                limit: self.limit,
            }));
        }
        Ok(())
    }

    fn take(&mut self, n: usize) -> Result<&[u8], Malformed> {
        if n > self.remaining() {
            return Err(self.fail(Problem::Truncated {
                need: n as u64,
                have: self.remaining(),
            }));
        }
        let taken = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(taken)
    }

    fn skip(&mut self, n: usize) -> Result<(), Malformed> {
        self.take(n).map(|_| ())
    }

    fn i16(&mut self) -> Result<i16, Malformed> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Result<i32, Malformed> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// An unsigned varint of at most 32 bits (five bytes, the last with no more than four).
    fn uvarint(&mut self) -> Result<u32, Malformed> {
        let mut value: u32 = 0;
        for index in 0..5 {
            let byte = self.take(1)?[0];
            if index == 4 && byte > 0x0f {
                return Err(self.fail(Problem::VarintTooLong));
            }
            value |= ((byte & 0x7f) as u32) << (index * 7);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        unreachable!("the fifth byte has no continuation bit")
    }

    fn structure(&mut self, structure: &'static Struct) -> Result<(), Malformed> {
        for field in structure.fields {
            if !field.versions.has(self.version)
                || (self.flexible && field.is_tagged_at(self.version))
            {
                continue;
            }
            self.structure = structure.name;
            self.field = field.name;
            self.field(field)?;
        }
        if self.flexible {
            self.structure = structure.name;
            self.field = "(tagged fields)";
            self.tagged_fields(structure)?;
        }
        Ok(())
    }

    fn tagged_fields(&mut self, structure: &'static Struct) -> Result<(), Malformed> {
        let count = self.uvarint()?;
        let mut seen_unknown = false;
        for _ in 0..count {
            let tag = self.uvarint()?;
            let size = self.uvarint()? as usize;
            if size > self.remaining() {
                return Err(self.fail(Problem::Truncated {
                    need: size as u64,
                    have: self.remaining(),
                }));
            }
            let known = structure.fields.iter().find(|f| f.tag == Some(tag));
            let Some(field) = known else {
                self.charge(if seen_unknown {
                    UNKNOWN_TAG_MEMORY_BYTES
                } else {
                    UNKNOWN_TAG_FIRST_MEMORY_BYTES
                })?;
                seen_unknown = true;
                self.skip(size)?;
                continue;
            };
            if !field.versions.has(self.version) || !field.tagged.has(self.version) {
                return Err(self.fail(Problem::TagNotValid { tag }));
            }
            let (start, outer_end) = (self.at, self.end);
            self.end = start + size;
            self.field = field.name;
            let walked = self.field(field);
            self.end = outer_end;
            walked?;
            if self.at != start + size {
                return Err(self.fail(Problem::TaggedSize {
                    declared: size,
                    used: self.at - start,
                }));
            }
            self.structure = structure.name;
        }
        Ok(())
    }

    fn field(&mut self, field: &'static Field) -> Result<(), Malformed> {
        let compact = match field.flexible {
            Some(versions) => versions.has(self.version),
            None => self.flexible,
        };
        let nullable = field.nullable.has(self.version);
        self.value(&field.kind, compact, nullable)
    }

    fn value(
        &mut self,
        kind: &'static Kind,
        compact: bool,
        nullable: bool,
    ) -> Result<(), Malformed> {
        match kind {
            Kind::Bool | Kind::Int8 => self.skip(1),
            Kind::Int16 | Kind::UInt16 => self.skip(2),
            Kind::Int32 | Kind::UInt32 => self.skip(4),
            Kind::Int64 | Kind::Float64 => self.skip(8),
            Kind::Uuid => self.skip(16),
            Kind::String => {
                let Some(len) = self.length(compact, nullable, true)? else {
                    return Ok(());
                };
                let at = self.at;
                let text = self.take(len)?;
                if std::str::from_utf8(text).is_err() {
                    self.at = at;
                    return Err(self.fail(Problem::NotUtf8));
                }
                Ok(())
            }
            Kind::Bytes | Kind::Records => match self.length(compact, nullable, false)? {
                Some(len) => self.skip(len),
                None => Ok(()),
            },
            Kind::Struct(structure) => {
                if nullable && !self.present()? {
                    return Ok(());
                }
                let (outer_structure, outer_field) = (self.structure, self.field);
                self.structure(structure)?;
                (self.structure, self.field) = (outer_structure, outer_field);
                Ok(())
            }
            Kind::Array(element) => {
                let Some(count) = self.count(compact, nullable)? else {
                    return Ok(());
                };
                self.charge(count as u64 * schema::element_memory_bytes(element))?;
                let (outer_structure, outer_field) = (self.structure, self.field);
                for _ in 0..count {
                    self.value(element, compact, false)?;
                    (self.structure, self.field) = (outer_structure, outer_field);
                }
                Ok(())
            }
        }
    }

    /// A string's (`short`: int16 when not compact) or bytes' (int32) length; `None` for null.
    fn length(
        &mut self,
        compact: bool,
        nullable: bool,
        short: bool,
    ) -> Result<Option<usize>, Malformed> {
        let len: i64 = if compact {
            self.uvarint()? as i64 - 1
        } else if short {
            self.i16()? as i64
        } else {
            self.i32()? as i64
        };
        self.null_or(len, nullable)?;
        if len < 0 {
            return Ok(None);
        }
        let len = len as usize;
        if len > self.remaining() {
            return Err(self.fail(Problem::Truncated {
                need: len as u64,
                have: self.remaining(),
            }));
        }
        Ok(Some(len))
    }

    /// An array's element count; `None` for null. Every element takes at least one byte, so a
    /// count over the bytes left is refused before anything is sized by it (Kafka's own check).
    fn count(&mut self, compact: bool, nullable: bool) -> Result<Option<usize>, Malformed> {
        let count: i64 = if compact {
            self.uvarint()? as i64 - 1
        } else {
            self.i32()? as i64
        };
        self.null_or(count, nullable)?;
        if count < 0 {
            return Ok(None);
        }
        if count as u64 > self.remaining() as u64 {
            return Err(self.fail(Problem::CountOverrun {
                count: count as u64,
                have: self.remaining(),
            }));
        }
        Ok(Some(count as usize))
    }

    /// A nullable struct's marker: -1 null, 1 present (the crate reads anything else as null;
    /// Kafka reads any negative as null: only the two values both agree on pass).
    fn present(&mut self) -> Result<bool, Malformed> {
        match self.take(1)?[0] as i8 {
            -1 => Ok(false),
            1 => Ok(true),
            other => Err(self.fail(Problem::StructMarker(other))),
        }
    }

    fn null_or(&self, len: i64, nullable: bool) -> Result<(), Malformed> {
        match len {
            -1 if !nullable => Err(self.fail(Problem::Null)),
            len if len < -1 => Err(self.fail(Problem::NegativeLength(len))),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
#[path = "bounded_tests.rs"]
mod tests;
