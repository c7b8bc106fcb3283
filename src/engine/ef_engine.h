/*
** ef_engine.h — the editflow engine: HTTP transfers driven by one libcurl multi handle.
** Pure C over libcurl; never includes lua.h. The binding (src/binding/) translates this API
** for Lua; nothing here calls up into it.
**
** Ownership: the caller owns every ef_loop and ef_xfer it creates and frees each exactly once.
** A running transfer belongs to one loop; freeing either side first is safe (the loop detaches
** its transfers, a transfer removes itself from its loop). Completion is reported through
** ef_loop_pop_done() after ef_loop_step() has returned: no callback ever reaches the caller
** while libcurl is inside a call.
*/
#ifndef EF_ENGINE_H
#define EF_ENGINE_H

#include <stddef.h>
#include <stdint.h>

/* ---- growable byte buffer (ef_buf.c) ---- */

typedef struct ef_buf {
  char *data;   /* always NUL-terminated when non-NULL, so text bodies are C strings */
  size_t len;
  size_t cap;
} ef_buf;

int ef_buf_append(ef_buf *b, const void *p, size_t n);   /* 0, or -1 when out of memory */
void ef_buf_reset(ef_buf *b);                             /* len = 0, keeps the memory */
void ef_buf_free(ef_buf *b);

/* ---- transfers and the loop (ef_xfer.c, ef_loop.c) ---- */

typedef struct ef_loop ef_loop;
typedef struct ef_xfer ef_xfer;

typedef enum { EF_XFER_NEW, EF_XFER_RUNNING, EF_XFER_DONE } ef_xfer_state;

/* One-time process setup (curl_global_init); safe to call repeatedly from one thread. */
int ef_global_init(void);
const char *ef_curl_version(void);

ef_xfer *ef_xfer_new(void);
void ef_xfer_free(ef_xfer *x);

/* Setup; only valid while the transfer is EF_XFER_NEW. Return 0, or -1 (bad value, no memory). */
int ef_xfer_set_url(ef_xfer *x, const char *url);
int ef_xfer_set_method(ef_xfer *x, const char *method);
int ef_xfer_add_header(ef_xfer *x, const char *line);
int ef_xfer_set_body(ef_xfer *x, const char *data, size_t len);
void ef_xfer_set_timeouts(ef_xfer *x, long connect_ms, long total_ms);
void ef_xfer_set_low_speed(ef_xfer *x, long bytes_per_s, long seconds);
void ef_xfer_set_max_body(ef_xfer *x, size_t max);
void ef_xfer_set_follow(ef_xfer *x, int follow);
/* Never let libcurl send this request twice. Without it, libcurl silently sends a request
** again when a reused keep-alive connection closes before any answer byte, so a POST may reach
** the server twice. With it, a request with a body then ends "RESEND_REFUSED" (the server may
** have it; deciding is the caller's), and one without a body goes on a fresh connection,
** where libcurl never re-sends. */
void ef_xfer_set_once(ef_xfer *x, int once);
/* Parse the body as server-sent events instead of keeping it (non-2xx bodies are still kept);
** max_event bounds one event. The loop reports the transfer whenever new events arrived. */
void ef_xfer_set_sse(ef_xfer *x, size_t max_event);
/* Queued events as [4-byte little-endian length][bytes] records; clear after reading. */
const ef_buf *ef_xfer_events(const ef_xfer *x);
void ef_xfer_clear_events(ef_xfer *x);
/* Stream the body into a new temporary file in dir instead of memory. */
int ef_xfer_to_file(ef_xfer *x, const char *dir, char *err, size_t errlen);

