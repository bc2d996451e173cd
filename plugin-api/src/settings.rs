//! One-line descriptions of TOML errors, naming the key: used for a plugin's settings here and for
//! `config.toml` by the host, so both read the same.

/// The line (from 1) of a TOML error in `text`, and a one-line message that names the key
/// (`limits.max_body_bytes: invalid type: string "big", expected i64`).
pub fn describe(text: &str, error: &toml::de::Error) -> (Option<usize>, String) {
    let message = error.message().trim().replace('\n', " ");
    let Some(span) = error.span() else {
        return (None, message);
    };
    let at = span.start.min(text.len());
    let line = text.as_bytes()[..at]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1;
    match key_at(text, at) {
        Some(key) if !message.contains(&key) => (Some(line), format!("{key}: {message}")),
        _ => (Some(line), message),
    }
}

/// The line (from 1) of byte offset `at` in `text`.
pub fn line_of(text: &str, at: usize) -> usize {
    text.as_bytes()[..at.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The dotted key assigned on the line that holds byte `at`, with its table: `limits.max_body_bytes`.
fn key_at(text: &str, at: usize) -> Option<String> {
    let start = text.get(..at)?.rfind('\n').map_or(0, |i| i + 1);
    let end = text.get(at..)?.find('\n').map_or(text.len(), |i| at + i);
    let (key, _) = text.get(start..end)?.split_once('=')?;
    let key = key.trim().trim_matches('"');
    let table = text[..start].lines().rev().find_map(|l| {
        let l = l.trim();
        l.starts_with('[')
            .then(|| l.trim_matches(['[', ']', ' ']).to_owned())
    });
    Some(match table {
        Some(t) if !t.is_empty() => format!("{t}.{key}"),
        _ => key.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> (Option<usize>, String) {
        let e = toml::from_str::<toml::Table>(text)
            .and_then(|t| t.try_into::<Strict>())
            .unwrap_err();
        describe(text, &e)
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Strict {
        n: Option<i64>,
        limits: Option<Limits>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Limits {
        max: i64,
    }

    #[test]
    fn names_the_key_and_line() {
        let text = "n = 1\n\n[limits]\nmax = \"big\"\n";
        let e = toml::from_str::<Strict>(text).unwrap_err();
        let (line, message) = describe(text, &e);
        assert_eq!(line, Some(4));
        assert!(message.starts_with("limits.max: invalid type"), "{message}");
        assert!(!message.contains('\n'));
        assert_eq!(err("n = [").0, Some(1));
    }
}
