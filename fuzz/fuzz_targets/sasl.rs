//! What a client sends to authenticate (SASL/PLAIN, SCRAM), stored credentials' text and client
//! certificates. See sluice::fuzzing::sasl.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sluice::fuzzing::sasl(data));
