//! Routing: default mounts, `[[routes]]`, longest prefix, segment boundaries, 404 and 503.

use integration_tests::HostProcess;

const CONFIG: &str = r#"
[[routes]]
prefix = "/api"
plugin = "echo"

[[routes]]
prefix = "/api/count"
plugin = "counter"

[[routes]]
prefix = "/missing"
plugin = "absent"
"#;

#[test]
fn longest_prefix_wins_on_segment_boundaries() {
    let host = HostProcess::start(&["libecho.so", "libcounter.so", "libhello.so"], CONFIG);
    let mut c = host.connect();
    let first_line = |c: &mut integration_tests::Client, path: &str| {
        let r = c.get(path);
        (r.status, r.text().lines().next().unwrap_or("").to_owned())
    };
    // Default mounts.
    assert_eq!(first_line(&mut c, "/hello"), (200, "Hello".into()));
    assert_eq!(
        first_line(&mut c, "/hello/deeper/path"),
        (200, "Hello".into())
    );
    assert_eq!(first_line(&mut c, "/echo/x").1, "GET /echo/x HTTP/1.1");
    // Configured prefixes, longest first.
    assert_eq!(first_line(&mut c, "/api/x").1, "GET /api/x HTTP/1.1");
    assert_eq!(first_line(&mut c, "/api/count"), (200, "0".into()));
    assert_eq!(first_line(&mut c, "/api/count/more"), (200, "1".into()));
    assert_eq!(
        first_line(&mut c, "/api/counter").1,
        "GET /api/counter HTTP/1.1"
    );
    // The mount prefix reaches the plugin.
    assert!(c.get("/api/x").text().contains("\nmount: /api\n"));
    // Segment boundaries, and nothing mounted.
    assert_eq!(c.get("/helloworld").status, 404);
    assert_eq!(c.get("/").status, 404);
    assert_eq!(c.get("/nothing/here").status, 404);
    // A route to a plugin that is not there.
    assert_eq!(c.get("/missing/x").status, 503);
}

#[test]
fn a_root_route_catches_everything_else() {
    let host = HostProcess::start(
        &["libhello.so", "libecho.so"],
        "[[routes]]\nprefix = \"/\"\nplugin = \"hello\"\n",
    );
    let mut c = host.connect();
    assert_eq!(c.get("/anything").text(), "Hello");
    assert_eq!(c.get("/").text(), "Hello");
    assert!(c.get("/echo/x").text().starts_with("GET /echo/x"));
}

#[test]
fn options_star_is_answered_by_the_host_not_a_plugin() {
    // Even with a plugin mounted at the root, `*` is about the server.
    let host = HostProcess::start(
        &["libhello.so"],
        "[[routes]]\nprefix = \"/\"\nplugin = \"hello\"\n",
    );
    let mut c = host.connect();
    c.send("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = c.reply();
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.header("allow")
            .is_some_and(|a| a.contains("OPTIONS") && a.contains("GET")),
        "{r:?}"
    );
    assert!(r.body.is_empty(), "{r:?}");
    assert_eq!(c.get("/").text(), "Hello");
}