/* Results; meaningful once the transfer is EF_XFER_DONE. */
ef_xfer_state ef_xfer_get_state(const ef_xfer *x);
long ef_xfer_status(const ef_xfer *x);         /* HTTP status, 0 if none was received */
const char *ef_xfer_code(const ef_xfer *x);    /* "OK" or a stable code: "COULDNT_CONNECT", ... */
const char *ef_xfer_error(const ef_xfer *x);   /* readable message, NULL when code is "OK" */
const ef_buf *ef_xfer_body(const ef_xfer *x);  /* memory sink only */
const ef_buf *ef_xfer_headers(const ef_xfer *x); /* raw header lines of the final response */
double ef_xfer_seconds(const ef_xfer *x);
long ef_xfer_new_connections(const ef_xfer *x); /* 0 when an open connection was reused */
size_t ef_xfer_size(const ef_xfer *x);         /* body bytes received */
/* Request body bytes that may have left: in once mode those handed to libcurl so far (counted
** while running); otherwise libcurl's upload count, known when the transfer ended. 0 means no
** byte of the body can have reached the server. */
size_t ef_xfer_uploaded(const ef_xfer *x);
const unsigned char *ef_xfer_head(const ef_xfer *x, size_t *n); /* first bytes of the body */
const char *ef_xfer_temp_path(const ef_xfer *x); /* file sink: NULL once committed/discarded */
int ef_xfer_commit(ef_xfer *x, const char *final_path, char *err, size_t errlen);
/* Never replaces final_path: 0 done, 1 it exists (temp kept, try another name), -1 failed. */
int ef_xfer_commit_new(ef_xfer *x, const char *final_path, char *err, size_t errlen);
void ef_xfer_discard(ef_xfer *x);

ef_loop *ef_loop_new(void);
void ef_loop_free(ef_loop *l);
void ef_loop_set_limits(ef_loop *l, long max_total_conns, long max_host_conns);
int ef_loop_start(ef_loop *l, ef_xfer *x, char *err, size_t errlen);
void ef_loop_abort(ef_loop *l, ef_xfer *x);
int ef_loop_step(ef_loop *l, int timeout_ms, char *err, size_t errlen);
ef_xfer *ef_loop_pop_done(ef_loop *l);
/* After the done ones: running transfers with new events since they were last reported. */
ef_xfer *ef_loop_pop_news(ef_loop *l);
size_t ef_loop_running(const ef_loop *l);

/*
** The host hook, for a program that owns its own event loop (luv, cqueues, a poll() loop):
** wait until ef_loop_fd is readable or ef_loop_timeout_ms has passed, then ef_loop_step(l, 0).
**
** ef_loop_fd: a descriptor that becomes readable whenever the loop has work: a socket libcurl
** waits on is ready, libcurl's timer is due, or the wakeup armed with ef_loop_arm is due. Only
** watch it for reading, never read it; each ef_loop_step re-arms it, so it is not readable
** while nothing is due (no busy loop). It belongs to the loop (do not close it). -1 when the
** backend has none (the poll(2) backend): the host then relies on ef_loop_timeout_ms alone,
** which knows timers but not socket activity, so it must also step at a polling interval.
**
** ef_loop_arm: the loop (and its descriptor) must wake in ms milliseconds at the latest; one
** wakeup at a time, a new call replaces it, -1 clears it; a step after it came due spends it.
**
** ef_loop_hold: the descriptor's timer is left as it is until the next ef_loop_arm, which
** arms it for everything due then (a scheduler's turn: its tasks start transfers, each moving
** libcurl's timer, and it arms once at the end -- one system call instead of one a move).
**
** ef_loop_timeout_ms: milliseconds until the loop must be stepped: the earlier of libcurl's
** timer and the armed wakeup; 0 when work is ready now (also finished transfers or events not
** yet popped); -1 when nothing is due (only socket activity can bring work).
*/
int ef_loop_fd(ef_loop *l); /* also starts keeping the descriptor's timer armed */
void ef_loop_arm(ef_loop *l, long ms);
void ef_loop_hold(ef_loop *l);
long ef_loop_timeout_ms(const ef_loop *l);
/* The readiness backend compiled in: "epoll" or "poll" (CMake option EDITFLOW_POLLER). */
const char *ef_loop_backend(void);

