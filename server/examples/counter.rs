// The seed README's counter example: its body is verbatim; the README left out the imports.
#![allow(unused_variables, unused_must_use)]

use std::sync::{Arc, Mutex};

use mini_async_http::{aioserver, response};

pub fn main() {
    let counter = Arc::from(Mutex::from(0));

    let server = aioserver::AIOServer::new(3, "0.0.0.0:7878", move |request| {
        let lock = counter.clone();
        let mut counter = lock.lock().unwrap();

        let body = counter.to_string();
        *counter += 1;

        response::ResponseBuilder::empty_200()
            .body(body.as_bytes())
            .content_type("text/plain")
            .build()
            .unwrap()
    });

    server.start();
}
