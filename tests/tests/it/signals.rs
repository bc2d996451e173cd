//! Signals: SIGTERM drains in-flight requests and exits 0.

use std::time::Duration;

use integration_tests::HostProcess;

#[test]
fn sigterm_shuts_down_gracefully() {
    let mut host = HostProcess::start(&["libhello.so"], "");
    let mut c = host.connect();
    assert_eq!(c.get("/hello").text(), "Hello");
    host.signal("TERM");
    assert_eq!(host.wait_exit(Duration::from_secs(30)), Some(0));
    c.expect_closed();
    host.wait_for_log("stopped", Duration::from_secs(1));
}

#[test]
fn sigint_shuts_down_gracefully_too() {
    let mut host = HostProcess::start(&["libhello.so"], "");
    assert_eq!(host.connect().get("/hello").text(), "Hello");
    host.signal("INT");
    assert_eq!(host.wait_exit(Duration::from_secs(30)), Some(0));
}
