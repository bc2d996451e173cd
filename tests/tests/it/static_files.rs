//! The static-files plugin: types, validators and 304, HEAD, ranges, index files, and every way of
//! reaching outside the root refused.

use integration_tests::HostProcess;

fn start() -> (HostProcess, std::path::PathBuf) {
    let www =
        std::env::temp_dir().join(format!("mah-www-{}-{}", std::process::id(), rand_suffix()));
    let _ = std::fs::remove_dir_all(&www);
    std::fs::create_dir_all(www.join("sub")).unwrap();
    std::fs::write(www.join("index.html"), "<h1>home</h1>").unwrap();
    std::fs::write(www.join("a.txt"), "0123456789").unwrap();
    std::fs::write(www.join("sub/b.css"), "b{}").unwrap();
    std::fs::write(www.join("sub/index.html"), "sub index").unwrap();
    let outside = www.with_extension("secret");
    std::fs::write(&outside, "secret").unwrap();
    std::os::unix::fs::symlink(&outside, www.join("link-out")).unwrap();
    std::os::unix::fs::symlink(www.join("a.txt"), www.join("link-in.txt")).unwrap();
    let config = format!(
        "[plugins.static_files]\nroot = {:?}\n\n[[routes]]\nprefix = \"/static\"\nplugin = \"static_files\"\n",
        www.display().to_string()
    );
    (HostProcess::start(&["libstatic_files.so"], &config), www)
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        .into()
}

#[test]
fn serves_files_with_types_validators_ranges_and_index() {
    let (host, www) = start();
    let mut c = host.connect();
    let r = c.get("/static/a.txt");
    assert_eq!((r.status, r.text()), (200, "0123456789"));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    let etag = r.header("etag").unwrap().to_owned();
    let last_modified = r.header("last-modified").unwrap().to_owned();
    assert_eq!(
        c.get("/static/sub/b.css").header("content-type"),
        Some("text/css; charset=utf-8")
    );

    let cond = |c: &mut integration_tests::Client, h: &str| {
        c.send(format!(
            "GET /static/a.txt HTTP/1.1\r\nHost: x\r\n{h}\r\n\r\n"
        ))
        .reply()
    };
    let r = cond(&mut c, &format!("If-None-Match: {etag}"));
    assert_eq!(
        (r.status, r.body.len(), r.header("etag")),
        (304, 0, Some(etag.as_str()))
    );
    assert_eq!(cond(&mut c, "If-None-Match: \"other\"").status, 200);
    assert_eq!(
        cond(&mut c, &format!("If-Modified-Since: {last_modified}")).status,
        304
    );
    assert_eq!(
        cond(&mut c, "If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT").status,
        200
    );

    let r = c
        .send("HEAD /static/a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        .reply_to(true);
    assert_eq!((r.status, r.header("content-length")), (200, Some("10")));

    let r = cond(&mut c, "Range: bytes=2-4");
    assert_eq!(
        (r.status, r.text(), r.header("content-range")),
        (206, "234", Some("bytes 2-4/10"))
    );
    let r = cond(&mut c, "Range: bytes=-3");
    assert_eq!((r.status, r.text()), (206, "789"));
    let r = cond(&mut c, "Range: bytes=10-");
    assert_eq!(
        (r.status, r.header("content-range")),
        (416, Some("bytes */10"))
    );
    assert_eq!(cond(&mut c, "Range: bytes=0-1,4-5").status, 200);
    assert_eq!(
        cond(&mut c, "Range: bytes=2-4\r\nIf-Range: \"stale\"").status,
        200
    );

    assert_eq!(c.get("/static/").text(), "<h1>home</h1>");
    let r = c.get("/static/sub");
    assert_eq!(
        (r.status, r.header("location")),
        (301, Some("/static/sub/"))
    );
    assert_eq!(c.get("/static/sub/").text(), "sub index");
    assert_eq!(c.get("/static/link-in.txt").text(), "0123456789");
    assert_eq!(c.get("/static/missing").status, 404);
    let r = c
        .send("POST /static/a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        .reply();
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
    std::fs::remove_dir_all(&www).unwrap();
}

#[test]
fn never_serves_outside_the_root() {
    let (host, www) = start();
    let mut c = host.connect();
    for (path, status) in [
        ("/static/../Cargo.toml", 400),
        ("/static/sub/../../x", 400),
        ("/static/%2e%2e/x", 400),
        ("/static/%2E%2E%2Fx", 400),
        ("/static/sub%2f..%2f..%2fx", 400),
        ("/static/a%5c..%5cx", 400),
        ("/static/a%00", 400),
        ("/static//etc/passwd", 404),
        ("/static/link-out", 403),
    ] {
        let r = c.get(path);
        assert_eq!(r.status, status, "{path}: {r:?}");
        assert!(
            !r.text().contains("secret") && !r.text().contains("root:"),
            "{path}"
        );
    }
    std::fs::remove_dir_all(&www).unwrap();
    let _ = std::fs::remove_file(www.with_extension("secret"));
}
