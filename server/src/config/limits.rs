//! `[limits]` and `[limits.plugins.NAME]`: the server's bounds and the host's per-plugin policy,
//! checked into [`Limits`] and [`BulkheadPolicy`]. The rest of `config.toml` is in `mod.rs`.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::in_range;
use crate::{BulkheadPolicy, Limits};

/// Where a bad value is (if the parser says), and what is wrong with it.
type Failure = (Option<Range<usize>>, String);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    max_connections: Option<Spanned<i64>>,
    max_queued: Option<Spanned<i64>>,
    max_head_bytes: Option<Spanned<i64>>,
    max_target_bytes: Option<Spanned<i64>>,
    max_headers: Option<Spanned<i64>>,
    max_body_bytes: Option<Spanned<i64>>,
    buffer_body_bytes: Option<Spanned<i64>>,
    min_data_rate: Option<Spanned<i64>>,
    min_data_rate_grace_ms: Option<Spanned<i64>>,
    max_buffered_bytes: Option<Spanned<i64>>,
    header_timeout_ms: Option<Spanned<i64>>,
    body_timeout_ms: Option<Spanned<i64>>,
    keep_alive_timeout_ms: Option<Spanned<i64>>,
    write_timeout_ms: Option<Spanned<i64>>,
    drain_timeout_ms: Option<Spanned<i64>>,
    drain_delay_ms: Option<Spanned<i64>>,
    handler_timeout_ms: Option<Spanned<i64>>,
    queue_timeout_ms: Option<Spanned<i64>>,
    max_lost_workers: Option<Spanned<i64>>,
    #[serde(default)]
    plugins: BTreeMap<Spanned<String>, RawPluginLimits>,
}

/// `[limits.plugins.NAME]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPluginLimits {
    compress: Option<bool>,
    handler_timeout_ms: Option<Spanned<i64>>,
    max_concurrency: Option<Spanned<i64>>,
    queue_timeout_ms: Option<Spanned<i64>>,
    max_queued: Option<Spanned<i64>>,
    max_body_bytes: Option<Spanned<i64>>,
    buffer_body_bytes: Option<Spanned<i64>>,
}

impl RawLimits {
    /// The limits, over `l`, and each plugin's.
    pub fn apply(
        self,
        mut l: Limits,
    ) -> Result<(Limits, BTreeMap<String, BulkheadPolicy>), Failure> {
        fn set<T>(
            value: Option<Spanned<i64>>,
            min: i64,
            max: i64,
            key: &str,
            out: &mut T,
            convert: impl Fn(u64) -> T,
        ) -> Result<(), Failure> {
            if let Some(v) = value {
                let n = in_range(&v, min, max, &format!("limits.{key}"))
                    .map_err(|m| (Some(v.span()), m))?;
                *out = convert(n);
            }
            Ok(())
        }
        const BIG: i64 = 1 << 40;
        let ms = Duration::from_millis;
        set(
            self.max_connections,
            1,
            10_000_000,
            "max_connections",
            &mut l.max_connections,
            |n| n as usize,
        )?;
        set(
            self.max_queued,
            1,
            10_000_000,
            "max_queued",
            &mut l.max_queued,
            |n| n as usize,
        )?;
        set(
            self.max_head_bytes,
            256,
            BIG,
            "max_head_bytes",
            &mut l.max_head_bytes,
            |n| n as usize,
        )?;
        set(
            self.max_target_bytes,
            16,
            BIG,
            "max_target_bytes",
            &mut l.max_target_bytes,
            |n| n as usize,
        )?;
        set(
            self.max_headers,
            1,
            Limits::MAX_HEADERS as i64,
            "max_headers",
            &mut l.max_headers,
            |n| n as usize,
        )?;
        set(
            self.max_body_bytes,
            0,
            BIG,
            "max_body_bytes",
            &mut l.max_body_bytes,
            |n| n as usize,
        )?;
        set(
            self.buffer_body_bytes,
            0,
            BIG,
            "buffer_body_bytes",
            &mut l.buffer_body_bytes,
            |n| n as usize,
        )?;
        set(
            self.min_data_rate,
            0,
            BIG,
            "min_data_rate",
            &mut l.min_data_rate,
            |n| n,
        )?;
        set(
            self.min_data_rate_grace_ms,
            0,
            BIG,
            "min_data_rate_grace_ms",
            &mut l.min_data_rate_grace,
            ms,
        )?;
        set(
            self.max_buffered_bytes,
            0,
            i64::MAX,
            "max_buffered_bytes",
            &mut l.max_buffered_bytes,
            |n| n as usize,
        )?;
        set(
            self.header_timeout_ms,
            1,
            BIG,
            "header_timeout_ms",
            &mut l.header_timeout,
            ms,
        )?;
        set(
            self.body_timeout_ms,
            1,
            BIG,
            "body_timeout_ms",
            &mut l.body_timeout,
            ms,
        )?;
        set(
            self.keep_alive_timeout_ms,
            1,
            BIG,
            "keep_alive_timeout_ms",
            &mut l.keep_alive_timeout,
            ms,
        )?;
        set(
            self.write_timeout_ms,
            1,
            BIG,
            "write_timeout_ms",
            &mut l.write_timeout,
            ms,
        )?;
        set(
            self.drain_timeout_ms,
            0,
            BIG,
            "drain_timeout_ms",
            &mut l.drain_timeout,
            ms,
        )?;
        set(
            self.drain_delay_ms,
            0,
            BIG,
            "drain_delay_ms",
            &mut l.drain_delay,
            ms,
        )?;
        set(
            self.handler_timeout_ms,
            1,
            BIG,
            "handler_timeout_ms",
            &mut l.handler_timeout,
            ms,
        )?;
        set(
            self.queue_timeout_ms,
            0,
            BIG,
            "queue_timeout_ms",
            &mut l.queue_timeout,
            ms,
        )?;
        set(
            self.max_lost_workers,
            0,
            1_000_000,
            "max_lost_workers",
            &mut l.max_lost_workers,
            |n| Some(n as usize),
        )?;
        let mut plugins = BTreeMap::new();
        for (name, raw) in self.plugins {
            let (span, name) = (name.span(), name.into_inner());
            if crate::plugin::plugin_name(Path::new(&format!("lib{name}.so"))) != Some(&name) {
                let why = format!("limits.plugins.{name:?}: not a plugin name");
                return Err((Some(span), why));
            }
            let policy = raw.policy(&name)?;
            plugins.insert(name, policy);
        }
        Ok((l, plugins))
    }
}

