//! The edge's configuration file parser: any text is a configuration or an error (naming a line),
//! never a panic; a configuration it accepts survives its own TOML unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use m2m_edge::config::EdgeConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = toml::from_str::<EdgeConfig>(text) {
        let again: EdgeConfig = toml::from_str(&config.to_toml()).expect("its own TOML parses");
        assert_eq!(again, config);
    }
});