/*
** Disk work off the loop's thread (ef_disk.c). An op is made, handed to a loop with
** ef_loop_disk, runs on a worker thread, and is reported by ef_loop_pop_disk after a step
** (the loop's descriptor is readable while one waits); then ef_dop_result tells how it went.
** Each op owns what it works on (a duplicate descriptor, paths, a copy of the bytes), so it
** outlives whoever asked for it; ef_dop_free is safe at any time (a running op is freed when
** it stops), and freeing the loop first finishes every op handed to it.
**   ef_dop_sync        fsync (data_only: fdatasync) of a duplicate of fd
**   ef_dop_sync_dir    fsync of a folder: the names made in it are on disk
**   ef_dop_write       bytes into a new file at final_path: temporary file, fsync, then rename
**                      (replace) or link (never replaces: "exists" when taken); no folder fsync
**   ef_xfer_commit_op  a finished download's temporary file: fsync, then rename or link as
**                      above; the op takes the file from the transfer. When the name was taken
**                      (result 1) ef_xfer_adopt_temp gives the file back for another name.
**   ef_dop_tempfile    a new temporary file for a download (ef_xfer_take_temp)
** No op fsyncs a folder on its own: whoever made names syncs the folder once for many.
*/
typedef struct ef_dop ef_dop;
typedef enum {
  EF_DOP_SYNC, EF_DOP_DATASYNC, EF_DOP_SYNC_DIR, EF_DOP_COMMIT, EF_DOP_WRITE, EF_DOP_DIGEST,
  EF_DOP_TEMPFILE
} ef_dop_kind;
ef_dop *ef_dop_sync(int fd, int data_only);  /* NULL: out of memory or descriptors */
ef_dop *ef_dop_sync_dir(const char *dir);
ef_dop *ef_dop_write(const char *final_path, const void *data, size_t len, int replace);
/* The SHA-256 of a file's bytes and its size, read on a worker (a large download's digest
** would hold the loop for as long as reading and hashing it takes). */
ef_dop *ef_dop_digest(const char *path);
/* A digest op's result once it worked: 0 with out and size set; -1 otherwise. */
int ef_dop_digest_of(const ef_dop *d, unsigned char out[32], long long *size);
/* A download's temporary file (dir/.editflow-XXXXXX.part) made on a worker: creating a file
** in a large folder is a journal transaction on the filesystem, which the loop's thread must
** not wait for. ef_xfer_take_temp hands it to a transfer not yet started; one never taken
** is removed when the op is freed. */
ef_dop *ef_dop_tempfile(const char *dir);
int ef_xfer_take_temp(ef_xfer *x, ef_dop *d, char *err, size_t errlen); /* 0 or -1 with err */
ef_dop *ef_xfer_commit_op(ef_xfer *x, const char *final_path, int replace, char *err, size_t errlen);
int ef_xfer_adopt_temp(ef_xfer *x, ef_dop *d); /* 0, or -1 when d holds no temporary file */
ef_dop_kind ef_dop_get_kind(const ef_dop *d);
int ef_loop_disk(ef_loop *l, ef_dop *d, char *err, size_t errlen);
ef_dop *ef_loop_pop_disk(ef_loop *l);
size_t ef_loop_disk_pending(const ef_loop *l); /* handed to the loop and not yet popped */
int ef_dop_done(const ef_dop *d);              /* popped: the result is known */
/* Blocks until d's worker has finished it, without the loop (for a caller that may not wait
** on the loop); ef_dop_result is then readable. The loop still pops and reports d later. */
void ef_dop_wait(ef_dop *d);
/* 0 it worked; 1 the name was taken (commit, write with replace 0); -1 failed, err says. */
int ef_dop_result(const ef_dop *d, char *err, size_t errlen);
void ef_dop_free(ef_dop *d);

/* ---- bytes and names (ef_codec.c) ---- */

