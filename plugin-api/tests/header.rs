//! `include/mini_async_http.h`, the ABI for C, is what cbindgen makes of `src/abi/` now: this test
//! fails when the header is stale, and `UPDATE_HEADER=1` rewrites it.

use std::path::Path;

#[test]
fn the_c_header_is_current() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_crate(dir)
        .generate()
        .expect("cbindgen generates the header");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let path = dir.join("include/mini_async_http.h");
    if std::env::var_os("UPDATE_HEADER").is_some() {
        std::fs::write(&path, &generated).expect("write the header");
        return;
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is stale: run UPDATE_HEADER=1 cargo test -p plugin-api --test header",
        path.display()
    );
}
