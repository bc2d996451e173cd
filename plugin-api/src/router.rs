//! [`Router`]: routes for a plugin with several, by method and path pattern, so that an author
//! does not match strings by hand.
//!
//! ```
//! use plugin_api::{Params, Request, RequestParts, Response, ResponseBuilder, Router};
//!
//! struct Users;
//!
//! fn show(_: &Users, _: &Request, params: &Params) -> Response {
//!     let id = params.get("id").unwrap_or("?");
//!     ResponseBuilder::empty_200().body(format!("user {id}")).build().unwrap()
//! }
//!
//! let router = Router::new().get("/users/:id", show);
//! let request = Request::new(RequestParts { target: "/users/7", ..Default::default() });
//! assert_eq!(router.handle(&Users, &request).body(), b"user 7");
//!
//! let delete = Request::new(RequestParts { method: "DELETE", target: "/users/7", ..Default::default() });
//! let refused = router.handle(&Users, &delete);
//! assert_eq!(refused.status(), 405);
//! assert_eq!(refused.header("allow"), Some(&b"GET, HEAD"[..]));
//! ```

use std::borrow::Cow;

use crate::{Request, Response, ResponseBuilder, percent_decode};

/// A route's handler: the plugin (or any state), the request, and the path's parameters.
pub type Route<S> = Box<dyn Fn(&S, &Request, &Params) -> Response + Send + Sync>;

/// Routes by method and path pattern, matched against [`Request::subpath`] (the path below the
/// plugin's mount), first added first tried.
///
/// A pattern is segments between `/`: a literal (`users`), a parameter (`:id`, one whole
/// segment, not empty), or a rest parameter (`*path`, the rest of the path, maybe empty; last
/// only). `/` matches the mount itself. A path that no pattern matches gets `404`; one that
/// matches only patterns of other methods gets `405` with `Allow`. `HEAD` runs a `GET` route when
/// it has none of its own (the server sends the head alone), and `Allow` says so.
pub struct Router<S> {
    routes: Vec<(String, Pattern, Route<S>)>,
}

impl<S> Default for Router<S> {
    fn default() -> Self {
        Router { routes: Vec::new() }
    }
}

/// The parameters a pattern captured, raw (still percent-encoded) as in the path: literal
/// segments are compared with the path as sent, too, and a decoded parameter may hold a `/`.
#[derive(Debug, Default)]
pub struct Params<'r> {
    pairs: Vec<(&'r str, &'r str)>,
}

impl<'r> Params<'r> {
    /// The raw value of parameter `name` (`:name` or `*name` in the pattern).
    pub fn get(&self, name: &str) -> Option<&'r str> {
        self.pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    /// The value of parameter `name`, percent-decoded; `None` when absent or not UTF-8 once
    /// decoded.
    pub fn decoded(&self, name: &str) -> Option<Cow<'r, str>> {
        percent_decode(self.get(name)?, false)
    }
}

/// One segment of a pattern.
enum Segment {
    Literal(Box<str>),
    Param(Box<str>),
    Rest(Box<str>),
}

struct Pattern(Vec<Segment>);

impl Pattern {
    /// # Panics
    /// On a pattern that is not one (see [`Router`]): a bug in the plugin, found when its router
    /// is built (build it in `Plugin::new`, so that this is its first load).
    fn parse(pattern: &str) -> Pattern {
        assert!(
            pattern.starts_with('/'),
            "a route pattern starts with '/': {pattern:?}"
        );
        let parts: Vec<&str> = pattern[1..].split('/').filter(|s| !s.is_empty()).collect();
        let mut segments = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let name = |n: &str| -> Box<str> {
                assert!(!n.is_empty(), "an unnamed parameter in {pattern:?}");
                n.into()
            };
            segments.push(if let Some(n) = part.strip_prefix(':') {
                Segment::Param(name(n))
            } else if let Some(n) = part.strip_prefix('*') {
                assert!(i + 1 == parts.len(), "'*' must be last in {pattern:?}");
                Segment::Rest(name(n))
            } else {
                Segment::Literal((*part).into())
            });
        }
        Pattern(segments)
    }

    /// The parameters, if `path` matches.
    fn matches<'r>(&'r self, path: &'r str) -> Option<Params<'r>> {
        let mut rest = path.strip_prefix('/').unwrap_or(path);
        let mut params = Params::default();
        for segment in &self.0 {
            if let Segment::Rest(name) = segment {
                params.pairs.push((&**name, rest));
                return Some(params);
            }
            if rest.is_empty() {
                return None;
            }
            let (part, after) = rest.split_once('/').unwrap_or((rest, ""));
            match segment {
                Segment::Literal(l) if &**l == part => {}
                Segment::Param(name) if !part.is_empty() => params.pairs.push((&**name, part)),
                _ => return None,
            }
            rest = after;
        }
        // A trailing slash is the same path (`/users/7/`), anything more is not.
        rest.is_empty().then_some(params)
    }
}

impl<S> Router<S> {
    /// A router with no routes: everything is `404`.
    pub fn new() -> Router<S> {
        Router::default()
    }

    /// Adds a route for `method` (case-sensitive, RFC 9110 §9.1) and `pattern`.
    ///
    /// # Panics
    /// If `pattern` is not a pattern (see [`Router`]).
    pub fn route<F>(mut self, method: &str, pattern: &str, handler: F) -> Router<S>
    where
        F: Fn(&S, &Request, &Params) -> Response + Send + Sync + 'static,
    {
        self.routes.push((
            method.to_owned(),
            Pattern::parse(pattern),
            Box::new(handler),
        ));
        self
    }

