//! The proxy's configuration file, as the operator renders it and as people write it by
//! hand, then broken: bytes, lines, and the YAML that attacks parsers (alias bombs, deep
//! nesting, huge numbers). It parses and validates, or it is refused with an error.

use claimcheck::config::ProxyConfig;

use super::alloc;
use super::mutate::mutate;
use super::rng::Rng;
use super::runner::Target;

const VALID: [&str; 3] = [
    "listen: 127.0.0.1:7000\nupstream: {address: 'temporal:7233', tls: {caFile: /etc/ca.pem}}\nthresholdBytes: 1024\ndrivers: [{url: 'file:///data', prefix: 'billing/'}]\n",
    "upstream:\n  address: temporal:7233\nthresholdBytes: 262144\ndrivers:\n  - url: s3://payloads/\n    prefix: team-a/\n    minBytes: 0\n    options: {region: eu-west-1, endpoint: 'http://127.0.0.1:9000'}\n  - url: gs://cold/\n    minBytes: 1048576\nlimits: {maxMessageBytes: 134217728, inflightBytes: 268435456, parallelism: 8}\ncache: {maxEntries: 16, maxBytes: 1048576}\n",
    "{\"upstream\": {\"address\": \"temporal:7233\"}, \"drivers\": [{\"url\": \"memory://\", \"acceptUnscopedKeys\": true}], \"refreshAfterSeconds\": 3600}\n",
];

const HOSTILE: [&str; 7] = [
    "a: &a [*a, *a, *a]\nb: &b [*a, *a, *a, *a]\nc: &c [*b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c]\n",
    "thresholdBytes: 99999999999999999999999999\n",
    "limits: {parallelism: -1}\n",
    "drivers: !!binary aGVsbG8=\n",
    "<<: *nowhere\n",
    "listen: '\u{0}'\n",
    "%YAML 9.9\n---\n",
];

pub struct Config;

impl Target for Config {
    fn name(&self) -> &'static str {
        "config"
    }

    fn case(&self, rng: &mut Rng) -> Result<usize, String> {
        let text = text(rng);
        alloc::start();
        if let Ok(config) = claimcheck::yaml::from_str::<ProxyConfig>(&text) {
            let _ = config.validate();
            let written = claimcheck::yaml::to_string(&config).map_err(|e| e.to_string())?;
            match claimcheck::yaml::from_str::<ProxyConfig>(&written) {
                Ok(again) if again == config => {}
                other => {
                    return Err(format!(
                        "a configuration that read did not read back once written: {other:?}"
                    ));
                }
            }
        }
        Ok(text.len())
    }
}

fn text(rng: &mut Rng) -> String {
    let mut text = rng.pick(&VALID).to_string();
    match rng.below(4) {
        0 => {}
        1 => {
            let mut bytes = text.into_bytes();
            mutate(rng, &mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
        2 => {
            let hostile: &&str = rng.pick(&HOSTILE);
            text.push_str(hostile);
        }
        _ => {
            let depth = 1 + rng.below(10_000);
            text = format!("drivers: {}{}\n", "[".repeat(depth), "]".repeat(depth));
        }
    }
    text
}
