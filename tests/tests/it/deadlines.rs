//! Hung and slow plugins: a handler past its deadline gets its client a 504 on time and its worker
//! replaced; a plugin's bulkhead keeps it from holding every worker, queues what is past its limit
//! and answers 503 to what waited too long; shutdown does not wait forever for a hung handler.
//! The `slow` fixture sleeps or hangs on request and logs each call it begins.

use std::time::{Duration, Instant};

use integration_tests::{Client, HostProcess, get};

const WAIT: Duration = Duration::from_secs(30);

/// How many sleep and hang calls the `slow` plugin has begun (it logs each).
fn calls(host: &HostProcess) -> usize {
    host.log()
        .iter()
        .filter(|l| l.contains("slow call "))
        .count()
}

/// Waits until the `slow` plugin has begun `n` calls.
fn wait_calls(host: &HostProcess, n: usize) {
    host.wait_for_nth_log("slow call ", n, Duration::from_secs(30));
}

/// Sends a request on a connection of its own and keeps the connection.
fn start(host: &HostProcess, path: &str) -> Client {
    let mut c = host.connect();
    c.send(get(path));
    c
}

#[test]
fn a_hanging_plugin_leaves_the_others_answering() {
    // Without bulkheads two hung calls hold both workers; a client of `/hello` would then wait
    // for the deadline (60 s), past its own 30 s read timeout.
    let config = "[limits]\nhandler_timeout_ms = 60000\n";
    let host =
        HostProcess::start_with_args(&["libhello.so", "libslow.so"], config, &["--workers", "2"]);
    let _first = start(&host, "/slow/hang");
    wait_calls(&host, 1);
    let _second = start(&host, "/slow/hang");
    for _ in 0..3 {
        let r = host.connect().get("/hello");
        assert_eq!(r.status, 200, "{r:?}");
    }
    assert_eq!(calls(&host), 1, "the second hang waits for a place");
}

#[test]
fn a_handler_past_its_deadline_gets_504_on_time_and_its_worker_is_replaced() {
    let config = "[limits.plugins.slow]\nhandler_timeout_ms = 1000\n\
                  [admin]\nlisten = \"127.0.0.1:0\"\n";
    // One worker: if the stuck thread were not replaced, nothing would answer after the 504.
    let host =
        HostProcess::start_with_args(&["libhello.so", "libslow.so"], config, &["--workers", "1"]);
    let started = Instant::now();
    let mut c = start(&host, "/slow/sleep/10000");
    let r = c.reply();
    let took = started.elapsed();
    assert_eq!(r.status, 504, "{r:?}");
    assert_eq!(r.header("connection"), Some("close"), "{r:?}");
    assert!(
        took >= Duration::from_millis(1000),
        "answered before the deadline: {took:?}"
    );
    assert!(
        took < Duration::from_millis(2000),
        "not within the deadline + 1 s: {took:?}"
    );
    c.expect_closed();
    host.wait_for_log("a handler ran past its deadline", Duration::from_secs(10));
    // The stuck call still holds the plugin's only place; another plugin is served by the
    // replacement.
    let r = host.connect().get("/hello");
    assert_eq!(r.status, 200, "the replacement worker serves: {r:?}");
    let metrics = Client::connect(host.admin()).get("/metrics");
    for line in [
        "mah_plugin_timeouts_total{plugin=\"slow\"} 1",
        "mah_plugin_lost_workers{plugin=\"slow\"} 1",
        "mah_plugin_in_flight{plugin=\"slow\"} 1",
        "mah_plugin_max_concurrency{plugin=\"slow\"} 1",
        "mah_lost_workers 1",
    ] {
        assert!(
            metrics.text().lines().any(|l| l == line),
            "no {line:?} in\n{}",
            metrics.text()
        );
    }
    let status = Client::connect(host.admin()).get("/status");
    let status: serde_json::Value = serde_json::from_slice(&status.body).expect("JSON");
    let slow = status["plugins"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "slow"))
        .expect("the slow plugin in /status");
    assert_eq!(slow["timed_out"], 1, "{slow}");
    assert_eq!(status["server"]["lost_workers"], 1, "{status}");
}

#[test]
fn a_plugin_at_its_limit_queues_then_answers_503() {
    let config = "[limits.plugins.slow]\nmax_concurrency = 1\nqueue_timeout_ms = 300\n";
    let host =
        HostProcess::start_with_args(&["libhello.so", "libslow.so"], config, &["--workers", "4"]);
    let mut first = start(&host, "/slow/sleep/2000");
    wait_calls(&host, 1);
    let started = Instant::now();
    let r = host.connect().get("/slow/sleep/10");
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.header("retry-after"), Some("1"), "{r:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "refused before the queue timeout: {:?}",
        started.elapsed()
    );
    assert!(r.text().contains("concurrency limit"), "{r:?}");
    // Other plugins are not held up meanwhile, and the first call finishes normally.
    assert_eq!(host.connect().get("/hello").status, 200);
    assert_eq!(first.reply().status, 200);
    assert_eq!(
        calls(&host),
        1,
        "the refused request never reached the plugin"
    );
}

