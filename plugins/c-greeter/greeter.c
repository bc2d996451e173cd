/* c_greeter: a plugin written in C against include/mini_async_http.h, the same ABI the Rust
 * plugins use through plugin-api.
 *
 *   GET  /c_greeter            Hello from C, stranger!
 *   GET  /c_greeter  (X-Name: Ann)   Hello from C, Ann!
 *   POST /c_greeter  (a body)  ... and the body's length and a checksum (FNV-1a, 64 bits)
 *
 * Every answer is logged through the host, so it shows in the host's log tagged with the
 * plugin's name and generation. Build it with any C11 compiler:
 *
 *   cc -std=c11 -O2 -fPIC -shared -I plugin-api/include \
 *      -o plugins/libc_greeter.so plugins/c-greeter/greeter.c
 *
 * The host may call on_handle from many threads at once: this plugin keeps nothing that
 * changes after on_init. Nothing here can panic, so it declares MAH_PANIC_NONE. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mini_async_http.h"

#define EXPORT __attribute__((visibility("default")))

/* The instance: what on_init keeps for the handler. */
struct greeter {
    const struct mah_HostApi *host;
};

static struct mah_RawBytes bytes(const char *text, size_t len) {
    struct mah_RawBytes b = {(const uint8_t *)text, len};
    return b;
}

static void log_info(const struct greeter *g, const char *text, size_t len) {
    g->host->callback_log(g->host->ctx, 3, bytes(text, len));
}

static mah_Status on_init(const struct mah_HostApi *host, struct mah_RawBytes settings,
                          void **instance_out, const struct mah_BytesSink *error) {
    (void)settings;
    struct greeter *g = malloc(sizeof *g);
    if (g == NULL) {
        static const char why[] = "out of memory";
        error->callback_write(error->ctx, bytes(why, sizeof why - 1));
        return mah_Status_FAILED;
    }
    g->host = host;
    *instance_out = g;
    static const char ready[] = "c_greeter ready";
    log_info(g, ready, sizeof ready - 1);
    return mah_Status_OK;
}

/* The first value of header `name` (any case), or an empty run. */
static struct mah_RawBytes header(const struct mah_Request *request, const char *name) {
    size_t n = strlen(name);
    for (size_t i = 0; i < request->headers_len; i++) {
        const struct mah_Header *h = &request->headers[i];
        if (h->name.len == n && strncasecmp((const char *)h->name.ptr, name, n) == 0) {
            return h->value;
        }
    }
    return bytes(NULL, 0);
}

struct digest {
    uint64_t len;
    uint64_t fnv;
};

static void digest_add(struct digest *d, const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        d->fnv = (d->fnv ^ p[i]) * 0x100000001b3u;
    }
    d->len += n;
}

/* The whole body: what the host read for us, then, when it streams, the rest from the source. */
static int read_body(const struct mah_Request *request, struct digest *d) {
    digest_add(d, request->body.ptr, request->body.len);
    if (request->source == NULL) {
        return 0;
    }
    uint8_t buf[16384];
    for (;;) {
        ptrdiff_t n = request->source->callback_read(request->source->ctx, buf, sizeof buf);
        if (n < 0) {
            return -1;
        }
        if (n == 0) {
            return 0;
        }
        digest_add(d, buf, (size_t)n);
    }
}

/* A length for `%.*s`: at most `max`, so it fits an int. */
static int clamp(size_t len, int max) {
    return len > (size_t)max ? max : (int)len;
}

/* What snprintf wrote into a buffer of `size`: 0 on an error, `size - 1` when it was cut. */
static size_t written(int n, size_t size) {
    if (n < 0) {
        return 0;
    }
    return (size_t)n < size ? (size_t)n : size - 1;
}

static mah_Status on_handle(const void *instance, const struct mah_Request *request,
                            const struct mah_ResponseSink *sink) {
    const struct greeter *g = instance;
    struct mah_RawBytes name = header(request, "x-name");
    /* At most 64 bytes of the name, as the client sent them (the answer says charset=utf-8
     * only when the name is ASCII). */
    int name_len = clamp(name.len, 64);
    const char *who = name_len > 0 ? (const char *)name.ptr : "stranger";
    if (name_len == 0) {
        name_len = (int)strlen(who);
    }
    int ascii = 1;
    for (int i = 0; i < name_len; i++) {
        ascii &= (unsigned char)who[i] < 0x80;
    }
    struct digest d = {0, 0xcbf29ce484222325u};
    if (read_body(request, &d) != 0) {
        /* The client went away or sent a broken body: the host answers it. */
        return mah_Status_FAILED;
    }
    char text[256];
    int len;
    if (d.len > 0) {
        len = snprintf(text, sizeof text, "Hello from C, %.*s! Your body: %llu bytes, fnv1a %016llx\n",
                       name_len, who, (unsigned long long)d.len, (unsigned long long)d.fnv);
    } else {
        len = snprintf(text, sizeof text, "Hello from C, %.*s!\n", name_len, who);
    }
    /* The method and path are never null (the host sends at least one byte of each). */
    char line[300];
    int line_len = snprintf(line, sizeof line, "greeted %.*s (%.*s %.*s)", name_len, who,
                            clamp(request->method.len, 64), (const char *)request->method.ptr,
                            clamp(request->path.len, 128), (const char *)request->path.ptr);
    log_info(g, line, written(line_len, sizeof line));
    static const char utf8[] = "content-type: text/plain; charset=utf-8\r\nx-written-in: C\r\n";
    static const char plain[] = "content-type: text/plain\r\nx-written-in: C\r\n";
    struct mah_RawResponse response = {
        .status = 200,
        .flags = 0,
        .headers = ascii ? bytes(utf8, sizeof utf8 - 1) : bytes(plain, sizeof plain - 1),
        .body = bytes(text, written(len, sizeof text)),
        .body_kind = mah_RawResponse_BODY_BYTES,
        .fd = -1,
        .offset = 0,
        .length = 0,
    };
    return sink->callback_respond(sink->ctx, &response);
}

static void on_drop(void *instance) {
    free(instance);
}

EXPORT const struct mah_Declaration mini_async_http_plugin = {
    .magic = MAH_MAGIC,
    .abi_version = MAH_ABI_VERSION,
    .size = sizeof(struct mah_Declaration),
    .panic = MAH_PANIC_NONE,
    .name = {(const uint8_t *)"c_greeter", 9},
    .version = {(const uint8_t *)"0.1.0", 5},
    .on_init = on_init,
    .on_handle = on_handle,
    .on_drop = on_drop,
    .on_save = NULL,
    .on_restore = NULL,
};
