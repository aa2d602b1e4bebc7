//! Fuzz the q parser: never panic; whatever parses prints to text that parses to the same query.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(q) = misto_query::q::parse(s) {
            let printed = q.to_string();
            let again = misto_query::q::parse(&printed).expect("printed query parses");
            assert_eq!(again, q, "round trip of {printed:?}");
        }
    }
});