size_t ef_b64_encoded_len(size_t n);
void ef_b64_encode(const unsigned char *in, size_t n, char *out); /* writes encoded_len + NUL */
/* Decodes standard base64 (padding optional). Returns bytes written, or -1 and *bad = offset. */
long ef_b64_decode(const char *in, size_t n, unsigned char *out, size_t *bad);

typedef struct ef_image_kind { const char *ext; const char *mime; } ef_image_kind;
/* Recognises PNG, JPEG, GIF and WebP from leading bytes; NULL if none. */
const ef_image_kind *ef_sniff_image(const unsigned char *p, size_t n);
/* Width and height from a PNG, JPEG, GIF or WebP header: 0, or -1 when the header is not
** within the n bytes or is malformed (a zero size included). */
int ef_image_size(const unsigned char *p, size_t n, uint32_t *w, uint32_t *h);

/* 64-bit FNV-1a of the bytes: a stable fingerprint (not a cryptographic hash). */
unsigned long long ef_fnv1a64(const void *p, size_t n);

/* Writes into out (size outlen >= 2) a file name safe on every common filesystem. */
void ef_safe_name(const char *in, size_t n, char *out, size_t outlen);

/* ---- webhook crypto (ef_crypto.c, OpenSSL 3 libcrypto) ---- */

/* SHA-256 of the bytes into out. 0, or -1 when libcrypto failed. */
int ef_sha256(const void *p, size_t n, unsigned char out[32]);
int ef_sha256_file(const char *path, unsigned char out[32], long long *size); /* 0, or -1 + errno */
/* Ed25519 (RFC 8032, pure): 1 when sig is pub's signature of msg, 0 when not (also for a key
** that is not 32 bytes or a signature that is not 64), -1 when libcrypto failed. */
int ef_ed25519_verify(const unsigned char *pub, size_t publen, const void *msg, size_t n,
                      const unsigned char *sig, size_t siglen);

/* ---- server-sent events (ef_sse.c) ---- */

typedef int (*ef_sse_emit)(void *ud, const char *data, size_t len); /* non-zero stops the feed */

typedef struct ef_sse {
  ef_buf line;   /* the current, unfinished line */
  ef_buf data;   /* the current event's data so far */
  size_t max;    /* limit for one line and for one event */
  int has_data;  /* a data field was seen since the last dispatch (the spec's non-empty buffer) */
  int after_cr;  /* the last byte was a CR: an LF next is the rest of that line end */
  int bom;       /* bytes of a leading UTF-8 BOM matched so far, or -1 once past the start */
  int failed;
} ef_sse;

void ef_sse_init(ef_sse *p, size_t max_event);
void ef_sse_free(ef_sse *p);
/* Feeds bytes; calls emit once per complete event. 0, or -1 once a limit was passed. */
int ef_sse_feed(ef_sse *p, const char *buf, size_t n, ef_sse_emit emit, void *ud);

/* ---- files (ef_fs.c) ---- */
/* Descriptors 0-2 found closed get /dev/null (gnulib's stdopen); -> -1, or the one that could
** not be filled. The host calls it first thing, editflow.core when a stock lua5.4 loads it. */
int ef_open_std_fds(void);

int ef_mkdir_p(const char *path, char *err, size_t errlen);
/* Writes all of it (short writes and EINTR retried); 0 or an errno. */
int ef_write_all(int fd, const void *data, size_t len);
int ef_write_atomic(const char *path, const void *data, size_t len, char *err, size_t errlen);
/* Calls fn for each entry of a folder except . and ..; stops when fn returns non-zero. */
int ef_dir_each(const char *path, int (*fn)(void *ud, const char *name), void *ud, char *err,
                size_t errlen);
