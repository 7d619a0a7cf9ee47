//! `[web]`: the browser client natter serves at `/` on its HTTP listener.
//!
//! Validation checks the values only; it must never resolve or connect to the URL it is given.

use serde::Deserialize;

use crate::check::invalid;
use crate::ConfigError;

/// The web client.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// Whether `/`, `/web/…` and `/v1/client-config` are served.
    pub enabled: bool,
    /// The MQTT-over-WebSocket URL pages connect to (`wss://chat.example.com/mqtt`). Empty: the
    /// host the page was loaded from, with the port of `mqtt.ws` (or, with only secure WebSocket
    /// on, `wss` on `mqtt.tls.wss`).
    pub ws_url: String,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            enabled: true,
            ws_url: String::new(),
        }
    }
}

/// What `web.ws_url` must look like, in words.
const WS_URL: &str = "empty, or a ws:// or wss:// URL with a host and no spaces, quotes, \
                      commas or semicolons";

impl WebConfig {
    /// Checks `[web]`: `ws_url` is empty or a plain `ws://`/`wss://` URL. It is written into the
    /// page's Content-Security-Policy, so characters that would end a CSP source are refused.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let url = self.ws_url.as_str();
        if url.is_empty() {
            return Ok(());
        }
        let rest = url
            .strip_prefix("ws://")
            .or_else(|| url.strip_prefix("wss://"));
        let host_ok = rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'));
        let chars_ok = url
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '\'' | '"' | ',' | ';' | '\\'));
        if !(host_ok && chars_ok) {
            return invalid("web.ws_url", format!("{url:?}"), WS_URL);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;

    fn err(text: &str) -> String {
        Config::parse(text, "t.toml").unwrap_err().to_string()
    }

    #[test]
    fn the_web_client_is_on_by_default_and_derives_its_url() {
        let c = Config::parse("", "t.toml").unwrap();
        assert!(c.web.enabled);
        assert_eq!(c.web.ws_url, "");
    }

    #[test]
    fn a_ws_url_is_taken_when_it_is_a_plain_websocket_url() {
        for ok in [
            "ws://127.0.0.1:8083/mqtt",
            "wss://chat.example.com/mqtt",
            "wss://[::1]:9/m",
        ] {
            let c = Config::parse(&format!("[web]\nws_url = {ok:?}\n"), "t.toml").unwrap();
            assert_eq!(c.web.ws_url, ok);
        }
    }

    #[test]
    fn a_bad_ws_url_names_key_value_and_expectation() {
        for bad in [
            "http://x/mqtt",
            "ws://",
            "wss:///mqtt",
            "ws://a b/mqtt",
            "ws://a/mqtt; script-src *",
            "ws://a/'unsafe-inline'",
        ] {
            let e = err(&format!("[web]\nws_url = {bad:?}\n"));
            assert!(e.contains("web.ws_url"), "{e}");
            assert!(e.contains("ws:// or wss://"), "{e}");
        }
        let e = err("[web]\nenabled = \"yes\"\n");
        assert!(e.contains("web.enabled"), "{e}");
    }
}
