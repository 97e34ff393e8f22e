//! Record batches as a producer sends them. See sluice::fuzzing::record_batches.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sluice::fuzzing::record_batches(data));
