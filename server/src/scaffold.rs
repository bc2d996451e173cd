//! `mini-async-http new-plugin NAME`: writes a plugin crate that builds and serves on the first
//! try, with settings, a handler, a unit test and a README that says how to build and install it.

use std::io;
use std::path::{Path, PathBuf};

/// Writes the crate `NAME` under `dir` (`dir/NAME/`), depending on `plugin-api` at `plugin_api`.
/// Returns the crate's folder.
///
/// # Errors
/// `name` is not a plugin name (letters, digits, `_`, `-`), the folder exists already, or a file
/// cannot be written.
pub fn new_plugin(name: &str, dir: &Path, plugin_api: &Path) -> io::Result<PathBuf> {
    let valid = !name.is_empty()
        && name.as_bytes()[0].is_ascii_alphabetic()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !valid {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{name:?} is not a plugin name: use letters, digits, '_' and '-', starting with a letter"
            ),
        ));
    }
    let root = dir.join(name);
    if root.exists() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists already", root.display()),
        ));
    }
    let lib = name.replace('-', "_");
    std::fs::create_dir_all(root.join("src"))?;
    let api = plugin_api.display().to_string().replace('\\', "/");
    std::fs::write(root.join("Cargo.toml"), manifest(name, &api))?;
    std::fs::write(
        root.join("src").join("lib.rs"),
        LIB_RS.replace("{lib}", &lib),
    )?;
    std::fs::write(root.join("README.md"), readme(name, &lib, &api))?;
    std::fs::write(root.join(".gitignore"), "/target\n")?;
    Ok(root)
}

fn manifest(name: &str, api: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

# A plugin is a C-compatible library (the .so the host loads); "rlib" lets `cargo test` test it.
[lib]
crate-type = ["cdylib", "rlib"]

# An empty workspace table keeps this crate on its own even inside another workspace.
[workspace]

[dependencies]
# The contract with the host. This path is where new-plugin found it; point it elsewhere if the
# crate moves.
plugin-api = {{ path = "{api}" }}
serde = {{ version = "1", features = ["derive"] }}
"#
    )
}

fn readme(name: &str, lib: &str, api: &str) -> String {
    format!(
        r#"# {name}

A mini-async-http plugin, served at `/{lib}`.

```sh
cargo test                      # the handler's unit test
cargo build --release           # writes target/release/lib{lib}.so
cp target/release/lib{lib}.so /path/to/plugins/   # the running host loads it
curl localhost:7878/{lib}
```

Settings come from `[plugins.{lib}]` in the host's `config.toml`:

```toml
[plugins.{lib}]
greeting = "Hi"
```

It depends on `plugin-api` at `{api}` (see `Cargo.toml`). Rebuild it whenever the host is rebuilt
against a new plugin-api: the host refuses a plugin built for another ABI version, and says so.
"#
    )
}

const LIB_RS: &str = r#"//! A mini-async-http plugin: answers `GREETING, NAME!` where NAME is the query string.
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};

use plugin_api::{InitError, Plugin, Request, Response, ResponseBuilder};

/// `[plugins.{lib}]` in the host's config.toml.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The first word of every answer.
    pub greeting: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            greeting: "Hello".into(),
        }
    }
}

/// The plugin: one instance serves every worker thread, so state is atomic.
pub struct Greeter {
    greeting: String,
    served: AtomicU64,
}

impl Plugin for Greeter {
    type Config = Settings;

    fn new(settings: Settings) -> Result<Self, InitError> {
        plugin_api::info!("greeting with {:?}", settings.greeting);
        Ok(Greeter {
            greeting: settings.greeting,
            served: AtomicU64::new(0),
        })
    }

    fn handle(&self, request: &Request) -> Response {
        let n = self.served.fetch_add(1, Ordering::Relaxed) + 1;
        let name = request.query().unwrap_or("world");
        ResponseBuilder::empty_200()
            .content_type("text/plain; charset=utf-8")
            .header("x-served", n.to_string())
            .body(format!("{}, {name}!", self.greeting))
            .build()
            .unwrap_or_else(|_| ResponseBuilder::new(500).build().expect("a bare 500 is valid"))
    }
}

plugin_api::export_plugin!(Greeter);

#[cfg(test)]
mod tests {
    use plugin_api::RequestParts;

    use super::*;

    #[test]
    fn greets_by_query() {
        let plugin = Greeter::new(Settings::default()).unwrap();
        let request = Request::new(RequestParts {
            target: "/{lib}?ann",
            ..RequestParts::default()
        });
        let response = plugin.handle(&request);
        assert_eq!(response.status(), 200);
        assert_eq!(response.body(), b"Hello, ann!");
    }
}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_crate_and_refuses_bad_names_and_clobbering() {
        let dir = std::env::temp_dir().join(format!("mah-scaffold-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let root = new_plugin("my-thing", &dir, Path::new("/x/plugin-api")).unwrap();
        let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("name = \"my-thing\"") && manifest.contains("/x/plugin-api"));
        let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
        assert!(lib.contains("[plugins.my_thing]") && lib.contains("/my_thing?ann"));
        assert!(new_plugin("my-thing", &dir, Path::new("/x")).is_err());
        assert!(new_plugin("9lives", &dir, Path::new("/x")).is_err());
        assert!(new_plugin("a/b", &dir, Path::new("/x")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
