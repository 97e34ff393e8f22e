//! Compressed data of each codec. See sluice::fuzzing::decompress.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sluice::fuzzing::decompress(data));
