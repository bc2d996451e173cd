//! What reloads leave behind in the server process: no image of a generation that is gone stays
//! mapped, not even one that glibc pins because the plugin's thread-local destructors are pending
//! on the workers (the pool recycles them).

use std::time::{Duration, Instant};

use integration_tests::HostProcess;

const WAIT: Duration = Duration::from_secs(30);

/// The distinct keeper images mapped in process `pid`.
fn keeper_images(pid: u32) -> Vec<String> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    let mut images: Vec<String> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|path| path.contains("keeper.so"))
        .map(str::to_owned)
        .collect();
    images.sort();
    images.dedup();
    images
}

#[test]
fn a_plugin_with_thread_local_destructors_leaves_no_old_image_mapped() {
    let host = HostProcess::start(&["libkeeper.so"], "workers = 4\n");
    let file = host.plugins().join("libkeeper.so");
    let original = std::fs::read(&file).unwrap();
    for generation in 2..=6u8 {
        // Several connections at once, so that several workers run the plugin and make its
        // thread-local (each one pins the image until its thread exits).
        let clients: Vec<_> = (0..4)
            .map(|_| {
                let mut c = host.connect();
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        assert_eq!(c.get("/keeper").status, 200);
                    }
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
        let mut next = original.clone();
        next.extend_from_slice(&[0, generation]);
        std::fs::write(&file, &next).unwrap();
        host.wait_for_log(
            &format!("plugin keeper: generation {generation} loaded"),
            WAIT,
        );
    }
    let pid = host.server_pid();
    let started = Instant::now();
    loop {
        let images = keeper_images(pid);
        if images.len() == 1 {
            break;
        }
        assert!(
            started.elapsed() < WAIT,
            "{} keeper images still mapped after 5 reloads: {images:#?}",
            images.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // And the fresh workers serve.
    assert_eq!(host.connect().get("/keeper").status, 200);
}
