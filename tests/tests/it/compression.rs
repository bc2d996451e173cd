//! Response compression: gzip and brotli by `Accept-Encoding` for compressible bodies above
//! `[compression] min_bytes`, `Vary` on every variant, the same headers for `HEAD`, off by
//! configuration or per plugin, small responses untouched.

use std::io::Read;

use integration_tests::{Client, HostProcess, Reply};

/// A kv value whose JSON answer is a few kilobytes.
fn store_big_value(c: &mut Client) -> String {
    let value = format!("\"{}\"", "compressible text, ".repeat(200));
    let r = c
        .send(format!(
            "PUT /kv/big HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{value}",
            value.len()
        ))
        .reply();
    assert_eq!(r.status, 201, "{r:?}");
    value
}

fn get(c: &mut Client, path: &str, accept: &str, method: &str) -> Reply {
    c.send(format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nAccept-Encoding: {accept}\r\n\r\n"
    ))
    .reply_to(method == "HEAD")
}

#[test]
fn json_goes_out_in_the_coding_the_client_prefers_with_vary_on_every_variant() {
    let host = HostProcess::start(&["libkv.so"], "");
    let mut c = host.connect();
    store_big_value(&mut c);
    let plain = get(&mut c, "/kv/big", "identity", "GET");
    assert_eq!(plain.header("content-encoding"), None, "{plain:?}");
    assert_eq!(plain.header("vary"), Some("accept-encoding"));
    assert!(plain.body.len() > 3000);

    let gzip = get(&mut c, "/kv/big", "gzip, deflate", "GET");
    assert_eq!(gzip.header("content-encoding"), Some("gzip"), "{gzip:?}");
    assert_eq!(gzip.header("vary"), Some("accept-encoding"));
    let mut back = Vec::new();
    flate2::read::GzDecoder::new(&gzip.body[..])
        .read_to_end(&mut back)
        .unwrap();
    assert_eq!(back, plain.body);
    assert!(
        gzip.body.len() * 5 < plain.body.len(),
        "{} bytes",
        gzip.body.len()
    );

    let br = get(&mut c, "/kv/big", "gzip, br", "GET");
    assert_eq!(br.header("content-encoding"), Some("br"), "{br:?}");
    let mut back = Vec::new();
    brotli::BrotliDecompress(&mut &br.body[..], &mut back).unwrap();
    assert_eq!(back, plain.body);

    // HEAD: the headers its GET gets, the compressed length included.
    let head = get(&mut c, "/kv/big", "gzip, br", "HEAD");
    assert!(head.body.is_empty());
    for name in ["content-encoding", "content-length", "vary", "content-type"] {
        assert_eq!(head.header(name), br.header(name), "{name}: {head:?}");
    }
}

#[test]
fn small_responses_and_types_that_do_not_compress_go_as_they_are() {
    let host = HostProcess::start(&["libhello.so", "libkv.so"], "");
    let mut c = host.connect();
    let r = get(&mut c, "/hello", "gzip, br", "GET");
    assert_eq!(
        (r.header("content-encoding"), r.header("vary")),
        (None, None)
    );
    assert_eq!(r.text(), "Hello");
}

#[test]
fn compression_is_off_by_configuration_or_for_one_plugin() {
    for config in [
        "[compression]\nenabled = false\n",
        "[limits.plugins.kv]\ncompress = false\n",
        "[compression]\nmin_bytes = 1000000\n",
    ] {
        let host = HostProcess::start(&["libkv.so"], config);
        let mut c = host.connect();
        store_big_value(&mut c);
        let r = get(&mut c, "/kv/big", "gzip, br", "GET");
        assert_eq!(r.header("content-encoding"), None, "{config}: {r:?}");
        assert_eq!(r.header("vary"), None, "{config}: {r:?}");
    }
}