    /// [`route`](Self::route) for `GET` (and `HEAD`).
    pub fn get<F>(self, pattern: &str, handler: F) -> Router<S>
    where
        F: Fn(&S, &Request, &Params) -> Response + Send + Sync + 'static,
    {
        self.route("GET", pattern, handler)
    }

    /// [`route`](Self::route) for `POST`.
    pub fn post<F>(self, pattern: &str, handler: F) -> Router<S>
    where
        F: Fn(&S, &Request, &Params) -> Response + Send + Sync + 'static,
    {
        self.route("POST", pattern, handler)
    }

    /// [`route`](Self::route) for `PUT`.
    pub fn put<F>(self, pattern: &str, handler: F) -> Router<S>
    where
        F: Fn(&S, &Request, &Params) -> Response + Send + Sync + 'static,
    {
        self.route("PUT", pattern, handler)
    }

    /// [`route`](Self::route) for `DELETE`.
    pub fn delete<F>(self, pattern: &str, handler: F) -> Router<S>
    where
        F: Fn(&S, &Request, &Params) -> Response + Send + Sync + 'static,
    {
        self.route("DELETE", pattern, handler)
    }

    /// Answers `request` with the first route that matches its method and subpath, or `404`, or
    /// `405` with `Allow`.
    pub fn handle(&self, state: &S, request: &Request) -> Response {
        let (method, path) = (request.method(), request.subpath());
        let mut allowed: Vec<&str> = Vec::new();
        let mut get = None;
        for (m, pattern, handler) in &self.routes {
            let Some(params) = pattern.matches(path) else {
                continue;
            };
            if m == method {
                return handler(state, request, &params);
            }
            if method == "HEAD" && m == "GET" && get.is_none() {
                get = Some((handler, params));
            }
            if !allowed.contains(&m.as_str()) {
                allowed.push(m);
            }
        }
        if let Some((handler, params)) = get {
            return handler(state, request, &params);
        }
        if allowed.is_empty() {
            return Response::text(404, "not found\n");
        }
        if allowed.contains(&"GET") && !allowed.contains(&"HEAD") {
            let at = allowed.iter().position(|m| *m == "GET").unwrap_or(0);
            allowed.insert(at + 1, "HEAD");
        }
        ResponseBuilder::new(405)
            .header("allow", allowed.join(", "))
            .content_type("text/plain; charset=utf-8")
            .body("method not allowed\n")
            .build()
            .expect("a constant response is valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RequestParts;

    fn answer(router: &Router<()>, method: &str, target: &str) -> (u16, String, Option<String>) {
        let request = Request::new(RequestParts {
            method,
            target,
            mount: "",
            ..RequestParts::default()
        });
        let r = router.handle(&(), &request);
        let allow = r
            .header("allow")
            .map(|a| String::from_utf8_lossy(a).into_owned());
        (
            r.status(),
            String::from_utf8_lossy(r.body()).into_owned(),
            allow,
        )
    }

    fn echo(label: &'static str) -> impl Fn(&(), &Request, &Params) -> Response {
        move |_, _, params| {
            let id = params.get("id").unwrap_or("-");
            let rest = params.get("rest").unwrap_or("-");
            let body = format!("{label} id={id} rest={rest}");
            ResponseBuilder::empty_200().body(body).build().unwrap()
        }
    }

    fn router() -> Router<()> {
        Router::new()
            .get("/", echo("index"))
            .get("/users/:id", echo("show"))
            .put("/users/:id", echo("put"))
            .get("/files/*rest", echo("files"))
            .post("/users", echo("create"))
    }

    #[test]
    fn routes_by_path_and_method_with_parameters() {
        let r = router();
        assert_eq!(answer(&r, "GET", "/").1, "index id=- rest=-");
        assert_eq!(answer(&r, "GET", "/users/7").1, "show id=7 rest=-");
        assert_eq!(answer(&r, "GET", "/users/7/").1, "show id=7 rest=-");
        assert_eq!(
            answer(&r, "PUT", "/users/a%20b?x=1").1,
            "put id=a%20b rest=-"
        );
        assert_eq!(
            answer(&r, "GET", "/files/a/b.txt").1,
            "files id=- rest=a/b.txt"
        );
        assert_eq!(answer(&r, "GET", "/files/").1, "files id=- rest=");
        assert_eq!(answer(&r, "POST", "/users").1, "create id=- rest=-");
        assert_eq!(answer(&r, "HEAD", "/users/7").0, 200);
    }

    #[test]
    fn no_match_is_404_and_another_method_405_with_allow() {
        let r = router();
        for path in ["/nope", "/users/7/extra", "/users//"] {
            assert_eq!(answer(&r, "GET", path).0, 404, "{path}");
        }
        let (status, _, allow) = answer(&r, "DELETE", "/users/7");
        assert_eq!((status, allow.as_deref()), (405, Some("GET, HEAD, PUT")));
        let (status, _, allow) = answer(&r, "GET", "/users");
        assert_eq!((status, allow.as_deref()), (405, Some("POST")));
    }

    #[test]
    fn parameters_decode_on_request() {
        let params = Params {
            pairs: vec![("name", "a%20b"), ("bad", "%ff")],
        };
        assert_eq!(params.decoded("name").as_deref(), Some("a b"));
        assert_eq!(params.decoded("bad"), None);
        assert_eq!(params.decoded("none"), None);
    }

    #[test]
    #[should_panic(expected = "'*' must be last")]
    fn a_rest_parameter_must_be_last() {
        let _ = Router::<()>::new().get("/a/*rest/b", echo("x"));
    }
}
