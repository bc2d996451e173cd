//! The seed's counter as a plugin: each request gets the next number, 0, 1, 2, …
//!
//! The count is shared by every worker thread (an atomic), and handed to the next generation when
//! the plugin is rebuilt and reloaded, so a reload does not reset it.
//!
//! ```toml
//! [plugins.counter]
//! start = 100   # the first number (default 0)
//! ```
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};

use plugin_api::{InitError, Plugin, Request, Response, ResponseBuilder};

/// `[plugins.counter]`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The first number served.
    #[serde(default)]
    pub start: u64,
}

/// Counts requests.
pub struct Counter {
    next: AtomicU64,
}

impl Plugin for Counter {
    type Config = Settings;

    fn new(settings: Settings) -> Result<Self, InitError> {
        Ok(Counter {
            next: AtomicU64::new(settings.start),
        })
    }

    fn handle(&self, _request: &Request) -> Response {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        ResponseBuilder::empty_200()
            .body(n.to_string())
            .content_type("text/plain")
            .build()
            .unwrap_or_else(|_| {
                ResponseBuilder::new(500)
                    .build()
                    .expect("a bare 500 is valid")
            })
    }

    fn save(&self) -> Result<Option<Vec<u8>>, InitError> {
        Ok(Some(
            self.next.load(Ordering::Relaxed).to_le_bytes().to_vec(),
        ))
    }

    fn restore(&self, state: &[u8]) -> Result<(), InitError> {
        let bytes: [u8; 8] = state.try_into().map_err(|_| "saved state is not 8 bytes")?;
        self.next
            .store(u64::from_le_bytes(bytes), Ordering::Relaxed);
        plugin_api::info!("count restored at {}", u64::from_le_bytes(bytes));
        Ok(())
    }
}

plugin_api::export_plugin!(Counter);

#[cfg(test)]
mod tests {
    use plugin_api::RequestParts;

    use super::*;

    #[test]
    fn counts_and_hands_over() {
        let counter = Counter::new(Settings { start: 5 }).unwrap();
        let request = Request::new(RequestParts::default());
        assert_eq!(counter.handle(&request).body(), b"5");
        assert_eq!(counter.handle(&request).body(), b"6");
        let next = Counter::new(Settings::default()).unwrap();
        next.restore(&counter.save().unwrap().unwrap()).unwrap();
        assert_eq!(next.handle(&request).body(), b"7");
        assert!(next.restore(b"bad").is_err());
    }
}
