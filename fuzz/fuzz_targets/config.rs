//! The gateway's configuration file: parsing, checking and locating errors in the text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_gateway::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Config::from_toml(text) {
        Ok(config) => {
            let _ = config.worker_threads();
        }
        Err(error) => {
            let _ = error.located_in(text).to_string();
        }
    }
});