/* A journal: ef_open_log opens (creates 0666 less the umask) for appending; -1 with "cannot
** write PATH: reason". ef_append_fd appends one record without waiting for the disk (the
** caller syncs, once for many records; path only names the file in err); on failure the file
** is cut back to its length before the call: -1 ("cannot write PATH: reason"), or -2 when that
** cut failed too and the file may end in a partial record. *end: the file's length after the
** record (one writer per file). ef_cut_fd shrinks the file to size bytes and waits until that
** is on disk; it never grows it (EINVAL); 0 or an errno. */
int ef_open_log(const char *path, char *err, size_t errlen);
int ef_append_fd(int fd, const char *path, const void *data, size_t len, size_t *end, char *err,
                 size_t errlen);
int ef_cut_fd(int fd, size_t size);
/* fdatasync (data_only) or fsync of fd, here; 0 or an errno. Folder: by path, fsync. */
int ef_sync_fd(int fd, int data_only);
int ef_sync_dir(const char *dir);
/* Takes the exclusive lock of a lock file (created 0644 if missing) without waiting and
** writes the own pid into it. Returns the descriptor that holds it (release: ef_unlock; the
** kernel releases it when the process dies), -1 on error, or EF_LOCKED when another open
** file holds it: *holder is then the pid written there, 0 if none yet. err names the holder. */
#define EF_LOCKED (-2)
int ef_lock(const char *path, char *err, size_t errlen, long *holder);
void ef_unlock(int fd);
/* Reads a whole regular file of at most max bytes into out (reset first; freed on failure).
** Never blocks and never reads a device, FIFO, socket or directory. NULL on success, else a
** stable code with a message in err: "NOT_REGULAR" ("'/dev/zero' is a character device, not
** a regular file"), "TOO_LARGE" (size and limit named; also when it grew past max while being
** read), "READ_ERROR" (strerror). */
const char *ef_read_file(const char *path, size_t max, ef_buf *out, char *err, size_t errlen);
/* What identifies a file's present content without reading it: device, inode, size and
** modification time (ns). 0, or -1 with errno. A changed stamp means the bytes must be read
** again; an equal one that they are, as far as the filesystem can tell, the same. */
typedef struct ef_stamp {
  unsigned long long dev, ino, size;
  long long mtime_s, mtime_ns, ctime_s, ctime_ns;
} ef_stamp;
int ef_file_stamp(const char *path, ef_stamp *out);
int ef_fsync_dir_of(const char *path);
/* Expands a glob(3) pattern: * ? [...] everywhere in the path, {a,b} and a leading ~ or ~user
** where the C library has them, a backslash quoting the next character; a leading dot of a
** name is matched only when the pattern spells it. Fills out (reset first) with the matching
** paths, each followed by a NUL byte, sorted by bytes (not by locale) and without duplicates;
** with EF_GLOB_FILES only regular files (links followed). Folders that cannot be read are
** skipped. 0, also when nothing matches (out is then empty); -1 with a message in err when
** glob(3) itself failed (out of memory), out freed. */
#define EF_GLOB_FILES 1
int ef_glob(const char *pattern, int flags, ef_buf *out, char *err, size_t errlen);
/* mkstemps() with the mode fopen() would give and close-on-exec; -1 with errno on failure. */
int ef_mktemp(char *tmpl, int suffixlen);

/* ---- fingerprint maps (ef_fpmap.c): 64-bit fingerprint -> a small count, 12 bytes a slot ---- */

typedef struct ef_fpmap ef_fpmap;

ef_fpmap *ef_fpmap_new(void);                                 /* NULL when out of memory */
void ef_fpmap_free(ef_fpmap *m);
int ef_fpmap_get(const ef_fpmap *m, uint64_t key, uint32_t *val); /* 1 (val set) or 0 */
int ef_fpmap_set(ef_fpmap *m, uint64_t key, uint32_t val);    /* 0, or -1 out of memory */
size_t ef_fpmap_count(const ef_fpmap *m);
size_t ef_fpmap_bytes(const ef_fpmap *m);                     /* what it holds allocated */

#endif
