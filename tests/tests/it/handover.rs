//! The exact hand-over of a plugin's state to its next generation: under load, nothing an answered
//! request changed is lost and nothing is handed out twice; a save or restore that fails refuses
//! the reload and the old generation serves on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use integration_tests::{Client, HostProcess};

const WAIT: Duration = Duration::from_secs(30);
const RELOADS: u64 = 200;

/// Replaces `lib{name}.so` `RELOADS` times, alternating between its bytes and the same bytes with
/// a tail appended (another file for the host, the same code), each time waiting for the new
/// generation to serve.
fn reload_many(host: &HostProcess, name: &str) {
    let file = host.plugins().join(format!("lib{name}.so"));
    let original = std::fs::read(&file).unwrap();
    let mut other = original.clone();
    other.extend_from_slice(b"\0another build");
    let started = std::time::Instant::now();
    for generation in 2..RELOADS + 2 {
        let content = if generation % 2 == 0 {
            &other
        } else {
            &original
        };
        std::fs::write(&file, content).unwrap();
        let line = host.wait_for_log(
            &format!("plugin {name}: generation {generation} loaded"),
            WAIT,
        );
        if generation % 50 == 0 {
            eprintln!("{:.1} s: {line}", started.elapsed().as_secs_f64());
        }
    }
}

/// Starts `n` clients, each running `each(client index, its connection)` until told to stop;
/// they return what they collected.
fn clients<T: Send + 'static>(
    host: &HostProcess,
    n: usize,
    each: impl Fn(usize, &mut Client, &AtomicBool) -> T + Send + Sync + 'static,
) -> (Arc<AtomicBool>, Vec<JoinHandle<T>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let each = Arc::new(each);
    let handles = (0..n)
        .map(|i| {
            let (addr, stop, each) = (host.addr, Arc::clone(&stop), Arc::clone(&each));
            std::thread::spawn(move || each(i, &mut Client::connect(addr), &stop))
        })
        .collect();
    (stop, handles)
}

/// Each client writes its own keys over and over (a few hundred, so that the state saved per
/// reload stays small), each time with the next number; afterwards every key must hold the last
/// number a `201` or `200` acknowledged.
#[test]
fn no_acknowledged_write_is_lost_across_200_reloads() {
    const KEYS: u64 = 250;
    let host = HostProcess::start(&["libkv.so"], "");
    let (stop, writers) = clients(&host, 4, |i, c, stop| {
        let mut last = std::collections::BTreeMap::new();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let key = format!("c{i}-{}", n % KEYS);
            let r = c
                .send(format!(
                    "PUT /kv/{key} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{n}",
                    n.to_string().len()
                ))
                .reply();
            assert!(r.status == 201 || r.status == 200, "PUT {key}: {r:?}");
            last.insert(key, n);
            n += 1;
        }
        last
    });
    reload_many(&host, "kv");
    stop.store(true, Ordering::Relaxed);
    let mut c = host.connect();
    let (mut written, mut lost) = (0, Vec::new());
    for writer in writers {
        for (key, n) in writer.join().expect("a PUT failed") {
            written += 1;
            let r = c.get(&format!("/kv/{key}"));
            let value: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            if value["value"] != n {
                lost.push(format!("{key}: acknowledged {n}, holds {}", value["value"]));
            }
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {written} keys lost their last acknowledged write across {RELOADS} reloads, e.g. \
         {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert_eq!(written, 4 * KEYS as usize, "too few writes to tell");
}

#[test]
fn the_counter_never_hands_out_a_number_twice_across_200_reloads() {
    let host = HostProcess::start(&["libkeeper.so"], "");
    let (stop, readers) = clients(&host, 4, |_, c, stop| {
        let mut seen = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let r = c.get("/keeper");
            assert_eq!(r.status, 200, "{r:?}");
            seen.push(r.text().parse::<u64>().unwrap());
        }
        seen
    });
    reload_many(&host, "keeper");
    stop.store(true, Ordering::Relaxed);
    let mut all: Vec<u64> = readers
        .into_iter()
        .flat_map(|r| r.join().expect("a request failed"))
        .collect();
    all.sort_unstable();
    let twice: Vec<u64> = all
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| w[0])
        .collect();
    assert!(
        twice.is_empty(),
        "{} numbers handed out twice across {RELOADS} reloads, e.g. {:?}",
        twice.len(),
        &twice[..twice.len().min(5)]
    );
    // Nothing lost either: every number up to the last one went to a client.
    let n = all.len() as u64;
    assert_eq!(
        all.last().copied(),
        n.checked_sub(1),
        "numbers were skipped"
    );
}

/// Reloads the keeper configured with `settings`, and checks that the reload is refused with
/// `why` and that generation 1 serves on, its count intact.
fn a_refused_hand_over(settings: &str, why: &str) {
    let host = HostProcess::start(
        &["libkeeper.so"],
        &format!("[plugins.keeper]\n{settings}\n"),
    );
    let mut c = host.connect();
    for expected in 0..3 {
        assert_eq!(c.get("/keeper").text(), expected.to_string());
    }
    let file = host.plugins().join("libkeeper.so");
    let mut rebuilt = std::fs::read(&file).unwrap();
    rebuilt.extend_from_slice(b"\0rebuilt");
    std::fs::write(&file, &rebuilt).unwrap();
    let line = host.wait_for_log("plugin keeper: reload from libkeeper.so failed", WAIT);
    assert!(line.contains(why), "{line}");
    assert!(line.contains("generation 1 keeps serving"), "{line}");
    assert_eq!(c.get("/keeper").text(), "3");
    assert!(
        !host
            .log()
            .iter()
            .any(|l| l.contains("plugin keeper: generation 2 loaded")),
        "the new generation was swapped in"
    );
}

#[test]
fn a_failing_save_keeps_the_old_generation_serving() {
    a_refused_hand_over(
        "save = \"fail\"",
        "saving the state of the generation serving failed",
    );
}

#[test]
fn a_panicking_save_keeps_the_old_generation_serving() {
    a_refused_hand_over("save = \"panic\"", "the plugin panicked");
}

#[test]
fn a_refused_restore_keeps_the_old_generation_serving() {
    a_refused_hand_over(
        "restore = \"fail\"",
        "the new generation refused the state: told to refuse the state",
    );
}
