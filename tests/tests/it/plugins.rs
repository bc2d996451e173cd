//! Each example plugin, served by the host.

use integration_tests::HostProcess;

#[test]
fn hello_says_hello() {
    let host = HostProcess::start(&["libhello.so"], "");
    let r = host.connect().get("/hello");
    assert_eq!((r.status, r.text()), (200, "Hello"), "{r:?}");
    assert_eq!(r.header("content-type"), Some("text/plain"));
    let line = host.wait_for_log(
        "plugin hello: generation 1 loaded from libhello.so",
        std::time::Duration::from_secs(5),
    );
    assert!(
        line.contains("ABI 4") && line.contains("version 0.1.0") && line.contains(" ms"),
        "{line}"
    );
    // One message per event: the name and generation are said once, in the message.
    assert!(
        !line.contains("plugin=") && !line.contains("generation="),
        "{line}"
    );
}

#[test]
fn counter_is_shared_by_every_worker_and_connection() {
    let host = HostProcess::start(&["libcounter.so"], "[plugins.counter]\nstart = 10\n");
    let mut seen = Vec::new();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let addr = host.addr;
            std::thread::spawn(move || {
                let mut c = integration_tests::Client::connect(addr);
                (0..25)
                    .map(|_| c.get("/counter").text().parse::<u64>().unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for t in threads {
        seen.extend(t.join().unwrap());
    }
    seen.sort();
    assert_eq!(seen, (10..110).collect::<Vec<u64>>());
}

#[test]
fn echo_answers_with_the_request() {
    let host = HostProcess::start(&["libecho.so"], "");
    let mut c = host.connect();
    let r = c
        .send("POST /echo/a/b?x=1 HTTP/1.1\r\nHost: h\r\nX-Two: 1\r\nx-two: 2\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
        .reply();
    assert_eq!(
        r.text(),
        "POST /echo/a/b?x=1 HTTP/1.1\nmount: /echo\npeer: 127.0.0.1\nHost: h\nX-Two: 1\nx-two: 2\nTransfer-Encoding: chunked\n\nabc"
    );
}

#[test]
fn kv_is_a_json_store() {
    let host = HostProcess::start(&["libkv.so"], "");
    let mut c = host.connect();
    assert_eq!(c.get("/kv/a").status, 404);
    let put = |c: &mut integration_tests::Client, key: &str, body: &str| {
        c.send(format!(
            "PUT /kv/{key} HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ))
        .reply()
    };
    let r = put(&mut c, "a", r#"{"n": 1}"#);
    assert_eq!(
        (r.status, r.text()),
        (201, r#"{"key":"a","value":{"n":1}}"#)
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(put(&mut c, "a", "[2]").status, 200);
    assert_eq!(put(&mut c, "b", "not json").status, 400);
    assert_eq!(c.get("/kv/a").text(), r#"{"key":"a","value":[2]}"#);
    assert_eq!(c.get("/kv").text(), r#"{"keys":["a"]}"#);
    let r = c
        .send("POST /kv/a HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n")
        .reply();
    assert_eq!(
        (r.status, r.header("allow")),
        (405, Some("GET, HEAD, PUT, DELETE"))
    );
    assert_eq!(
        c.send("DELETE /kv/a HTTP/1.1\r\nHost: h\r\n\r\n")
            .reply()
            .status,
        204
    );
    assert_eq!(c.get("/kv/a").status, 404);
}

#[test]
fn a_plugin_can_close_the_connection() {
    let host = HostProcess::start(&["libpanicky.so"], "");
    let mut c = host.connect();
    let r = c.get("/panicky");
    assert_eq!((r.text(), r.header("connection")), ("calm", None));
    let r = c.get("/panicky/close");
    assert_eq!((r.text(), r.header("connection")), ("bye", Some("close")));
    c.expect_closed();
}

#[test]
fn the_access_log_has_a_line_per_request() {
    let host = HostProcess::start(&["libhello.so"], "[log]\naccess = true\n");
    let mut c = host.connect();
    c.get("/hello");
    c.get("/nowhere?x=1");
    let wait = std::time::Duration::from_secs(5);
    let line = host.wait_for_log("\"GET /hello HTTP/1.1\" 200 5 ", wait);
    assert!(
        line.contains("127.0.0.1 - - [") && line.contains(" +0000] "),
        "{line}"
    );
    assert!(line.ends_with(" hello 1"), "{line}");
    let line = host.wait_for_log("\"GET /nowhere?x=1 HTTP/1.1\" 404 ", wait);
    assert!(line.ends_with(" - -"), "{line}");
}

#[test]
fn shadow_copies_leave_nothing_on_disk_even_after_sigkill() {
    // The host's temporary directory is this test's own, so everything in it is the host's.
    let dir = HostProcess::prepare(&["libhello.so", "libcounter.so"], "");
    let tmp = dir.join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let host = HostProcess::spawn_with_env(&dir, &[], &[("TMPDIR", &tmp)]).ready();
    let listing = || -> Vec<String> {
        std::fs::read_dir(&tmp)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    assert_eq!(host.connect().get("/hello").text(), "Hello");
    assert_eq!(listing(), Vec::<String>::new(), "while serving");
    // SIGKILL for the server process: no exit path runs. The supervisor starts another, which
    // loads every plugin again.
    host.signal_server("KILL");
    host.wait_for_nth_log(") serving", 2, std::time::Duration::from_secs(20));
    assert_eq!(host.connect().get("/hello").text(), "Hello");
    assert_eq!(
        listing(),
        Vec::<String>::new(),
        "after SIGKILL and a restart"
    );
}

#[test]
fn a_plugin_written_in_c_answers_reads_a_header_and_the_body_and_logs() {
    // Bodies over 1 KiB reach it as a stream it reads through the body source.
    let host = HostProcess::start(
        &["libc_greeter.so"],
        "[limits.plugins.c_greeter]\nbuffer_body_bytes = 1024\n",
    );
    host.wait_for_log("c_greeter ready", std::time::Duration::from_secs(5));
    let mut c = host.connect();
    let r = c.get("/c_greeter");
    assert_eq!(
        (r.status, r.text()),
        (200, "Hello from C, stranger!\n"),
        "{r:?}"
    );
    assert_eq!(r.header("x-written-in"), Some("C"));
    c.send("GET /c_greeter HTTP/1.1\r\nHost: x\r\nX-Name: Ann\r\n\r\n");
    assert_eq!(c.reply().text(), "Hello from C, Ann!\n");
    for body in [b"abc".to_vec(), vec![b'z'; 100_000]] {
        c.send(format!(
            "POST /c_greeter HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        ));
        c.send(&body);
        let fnv = body.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        let want = format!(
            "Hello from C, stranger! Your body: {} bytes, fnv1a {fnv:016x}\n",
            body.len()
        );
        assert_eq!(c.reply().text(), want);
    }
    let line = host.wait_for_log(
        "greeted Ann (GET /c_greeter)",
        std::time::Duration::from_secs(5),
    );
    assert!(line.contains("c_greeter"), "tagged with the plugin: {line}");
    let loaded = host.wait_for_log(
        "plugin c_greeter: generation 1 loaded",
        std::time::Duration::from_secs(5),
    );
    assert!(loaded.contains("ABI 4"), "{loaded}");
}
