//! A tiny in-memory key-value store with a JSON API, mounted at `/kv`:
//!
//! | request | answer |
//! |---|---|
//! | `GET /kv` | `200` `{"keys": [...]}` |
//! | `GET /kv/KEY` | `200` `{"key": KEY, "value": VALUE}`, or `404` |
//! | `PUT /kv/KEY` with a JSON body | `201` (new) or `200` (replaced), `{"key": KEY, "value": VALUE}` |
//! | `DELETE /kv/KEY` | `204`, or `404` |
//! | a body that is not JSON | `400` |
//! | any other method | `405` with `Allow` (from [`plugin_api::Router`]) |

//!
//! ```toml
//! [plugins.kv]
//! max_keys = 10000   # PUT of a new key past this answers 507 (default 10000)
//! ```
//! Values are kept across reloads of the plugin.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::sync::{LazyLock, RwLock};

use plugin_api::{InitError, Params, Plugin, Request, Response, ResponseBuilder, Router};
use serde_json::{Value, json};

/// `[plugins.kv]`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Keys at most.
    pub max_keys: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { max_keys: 10_000 }
    }
}

/// The store.
pub struct Kv {
    max_keys: usize,
    map: RwLock<BTreeMap<String, Value>>,
}

impl Plugin for Kv {
    type Config = Settings;

    fn new(settings: Settings) -> Result<Self, InitError> {
        // A bad route pattern fails this load, not the first request.
        LazyLock::force(&ROUTES);
        Ok(Kv {
            max_keys: settings.max_keys,
            map: RwLock::new(BTreeMap::new()),
        })
    }

    fn handle(&self, request: &Request) -> Response {
        ROUTES.handle(self, request)
    }

    fn save(&self) -> Result<Option<Vec<u8>>, InitError> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        Ok(Some(serde_json::to_vec(&*map)?))
    }

    fn restore(&self, state: &[u8]) -> Result<(), InitError> {
        let saved: BTreeMap<String, Value> = serde_json::from_slice(state)?;
        *self.map.write().unwrap_or_else(|e| e.into_inner()) = saved;
        Ok(())
    }
}

/// The API: the router answers `404` for other paths and `405` with `Allow` for other methods.
static ROUTES: LazyLock<Router<Kv>> = LazyLock::new(|| {
    Router::new()
        .get("/", list)
        .get("/*key", show)
        .put("/*key", put)
        .delete("/*key", delete)
});

/// The key of a `/*key` route; `None` for the store itself (`/kv`, `/kv/`), whose only methods
/// are `GET` and `HEAD`.
fn key<'r>(params: &Params<'r>) -> Option<&'r str> {
    params.get("key").filter(|k| !k.is_empty())
}

fn only_get() -> Response {
    ResponseBuilder::new(405)
        .header("allow", "GET, HEAD")
        .json(&json!({ "error": "method not allowed" }))
        .build()
        .expect("constant headers are valid")
}

fn list(kv: &Kv, _: &Request, _: &Params) -> Response {
    let map = kv.map.read().unwrap_or_else(|e| e.into_inner());
    json_response(200, &json!({ "keys": map.keys().collect::<Vec<_>>() }))
}

fn show(kv: &Kv, request: &Request, params: &Params) -> Response {
    let Some(key) = key(params) else {
        return list(kv, request, params);
    };
    let map = kv.map.read().unwrap_or_else(|e| e.into_inner());
    match map.get(key) {
        Some(value) => json_response(200, &json!({ "key": key, "value": value })),
        None => error(404, "no such key"),
    }
}

fn put(kv: &Kv, request: &Request, params: &Params) -> Response {
    let Some(key) = key(params) else {
        return only_get();
    };
    let Ok(value) = request.json::<Value>() else {
        return error(400, "the body is not JSON");
    };
    let mut map = kv.map.write().unwrap_or_else(|e| e.into_inner());
    if !map.contains_key(key) && map.len() >= kv.max_keys {
        return error(507, "the store is full");
    }
    let status = if map.insert(key.to_owned(), value.clone()).is_some() {
        200
    } else {
        201
    };
    json_response(status, &json!({ "key": key, "value": value }))
}

fn delete(kv: &Kv, _: &Request, params: &Params) -> Response {
    let Some(key) = key(params) else {
        return only_get();
    };
    let mut map = kv.map.write().unwrap_or_else(|e| e.into_inner());
    match map.remove(key) {
        Some(_) => ResponseBuilder::new(204).build().expect("valid"),
        None => error(404, "no such key"),
    }
}

fn json_response(status: u16, value: &Value) -> Response {
    ResponseBuilder::new(status)
        .json(value)
        .build()
        .expect("constant headers are valid")
}

fn error(status: u16, message: &str) -> Response {
    json_response(status, &json!({ "error": message }))
}

plugin_api::export_plugin!(Kv);

#[cfg(test)]
mod tests {
    use plugin_api::RequestParts;

    use super::*;

    fn call(kv: &Kv, method: &str, target: &str, body: &[u8]) -> (u16, String) {
        let request = Request::new(RequestParts {
            method,
            target,
            body,
            mount: "/kv",
            ..RequestParts::default()
        });
        let r = kv.handle(&request);
        (r.status(), String::from_utf8_lossy(r.body()).into_owned())
    }

    #[test]
    fn crud() {
        let kv = Kv::new(Settings { max_keys: 1 }).unwrap();
        assert_eq!(call(&kv, "GET", "/kv/a", b"").0, 404);
        assert_eq!(
            call(&kv, "PUT", "/kv/a", b"{\"x\":1}"),
            (201, r#"{"key":"a","value":{"x":1}}"#.into())
        );
        assert_eq!(call(&kv, "PUT", "/kv/a", b"2").0, 200);
        assert_eq!(call(&kv, "PUT", "/kv/b", b"2").0, 507);
        assert_eq!(call(&kv, "PUT", "/kv/a", b"nope").0, 400);
        assert_eq!(
            call(&kv, "GET", "/kv", b""),
            (200, r#"{"keys":["a"]}"#.into())
        );
        assert_eq!(call(&kv, "POST", "/kv/a", b"").0, 405);
        assert_eq!(call(&kv, "PUT", "/kv", b"1").0, 405);
        assert_eq!(
            call(&kv, "GET", "/kv/a/b", b"").0,
            404,
            "a key may hold '/'"
        );
        assert_eq!(call(&kv, "DELETE", "/kv/", b"").0, 405);
        assert_eq!(call(&kv, "DELETE", "/kv/a", b"").0, 204);
        assert_eq!(call(&kv, "DELETE", "/kv/a", b"").0, 404);
    }
}