impl RawPluginLimits {
    fn policy(self, name: &str) -> Result<BulkheadPolicy, Failure> {
        let check = |v: Option<Spanned<i64>>, min: i64, max: i64, key: &str| {
            v.map(|v| {
                in_range(&v, min, max, &format!("limits.plugins.{name}.{key}"))
                    .map_err(|m| (Some(v.span()), m))
            })
            .transpose()
        };
        const BIG: i64 = 1 << 40;
        let ms = |n: Option<u64>| n.map(Duration::from_millis);
        Ok(BulkheadPolicy {
            handler_timeout: ms(check(
                self.handler_timeout_ms,
                1,
                BIG,
                "handler_timeout_ms",
            )?),
            max_concurrency: check(self.max_concurrency, 1, 1_000_000, "max_concurrency")?
                .map(|n| n as usize),
            queue_timeout: ms(check(self.queue_timeout_ms, 0, BIG, "queue_timeout_ms")?),
            max_queued: check(self.max_queued, 1, 10_000_000, "max_queued")?.map(|n| n as usize),
            max_body_bytes: check(self.max_body_bytes, 0, i64::MAX, "max_body_bytes")?,
            buffer_body_bytes: check(self.buffer_body_bytes, 0, BIG, "buffer_body_bytes")?,
            compress: self.compress,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    #[test]
    fn plugin_limits_are_read_and_checked() {
        let text = "[limits]\nhandler_timeout_ms = 500\nqueue_timeout_ms = 20\nmax_lost_workers = 3\n\
                    [limits.plugins.slow]\nmax_concurrency = 2\nhandler_timeout_ms = 9000\n";
        let c = Config::parse(text, Path::new("config.toml")).unwrap();
        assert_eq!(c.limits.handler_timeout.as_millis(), 500);
        assert_eq!(c.limits.queue_timeout.as_millis(), 20);
        assert_eq!(c.limits.max_lost_workers, Some(3));
        let slow = &c.plugin_limits["slow"];
        assert_eq!(slow.max_concurrency, Some(2));
        assert_eq!(slow.handler_timeout.map(|d| d.as_millis()), Some(9000));
        assert_eq!((slow.queue_timeout, slow.max_queued), (None, None));
        assert!(
            c.plugin_settings.is_empty(),
            "not the plugin's own settings"
        );

        let text = "[limits]\nbuffer_body_bytes = 1024\nmin_data_rate = 1000\n\
                    min_data_rate_grace_ms = 200\nmax_buffered_bytes = 65536\n\
                    [limits.plugins.up]\nmax_body_bytes = 1073741824\nbuffer_body_bytes = 0\n";
        let c = Config::parse(text, Path::new("config.toml")).unwrap();
        assert_eq!(c.limits.buffer_body_bytes, 1024);
        assert_eq!(c.limits.min_data_rate, 1000);
        assert_eq!(c.limits.min_data_rate_grace.as_millis(), 200);
        assert_eq!(c.limits.max_buffered_bytes, 65536);
        let up = &c.plugin_limits["up"];
        assert_eq!(
            (up.max_body_bytes, up.buffer_body_bytes),
            (Some(1 << 30), Some(0))
        );

        let bad = [
            ("[limits]\nmin_data_rate = -1\n", 2, "limits.min_data_rate"),
            (
                "[limits.plugins.up]\nmax_body_bytes = -5\n",
                2,
                "limits.plugins.up.max_body_bytes",
            ),
            (
                "[limits.plugins.slow]\nmax_concurrency = 0\n",
                2,
                "limits.plugins.slow.max_concurrency",
            ),
            (
                "[limits.plugins.slow]\nmax_concurency = 2\n",
                2,
                "max_concurency",
            ),
            (
                "[limits.plugins.\"a b\"]\nmax_concurrency = 2\n",
                1,
                "not a plugin name",
            ),
            (
                "[limits]\nhandler_timeout_ms = 0\n",
                2,
                "limits.handler_timeout_ms",
            ),
        ];
        for (text, line, says) in bad {
            let e = Config::parse(text, Path::new("config.toml")).unwrap_err();
            assert_eq!(e.line, Some(line), "{text}: {e}");
            assert!(e.to_string().contains(says), "{text}: {e}");
        }
    }
}
