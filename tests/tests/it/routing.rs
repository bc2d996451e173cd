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
