//! One client must not starve the others: a worker that serves a connection hands it back to the
//! queue after a bounded share of its requests, however steadily that client keeps it busy.

use std::io::Read;
use std::time::Duration;

use integration_tests::{Client, HostProcess, Reply, get};

/// Requests the pipelining client sends in one go.
const PIPELINED: usize = 1500;
/// Requests in one burst, and bursts, of the client that sends in bursts.
const BURST: usize = 20;
const BURSTS: usize = 8;

fn wait(host: &HostProcess, call: usize) {
    host.wait_for_log(&format!("slow call {call} began"), Duration::from_secs(20));
}

#[test]
fn a_client_that_pipelines_without_pause_does_not_hold_the_only_worker() {
    let host = HostProcess::start_with_args(&["libslow.so"], "", &["--workers", "1"]);
    // Requests of a millisecond each, written at once: every read the worker makes
    // finds more of them, so without a cap its turn on this connection lasts until the last one.
    // The plugin numbers its calls (`x-call`), which shows the order the worker took them in.
    let mut pipeliner = host.connect();
    pipeliner.nodelay();
    let batch = get("/slow/sleep/1").repeat(PIPELINED);
    let writer = {
        let mut stream = pipeliner.stream.try_clone().unwrap();
        std::thread::spawn(move || std::io::Write::write_all(&mut stream, batch.as_bytes()))
    };
    wait(&host, 10);
    // Another client, while the pipelining goes on: its call comes in its turn, not last.
    let mine = call_number(&host.connect().get("/slow/sleep/0"));
    let theirs: Vec<u64> = (0..PIPELINED)
        .map(|_| call_number(&pipeliner.reply()))
        .collect();
    writer.join().unwrap().unwrap();
    assert!(
        theirs.windows(2).all(|w| w[0] < w[1]),
        "in order: {theirs:?}"
    );
    let after = theirs.iter().filter(|&&n| n > mine).count();
    assert!(
        after > PIPELINED / 2,
        "the other client's call was number {mine}: only {after} of the pipelined calls came after it"
    );
    let mut rest = Vec::new();
    pipeliner
        .stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let _ = pipeliner.stream.read_to_end(&mut rest);
    assert!(rest.is_empty(), "one answer per request");
}

#[test]
fn a_client_whose_bursts_keep_arriving_during_its_turn_does_not_hold_the_only_worker() {
    let host = HostProcess::start_with_args(&["libslow.so"], "", &["--workers", "1"]);
    // Each burst is sent while the worker is inside the one before (its third call has begun),
    // so every time the worker is done it finds readiness that came meanwhile: it drives the
    // connection again instead of letting go, each time with fewer than a share of requests.
    let mut sender = host.connect();
    sender.nodelay();
    let burst = get("/slow/sleep/5").repeat(BURST);
    sender.send(&burst);
    wait(&host, 3);
    let other = {
        let addr = host.addr;
        std::thread::spawn(move || call_number(&Client::connect(addr).get("/slow/sleep/0")))
    };
    for k in 1..BURSTS {
        sender.send(&burst);
        wait(&host, k * BURST + 3);
    }
    let theirs: Vec<u64> = (0..BURST * BURSTS)
        .map(|_| call_number(&sender.reply()))
        .collect();
    let mine = other.join().unwrap();
    let after = theirs.iter().filter(|&&n| n > mine).count();
    assert!(
        after > BURST * BURSTS / 2,
        "the other client's call was number {mine}: only {after} of the bursts' calls came after it"
    );
}

fn call_number(r: &Reply) -> u64 {
    assert_eq!(r.status, 200, "{}", r.head);
    r.header("x-call")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no call number: {}", r.head))
}
