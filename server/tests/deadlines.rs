//! The embeddable server's deadlines and bulkheads, without plugins: a closure past
//! `handler_timeout` gets its client a 504 and its worker replaced, shutdown returns with a hung
//! handler, and a handler of one's own can put requests in bulkheads.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use integration_tests::{Client, get};
use mini_async_http::{
    AIOServer, Bulkhead, BulkheadPolicy, Bulkheads, Call, Handler, Limits, Request, Response,
    ResponseBuilder,
};

fn ok(body: &str) -> Response {
    ResponseBuilder::empty_200().body(body).build().unwrap()
}

/// Starts `server` on a thread; returns its address, handle and thread.
fn run(
    server: AIOServer,
) -> (
    std::net::SocketAddr,
    mini_async_http::ServerHandle,
    thread::JoinHandle<std::io::Result<()>>,
) {
    let handle = server.handle();
    let thread = thread::spawn(move || server.start());
    let addr = handle.ready().expect("server starts");
    (addr, handle, thread)
}

/// Waits until `counter` reaches `n`.
fn wait_for(counter: &AtomicUsize, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while counter.load(Ordering::SeqCst) < n {
        assert!(Instant::now() < deadline, "never reached {n}");
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_closure_past_its_deadline_gets_504_and_the_pool_keeps_its_size() {
    let limits = Limits {
        handler_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let server = AIOServer::new(1, "127.0.0.1:0", |r: &Request<'_>| {
        if r.path() == "/sleep" {
            thread::sleep(Duration::from_secs(5));
        }
        ok("done")
    })
    .with_limits(limits);
    let (addr, handle, thread) = run(server);
    let started = Instant::now();
    let mut c = Client::connect(addr);
    let r = c.get("/sleep");
    assert_eq!(r.status, 504, "{r:?}");
    assert!(
        started.elapsed() < Duration::from_millis(1300),
        "{:?}",
        started.elapsed()
    );
    c.expect_closed();
    // The only worker is stuck; its replacement answers.
    assert_eq!(Client::connect(addr).get("/").text(), "done");
    let stats = handle.stats().expect("running");
    assert_eq!(stats.lost_workers, 1, "{stats:?}");
    assert!(!stats.needs_replacement, "{stats:?}");
    handle.shutdown();
    // The stuck thread's client was answered: stopping without it is not an error.
    thread.join().unwrap().expect("a clean stop");
}

#[test]
fn shutdown_with_a_hung_handler_returns_and_names_it() {
    let limits = Limits {
        drain_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let began = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&began);
    let server = AIOServer::new(2, "127.0.0.1:0", move |r: &Request<'_>| {
        if r.path() == "/hang" {
            seen.fetch_add(1, Ordering::SeqCst);
            loop {
                thread::sleep(Duration::from_secs(3600));
            }
        }
        ok("done")
    })
    .with_limits(limits);
    let (addr, handle, thread) = run(server);
    let mut hung = Client::connect(addr);
    hung.send(get("/hang?x=1"));
    wait_for(&began, 1);
    let started = Instant::now();
    handle.shutdown();
    assert!(
        started.elapsed() < Duration::from_millis(1300),
        "{:?}",
        started.elapsed()
    );
    let err = thread
        .join()
        .unwrap()
        .expect_err("stopped with a request running");
    assert_eq!(err.kind(), ErrorKind::TimedOut);
    assert!(err.to_string().contains("GET /hang?x=1"), "{err}");
}

/// A handler that runs `/heavy` in a bulkhead of its own.
struct Limited {
    heavy: Arc<Bulkhead>,
    began: Arc<AtomicUsize>,
}

impl Handler for Limited {
    fn handle(&self, _request: &Request<'_>) -> Response {
        ok("light")
    }

    fn serve(&self, request: &Request<'_>, call: &mut Call<'_>) {
        if request.path() != "/heavy" {
            return call.respond(self.handle(request).view());
        }
        let Some(_permit) = call.enter(&self.heavy) else {
            return;
        };
        self.began.fetch_add(1, Ordering::SeqCst);
        thread::sleep(Duration::from_millis(800));
        call.respond(ok("heavy").view());
    }
}

#[test]
fn a_handler_of_its_own_can_use_bulkheads() {
    let bulkheads = Arc::new(Bulkheads::new());
    bulkheads.set_policies(BTreeMap::from([(
        "heavy".to_owned(),
        BulkheadPolicy {
            max_concurrency: Some(1),
            queue_timeout: Some(Duration::from_millis(100)),
            ..BulkheadPolicy::default()
        },
    )]));
    let began = Arc::new(AtomicUsize::new(0));
    let handler = Limited {
        heavy: bulkheads.get("heavy"),
        began: Arc::clone(&began),
    };
    let server = AIOServer::with_handler(3, "127.0.0.1:0", Arc::new(handler))
        .with_bulkheads(Arc::clone(&bulkheads));
    let (addr, handle, thread) = run(server);
    let mut first = Client::connect(addr);
    first.send(get("/heavy"));
    wait_for(&began, 1);
    let r = Client::connect(addr).get("/heavy");
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(Client::connect(addr).get("/light").text(), "light");
    assert_eq!(first.reply().text(), "heavy");
    let stats = bulkheads.stats();
    assert_eq!(stats[0].name, "heavy");
    assert_eq!((stats[0].refused, stats[0].in_flight), (1, 0), "{stats:?}");
    assert_eq!(began.load(Ordering::SeqCst), 1);
    handle.shutdown();
    thread.join().unwrap().unwrap();
}