#[test]
fn a_request_that_waited_past_its_deadline_is_not_handled() {
    // The first call holds the only place for 1.5 s; the second's deadline (300 ms) passes while
    // it waits (its queue timeout is longer), so it gets 503 and the plugin never sees it.
    let config = "[limits.plugins.slow]\nmax_concurrency = 1\nhandler_timeout_ms = 300\n\
                  queue_timeout_ms = 10000\n";
    let host = HostProcess::start_with_args(&["libslow.so"], config, &["--workers", "4"]);
    let mut first = start(&host, "/slow/sleep/1500");
    wait_calls(&host, 1);
    let r = host.connect().get("/slow/sleep/1");
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.text().contains("deadline"), "{r:?}");
    assert_eq!(
        first.reply().status,
        504,
        "the first ran past its own deadline"
    );
    // Its handler is still running (it holds its place until it returns); once it has, a new
    // request runs again, and the count shows the waiting one was never handed over.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = host.connect().get("/slow/sleep/1");
        if r.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "never served again: {r:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_calls(&host, 2);
    assert_eq!(
        calls(&host),
        2,
        "the request that waited too long was not handled"
    );
}

#[test]
fn a_client_gone_before_dispatch_is_not_handled() {
    let config = "[limits.plugins.slow]\nmax_concurrency = 1\nqueue_timeout_ms = 10000\n";
    let host = HostProcess::start_with_args(&["libslow.so"], config, &["--workers", "4"]);
    let mut first = start(&host, "/slow/sleep/800");
    wait_calls(&host, 1);
    {
        // Queued behind the first, then gone.
        let _gone = start(&host, "/slow/sleep/1");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(first.reply().status, 200);
    let r = host.connect().get("/slow/sleep/1");
    assert_eq!(r.status, 200, "{r:?}");
    wait_calls(&host, 2);
    assert_eq!(
        calls(&host),
        2,
        "the request of the client that left was dropped"
    );
}

#[test]
fn sigterm_with_a_hung_handler_exits_within_the_drain_timeout() {
    let config = "[limits]\ndrain_timeout_ms = 1000\n";
    let mut host = HostProcess::start_with_args(&["libslow.so"], config, &["--workers", "2"]);
    let _hung = start(&host, "/slow/hang");
    wait_calls(&host, 1);
    let started = Instant::now();
    host.signal("TERM");
    let code = host.wait_exit(Duration::from_secs(20));
    let took = started.elapsed();
    assert_eq!(code, Some(1), "log:\n{}", host.log().join("\n"));
    assert!(
        took < Duration::from_secs(2),
        "not within drain_timeout + 1 s: {took:?}"
    );
    let line = host.wait_for_log("still running", Duration::from_secs(1));
    assert!(
        line.contains("slow") && line.contains("GET /slow/hang"),
        "{line}"
    );
}

#[test]
fn a_process_with_more_stuck_workers_than_it_may_replace_is_replaced_gracefully() {
    let config =
        "[limits]\nmax_lost_workers = 0\n[limits.plugins.slow]\nhandler_timeout_ms = 300\n";
    let host = HostProcess::start(&["libhello.so", "libslow.so"], config);
    let first = host.pids();
    assert_eq!(host.connect().get("/slow/hang").status, 504);
    host.wait_for_log(
        "more workers stuck in plugin code than it may replace",
        WAIT,
    );
    host.wait_for_log("replaced: draining", WAIT);
    let line = host.wait_for_log("replaced, exited", WAIT);
    assert!(line.contains("exit status: 0"), "{line}");
    assert_eq!(host.connect().get("/hello").status, 200);
    let now = host.pids();
    assert_eq!(
        now.len(),
        first.len(),
        "one server process, as before: {now:?}"
    );
    assert_ne!(now, first, "a new server process serves");
}

#[test]
fn time_waiting_for_a_worker_counts_toward_the_deadline() {
    // One worker, held for 1.5 s by a slow call (the slow plugin's own deadline): a request
    // queued behind it, under the server's 300 ms, is taken by the replacement long after its
    // deadline passed, and gets 503 without running.
    let config =
        "[limits]\nhandler_timeout_ms = 300\n[limits.plugins.slow]\nhandler_timeout_ms = 1500\n";
    let host =
        HostProcess::start_with_args(&["libhello.so", "libslow.so"], config, &["--workers", "1"]);
    let mut slow = start(&host, "/slow/sleep/3000");
    wait_calls(&host, 1);
    let r = host.connect().get("/hello");
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.text().contains("waited past its deadline"), "{r:?}");
    assert_eq!(slow.reply().status, 504);
    assert_eq!(host.connect().get("/hello").status, 200, "in time, it runs");
}
