/*
** test_engine.c — the engine's own tests, in C, against the sandbox on loopback.
** Run through tests/run_with_sandbox.py, which starts the sandbox, exports its URL as
** EDITFLOW_SANDBOX_URL and stops it by PID afterwards. Pure-function cases (base64, sniffing,
** names, files) need no server. The "once" case brings its own tiny HTTP server (a thread on
** 127.0.0.1) whose connections die before answering their second request. Prints
** "N passed, N failed"; exits non-zero on any failure.
*/
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "ef_engine.h"

static int passed, failed;
static const char *base;

#define CHECK(cond)                                                                         \
  do {                                                                                      \
    if (cond) {                                                                             \
      passed++;                                                                             \
    } else {                                                                                \
      failed++;                                                                             \
      fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                      \
    }                                                                                       \
  } while (0)

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs the loop until x is done (bounded: 20 s). */
static void wait_done(ef_loop *l, ef_xfer *x) {
  char err[256];
  double deadline = now() + 20;
  while (ef_xfer_get_state(x) != EF_XFER_DONE && now() < deadline) {
    if (ef_loop_step(l, 100, err, sizeof err) != 0)
      break;
    while (ef_loop_pop_done(l) != NULL)
      ;
  }
}

static ef_xfer *get(ef_loop *l, const char *path, const char *auth) {
  char url[512];
  char err[256];
  snprintf(url, sizeof url, "%s%s", base, path);
  ef_xfer *x = ef_xfer_new();
  ef_xfer_set_url(x, url);
  ef_xfer_set_timeouts(x, 5000, 10000);
  if (auth)
    ef_xfer_add_header(x, auth);
  if (ef_loop_start(l, x, err, sizeof err) != 0)
    fprintf(stderr, "start: %s\n", err);
  return x;
}

static void test_codec(void) {
  static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
  static const char *const enc[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
  for (int i = 0; i < 7; i++) { /* RFC 4648 §10 vectors, both ways */
    char out[16];
    unsigned char dec[16];
    size_t bad = 0;
    ef_b64_encode((const unsigned char *)plain[i], strlen(plain[i]), out);
    CHECK(strcmp(out, enc[i]) == 0);
    long n = ef_b64_decode(enc[i], strlen(enc[i]), dec, &bad);
    CHECK(n == (long)strlen(plain[i]) && memcmp(dec, plain[i], (size_t)n) == 0);
  }
  unsigned char dec[16];
  size_t bad = 0;
  CHECK(ef_b64_decode("Zm9v!", 5, dec, &bad) < 0 && bad == 4);
  CHECK(ef_b64_decode("Zg=", 3, dec, &bad) < 0);
  CHECK(ef_b64_decode("Zm9vY", 5, dec, &bad) < 0);
  CHECK(ef_b64_decode("Zg", 2, dec, &bad) == 1 && dec[0] == 'f'); /* padding optional */

  CHECK(ef_sniff_image((const unsigned char *)"\x89PNG\r\n\x1a\n....", 12) != NULL);
  CHECK(strcmp(ef_sniff_image((const unsigned char *)"\xff\xd8\xff\xe0", 4)->mime, "image/jpeg") == 0);
  CHECK(strcmp(ef_sniff_image((const unsigned char *)"RIFF\0\0\0\0WEBPVP8 ", 16)->ext, "webp") == 0);
  CHECK(ef_sniff_image((const unsigned char *)"GIF89a", 6) != NULL);
  CHECK(ef_sniff_image((const unsigned char *)"<html>", 6) == NULL);
  CHECK(ef_sniff_image((const unsigned char *)"\x89PN", 3) == NULL);

  static const char *const names[][2] = {
    {"../../etc/passwd", "_.._etc_passwd"}, {"/abs/path.png", "_abs_path.png"},
    {"..", "_"}, {"", "_"}, {".hidden", "hidden"}, {"a b\tc", "a_b_c"},
    {"CON", "_CON"}, {"nul.png", "_nul.png"}, {"com7.txt", "_com7.txt"},
    {"com0", "com0"}, {"ok-name_1.png", "ok-name_1.png"}, {"trail...", "trail"},
    {"-rf", "rf"}, {"caf\xc3\xa9", "caf_"}, {"a/../b", "a_.._b"}};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    char out[128];
    ef_safe_name(names[i][0], strlen(names[i][0]), out, sizeof out);
    if (strcmp(out, names[i][1]) != 0)
      fprintf(stderr, "safe_name(%s) = %s, want %s\n", names[i][0], out, names[i][1]);
    CHECK(strcmp(out, names[i][1]) == 0);
  }
  char longname[400], out[128];
  memset(longname, 'x', sizeof longname);
  ef_safe_name(longname, sizeof longname, out, sizeof out);
  CHECK(strlen(out) == 120);
}

/* Hex digits to bytes (test vectors only: the input is trusted). */
static size_t unhex(const char *hex, unsigned char *out) {
  size_t n = strlen(hex) / 2;
  for (size_t i = 0; i < n; i++) {
    unsigned v;
    sscanf(hex + 2 * i, "%2x", &v);
    out[i] = (unsigned char)v;
  }
  return n;
}

/* SHA-256 (FIPS 180-2 "abc") and Ed25519 (RFC 8032 section 7.1, TEST 2) vectors. */
static void test_crypto(void) {
  unsigned char d[32], want[32], pub[32], sig[64], msg[1];
  CHECK(ef_sha256("abc", 3, d) == 0);
  unhex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", want);
  CHECK(memcmp(d, want, 32) == 0);
  CHECK(ef_sha256("", 0, d) == 0);
  unhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", want);
  CHECK(memcmp(d, want, 32) == 0);

  unhex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", pub);
  unhex("92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
        "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00", sig);
  msg[0] = 0x72;
  CHECK(ef_ed25519_verify(pub, 32, msg, 1, sig, 64) == 1);
  msg[0] = 0x73;
  CHECK(ef_ed25519_verify(pub, 32, msg, 1, sig, 64) == 0);  /* another message */
  msg[0] = 0x72;
  sig[10] ^= 1;
  CHECK(ef_ed25519_verify(pub, 32, msg, 1, sig, 64) == 0);  /* a flipped bit */
  sig[10] ^= 1;
  CHECK(ef_ed25519_verify(pub, 31, msg, 1, sig, 64) == 0);  /* wrong lengths: no, not a crash */
  CHECK(ef_ed25519_verify(pub, 32, msg, 1, sig, 63) == 0);
}

static int collect(void *ud, const char *d, size_t n) {
  ef_buf *b = ud;
  ef_buf_append(b, d, n);
  ef_buf_append(b, "|", 1);
  return 0;
}

static void test_sse(void) {
  static const char stream[] = "data: one\r\n\r\n: ping\n\ndata:two\ndata: 2b\r\rid: 7\nevent: x\n"
                               "data\n\ndata: three\n\n";
  ef_sse p;
  ef_buf got = {0};
  /* fed one byte at a time: every CR/LF split is exercised */
  ef_sse_init(&p, 64);
  for (size_t i = 0; i < sizeof stream - 1; i++)
    CHECK(ef_sse_feed(&p, stream + i, 1, collect, &got) == 0);
  CHECK(got.data && strcmp(got.data, "one|two\n2b||three|") == 0);
  ef_sse_free(&p);
  ef_buf_free(&got);
  /* an event over the limit stops the parser, also when made of bare "data" lines */
  ef_sse_init(&p, 8);
  CHECK(ef_sse_feed(&p, "data: 123456789\n\n", 17, collect, &got) != 0);
  ef_sse_free(&p);
  ef_sse_init(&p, 8);
  CHECK(ef_sse_feed(&p, "data\ndata\ndata\ndata\ndata\ndata\ndata\ndata\ndata\ndata\n", 50, collect, &got) != 0);
  ef_sse_free(&p);
  ef_buf_free(&got);
}

static void test_files(void) {
  char dir[] = "/tmp/editflow-engine-XXXXXX", path[256], err[256];
  CHECK(mkdtemp(dir) != NULL);
  snprintf(path, sizeof path, "%s/a/b/c", dir);
  CHECK(ef_mkdir_p(path, err, sizeof err) == 0);
  CHECK(ef_mkdir_p(path, err, sizeof err) == 0); /* existing is fine */
  snprintf(path, sizeof path, "%s/a/b/c/out.bin", dir);
  CHECK(ef_write_atomic(path, "hello", 5, err, sizeof err) == 0);
  struct stat st;
  CHECK(stat(path, &st) == 0 && st.st_size == 5);
  CHECK(ef_mkdir_p(path, err, sizeof err) != 0); /* a file is in the way */
  snprintf(path, sizeof path, "%s/missing/out.bin", dir);
  CHECK(ef_write_atomic(path, "x", 1, err, sizeof err) != 0 && strstr(err, "missing") != NULL);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  CHECK(system(cmd) == 0);
}

static void test_requests(void) {
  ef_loop *l = ef_loop_new();
  CHECK(l != NULL);

  /* A plain GET into memory, with headers parsed from the final response. */
  ef_xfer *x = get(l, "/_sandbox/stats", NULL);
  wait_done(l, x);
  CHECK(strcmp(ef_xfer_code(x), "OK") == 0 && ef_xfer_error(x) == NULL);
  CHECK(ef_xfer_status(x) == 200);
  CHECK(ef_xfer_body(x)->len > 0 && strstr(ef_xfer_body(x)->data, "\"requests\"") != NULL);
  CHECK(ef_xfer_headers(x)->data && strstr(ef_xfer_headers(x)->data, "HTTP/1.1 200") != NULL);
  ef_xfer_free(x);

  /* A POST with a JSON body: a real submit, answered with a request id. */
  char url[512], err[256];
  snprintf(url, sizeof url, "%s/fal-ai/qwen-image-edit-plus", base);
  static const char body[] =
    "{\"prompt\":\"engine test\",\"image_urls\":[\"https://example.invalid/a.png\"]}";
  x = ef_xfer_new();
  CHECK(ef_xfer_set_url(x, url) == 0);
  CHECK(ef_xfer_set_method(x, "POST") == 0);
  CHECK(ef_xfer_set_method(x, "BREW") != 0);
  CHECK(ef_xfer_add_header(x, "Content-Type: application/json") == 0);
  CHECK(ef_xfer_add_header(x, "Authorization: Key test-key") == 0);
  CHECK(ef_xfer_add_header(x, "X-Bad: a\r\nInjected: b") != 0);
  CHECK(ef_xfer_set_body(x, body, sizeof body - 1) == 0);
  CHECK(ef_loop_start(l, x, err, sizeof err) == 0);
  CHECK(ef_loop_start(l, x, err, sizeof err) != 0); /* only once */
  wait_done(l, x);
  CHECK(ef_xfer_status(x) == 200);
  CHECK(ef_xfer_body(x)->data && strstr(ef_xfer_body(x)->data, "\"request_id\"") != NULL);
  ef_xfer_free(x);

  /* Many at once on one loop; all finish, each reported exactly once. */
  ef_xfer *many[16];
  for (int i = 0; i < 16; i++)
    many[i] = get(l, "/_sandbox/stats", NULL);
  CHECK(ef_loop_running(l) == 16);
  int reported = 0;
  double deadline = now() + 20;
  while (reported < 16 && now() < deadline) {
    CHECK(ef_loop_step(l, 100, err, sizeof err) == 0);
    while (ef_loop_pop_done(l) != NULL)
      reported++;
  }
  CHECK(reported == 16);
  for (int i = 0; i < 16; i++) {
    CHECK(ef_xfer_status(many[i]) == 200);
    ef_xfer_free(many[i]);
  }

  /* Sequential requests reuse one connection: after the first, none opens a new one. */
  ef_loop *l2 = ef_loop_new(); /* a fresh connection cache */
  long opened = 0;
  for (int i = 0; i < 10; i++) {
    x = get(l2, "/_sandbox/stats", NULL);
    wait_done(l2, x);
    CHECK(ef_xfer_status(x) == 200);
    opened += ef_xfer_new_connections(x);
    ef_xfer_free(x);
  }
  CHECK(opened == 1);
  ef_loop_free(l2);

  /* The body limit: a stream that never ends is cut at max_body, not buffered forever. */
  x = get(l, "/_sandbox/stats", NULL);
  ef_xfer_free(x); /* freeing a running transfer aborts it cleanly */
  CHECK(ef_loop_running(l) == 0);
  x = ef_xfer_new();
  snprintf(url, sizeof url, "%s/_sandbox/stats", base);
  ef_xfer_set_url(x, url);
  ef_xfer_set_max_body(x, 10);
  CHECK(ef_loop_start(l, x, err, sizeof err) == 0);
  wait_done(l, x);
  CHECK(strcmp(ef_xfer_code(x), "BODY_TOO_LARGE") == 0);
  CHECK(ef_xfer_error(x) && strstr(ef_xfer_error(x), "larger than 10") != NULL);
  ef_xfer_free(x);

  /* A total timeout on a request the server holds open: the status stream of a slow job. */
  static const char slow[] =
    "{\"prompt\":\"[slow:30]\",\"image_urls\":[\"https://example.invalid/a.png\"]}";
  snprintf(url, sizeof url, "%s/fal-ai/qwen-image-edit-plus", base);
  x = ef_xfer_new();
  ef_xfer_set_url(x, url);
  ef_xfer_add_header(x, "Authorization: Key test-key");
  ef_xfer_set_body(x, slow, sizeof slow - 1);
  CHECK(ef_loop_start(l, x, err, sizeof err) == 0);
  wait_done(l, x);
  char rid[64] = "";
  const char *p = ef_xfer_body(x)->data ? strstr(ef_xfer_body(x)->data, "\"request_id\":\"") : NULL;
  if (p)
    sscanf(p + strlen("\"request_id\":\""), "%63[^\"]", rid);
  CHECK(rid[0] != '\0');
  ef_xfer_free(x);
  snprintf(url, sizeof url, "%s/fal-ai/qwen-image-edit-plus/requests/%s/status/stream", base, rid);
  x = ef_xfer_new();
  ef_xfer_set_url(x, url);
  ef_xfer_add_header(x, "Authorization: Key test-key");
  ef_xfer_set_timeouts(x, 1000, 300);
  CHECK(ef_loop_start(l, x, err, sizeof err) == 0);
  wait_done(l, x);
  CHECK(strcmp(ef_xfer_code(x), "OPERATION_TIMEDOUT") == 0);
  CHECK(ef_xfer_status(x) == 200 && ef_xfer_size(x) > 0); /* the first event did arrive */
  ef_xfer_free(x);

  /* Nobody listening: a readable transport error with a stable code. */
  x = ef_xfer_new();
  ef_xfer_set_url(x, "http://127.0.0.1:9/");
  CHECK(ef_loop_start(l, x, err, sizeof err) == 0);
  wait_done(l, x);
  CHECK(strcmp(ef_xfer_code(x), "COULDNT_CONNECT") == 0);
  CHECK(ef_xfer_error(x) != NULL && ef_xfer_status(x) == 0);
  ef_xfer_free(x);

  /* Only http and https are ever spoken. */
  x = ef_xfer_new();
  ef_xfer_set_url(x, "file:///etc/passwd");
  CHECK(ef_loop_start(l, x, err, sizeof err) == 0);
  wait_done(l, x);
  CHECK(strcmp(ef_xfer_code(x), "UNSUPPORTED_PROTOCOL") == 0);
  CHECK(ef_xfer_body(x)->len == 0);
  ef_xfer_free(x);

  /* step() with nothing to do waits about as long as asked, never much longer. */
  double t0 = now();
  CHECK(ef_loop_step(l, 50, err, sizeof err) == 0);
  double dt = now() - t0;
  CHECK(dt >= 0.02 && dt < 2.0);

  /* Freeing the loop with a transfer still running detaches it; the transfer stays usable. */
  x = get(l, "/_sandbox/stats", NULL);
  ef_loop_free(l);
  CHECK(ef_xfer_get_state(x) == EF_XFER_DONE && strcmp(ef_xfer_code(x), "ABORTED") == 0);
  ef_xfer_free(x);
}

static void test_file_sink(void) {
  ef_loop *l = ef_loop_new();
  char dir[] = "/tmp/editflow-sink-XXXXXX", err[256], url[512], final[300];
  CHECK(mkdtemp(dir) != NULL);
  snprintf(url, sizeof url, "%s/_sandbox/stats", base);

  ef_xfer *x = ef_xfer_new();
  ef_xfer_set_url(x, url);
  CHECK(ef_xfer_to_file(x, dir, err, sizeof err) == 0);
  const char *tmp = ef_xfer_temp_path(x);
  CHECK(tmp != NULL && strstr(tmp, "/.editflow-") != NULL);
  CHECK(ef_loop_start(l, x, err, sizeof err) == 0);
  wait_done(l, x);
  CHECK(ef_xfer_status(x) == 200 && ef_xfer_size(x) > 0);
  CHECK(ef_xfer_body(x)->len == 0); /* went to the file, not to memory */
  size_t hn;
  const unsigned char *head = ef_xfer_head(x, &hn);
  CHECK(hn > 0 && head[0] == '{');
  snprintf(final, sizeof final, "%s/stats.json", dir);
  CHECK(ef_xfer_commit(x, final, err, sizeof err) == 0);
  CHECK(ef_xfer_temp_path(x) == NULL);
  struct stat st;
  CHECK(stat(final, &st) == 0 && (size_t)st.st_size == ef_xfer_size(x));
  CHECK((st.st_mode & 0044) != 0); /* ordinary permissions, not mkstemp's 0600 */
  ef_xfer_free(x);

  /* A failed download leaves nothing behind once freed. */
  x = ef_xfer_new();
  ef_xfer_set_url(x, url);
  ef_xfer_set_max_body(x, 5);
  CHECK(ef_xfer_to_file(x, dir, err, sizeof err) == 0);
  char *tmpcopy = strdup(ef_xfer_temp_path(x));
  CHECK(ef_loop_start(l, x, err, sizeof err) == 0);
  wait_done(l, x);
  CHECK(strcmp(ef_xfer_code(x), "BODY_TOO_LARGE") == 0);
  ef_xfer_free(x);
  CHECK(access(tmpcopy, F_OK) != 0);
  free(tmpcopy);

  CHECK(ef_xfer_to_file(x = ef_xfer_new(), "/nonexistent/dir", err, sizeof err) != 0);
  ef_xfer_free(x);
  ef_loop_free(l);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  CHECK(system(cmd) == 0);
}

/* ---- the host hook: ef_loop_fd, ef_loop_arm, ef_loop_timeout_ms ---- */

/* poll(2) on one descriptor for reading: 1 readable, 0 not within ms. */
static int fd_readable(int fd, int ms) {
  struct pollfd p = {fd, POLLIN, 0};
  int n;
  while ((n = poll(&p, 1, ms)) < 0 && errno == EINTR)
    ;
  return n > 0 && (p.revents & POLLIN) != 0;
}

/* Submits a job with this prompt and returns its status stream, started on l (or NULL). */
static ef_xfer *start_stream(ef_loop *l, const char *prompt, long total_ms) {
  char url[512], body[256], err[256], rid[64] = "";
  snprintf(url, sizeof url, "%s/fal-ai/qwen-image-edit-plus", base);
  snprintf(body, sizeof body, "{\"prompt\":\"%s\",\"image_urls\":[\"https://example.invalid/a.png\"]}",
           prompt);
  ef_xfer *x = ef_xfer_new();
  ef_xfer_set_url(x, url);
  ef_xfer_add_header(x, "Authorization: Key test-key");
  ef_xfer_set_body(x, body, strlen(body));
  if (ef_loop_start(l, x, err, sizeof err) != 0)
    fprintf(stderr, "start: %s\n", err);
  wait_done(l, x);
  const char *p = ef_xfer_body(x)->data ? strstr(ef_xfer_body(x)->data, "\"request_id\":\"") : NULL;
  if (p)
    sscanf(p + strlen("\"request_id\":\""), "%63[^\"]", rid);
  ef_xfer_free(x);
  if (rid[0] == '\0')
    return NULL;
  snprintf(url, sizeof url, "%s/fal-ai/qwen-image-edit-plus/requests/%s/status/stream", base, rid);
  x = ef_xfer_new();
  ef_xfer_set_url(x, url);
  ef_xfer_add_header(x, "Authorization: Key test-key");
  ef_xfer_set_timeouts(x, 5000, total_ms);
  if (ef_loop_start(l, x, err, sizeof err) != 0)
    fprintf(stderr, "start: %s\n", err);
  return x;
}

/*
** A host's loop, as luv or cqueues would run it: wait until the loop's descriptor is readable
** or its timeout passed (no descriptor: the timeout alone, capped so sockets are still
** serviced), then step without blocking. Runs for secs or until x is done; counts the turns
** and the turns where the descriptor was readable.
*/
static void host_loop(ef_loop *l, ef_xfer *x, double secs, int *turns, int *wakeups) {
  char err[256];
  int fd = ef_loop_fd(l);
  double end = now() + secs;
  *turns = *wakeups = 0;
  while (now() < end && (x == NULL || ef_xfer_get_state(x) != EF_XFER_DONE)) {
    long to = ef_loop_timeout_ms(l);
    long left = (long)((end - now()) * 1000) + 1;
    if (to < 0 || to > left)
      to = left;
    if (fd >= 0) {
      if (fd_readable(fd, (int)to))
        ++*wakeups;
    } else if (to > 0) {
      /* poll backend: the step itself waits on the sockets, bounded by the timeout */
      CHECK(ef_loop_step(l, (int)to, err, sizeof err) == 0);
    }
    CHECK(ef_loop_step(l, 0, err, sizeof err) == 0);
    while (ef_loop_pop_done(l) != NULL)
      ;
    while (ef_loop_pop_news(l) != NULL)
      ;
    ++*turns;
  }
}

static void test_hook(void) {
  char err[256];
  ef_loop *l = ef_loop_new();
  int fd = ef_loop_fd(l), turns, wakeups;
  int epoll = strcmp(ef_loop_backend(), "epoll") == 0;
  printf("poller: %s, loop fd %d\n", ef_loop_backend(), fd);
  CHECK(epoll ? fd >= 0 : fd == -1);
  CHECK(ef_loop_fd(l) == fd); /* one descriptor for the loop's life */

  /* Idle: nothing due, nothing readable. */
  CHECK(ef_loop_timeout_ms(l) == -1);
  if (fd >= 0)
    CHECK(!fd_readable(fd, 50));

  /* An armed wakeup: the timeout counts down to it, the descriptor fires at it, a step
  ** spends it and the descriptor goes quiet again. */
  ef_loop_arm(l, 120);
  long to = ef_loop_timeout_ms(l);
  CHECK(to > 60 && to <= 120);
  double t0 = now();
  if (fd >= 0) {
    CHECK(!fd_readable(fd, 0));
    CHECK(fd_readable(fd, 2000));
  } else {
    CHECK(ef_loop_step(l, 2000, err, sizeof err) == 0); /* the step returns at the wakeup */
  }
  double dt = now() - t0;
  CHECK(dt >= 0.09 && dt < 1.0);
  if (fd >= 0)
    CHECK(ef_loop_timeout_ms(l) == 0); /* due until a step spends it */
  CHECK(ef_loop_step(l, 0, err, sizeof err) == 0);
  CHECK(ef_loop_timeout_ms(l) == -1);
  if (fd >= 0)
    CHECK(!fd_readable(fd, 30)); /* drained: no busy loop after a fired wakeup */

  /* Cleared, and replaced: only the last call counts. */
  ef_loop_arm(l, 40);
  ef_loop_arm(l, -1);
  CHECK(ef_loop_timeout_ms(l) == -1);
  if (fd >= 0)
    CHECK(!fd_readable(fd, 150));
  ef_loop_arm(l, 5000);
  ef_loop_arm(l, 30);
  CHECK(ef_loop_timeout_ms(l) <= 30);
  if (fd >= 0)
    CHECK(fd_readable(fd, 1000));
  CHECK(ef_loop_step(l, 0, err, sizeof err) == 0);

  /* A started transfer is due at once (libcurl wants to be kicked). */
  ef_xfer *x = start_stream(l, "[slow:3]", 0);
  CHECK(x != NULL);
  if (x == NULL) {
    ef_loop_free(l);
    return;
  }
  CHECK(ef_loop_timeout_ms(l) == 0);
  if (fd >= 0)
    CHECK(fd_readable(fd, 0));

  /* One slow transfer in flight, driven only by the descriptor and the timeout: the stream
  ** makes progress (its first event arrives), and over about a second of waiting on a slow
  ** server the host wakes a handful of times, not in a busy loop. */
  host_loop(l, x, 1.2, &turns, &wakeups);
  printf("hook: 1.2 s with a slow stream in flight: %d turns, %d readable wakeups\n", turns,
         wakeups);
  CHECK(ef_xfer_get_state(x) == EF_XFER_RUNNING && ef_xfer_size(x) > 0);
  CHECK(turns < 30);
  if (fd >= 0)
    CHECK(wakeups >= 1 && wakeups <= turns);
  ef_xfer_free(x);

  /* libcurl's own timer reaches the descriptor: a total timeout ends the stream although the
  ** host only ever waits on the descriptor and the timeout. */
  x = start_stream(l, "[slow:5]", 700);
  CHECK(x != NULL);
  if (x) {
    t0 = now();
    host_loop(l, x, 5.0, &turns, &wakeups);
    dt = now() - t0;
    printf("hook: total timeout of 0.7 s reached after %.2f s, %d turns\n", dt, turns);
    CHECK(ef_xfer_get_state(x) == EF_XFER_DONE);
    CHECK(strcmp(ef_xfer_code(x), "OPERATION_TIMEDOUT") == 0);
    CHECK(dt > 0.5 && dt < 2.0 && turns < 30);
    ef_xfer_free(x);
  }
  CHECK(ef_loop_running(l) == 0);
  if (fd >= 0) {
    CHECK(ef_loop_step(l, 0, err, sizeof err) == 0);
    CHECK(!fd_readable(fd, 100)); /* connections may stay cached; quiet ones wake nobody */
  }
  ef_loop_free(l);
}

/* ---- a server whose keep-alive connections die before answering their second request ---- */

typedef struct dying_server {
  int lfd;              /* listening socket on 127.0.0.1 */
  int stop[2];          /* a byte on stop[1] ends the thread */
  int port;
  pthread_t thread;
  pthread_t conns[16];  /* one thread per connection, so an idle one blocks no other */
  int nconns;
  pthread_mutex_t mu;
  char seen[4096];      /* every request body received, each followed by '|' */
} dying_server;

/* Waits (bounded by the stop pipe and a 10 s deadline) until fd is readable; 1 if it is. */
static int wait_readable(dying_server *s, int fd) {
  struct pollfd p[2] = {{fd, POLLIN, 0}, {s->stop[0], POLLIN, 0}};
  return poll(p, 2, 10000) > 0 && p[1].revents == 0 && p[0].revents != 0;
}

/* Reads one whole request (headers and Content-Length body); 1, or 0 at EOF, error or stop. */
static int read_request(dying_server *s, int fd, char *body, size_t cap) {
  char buf[8192];
  size_t n = 0;
  char *end = NULL;
  long clen = 0;
  for (;;) {
    if (end && n >= (size_t)(end + 4 - buf) + (size_t)clen)
      break;
    if (n == sizeof buf - 1 || !wait_readable(s, fd))
      return 0;
    ssize_t r = recv(fd, buf + n, sizeof buf - 1 - n, 0);
    if (r <= 0)
      return 0;
    n += (size_t)r;
    buf[n] = '\0';
    if (end == NULL && (end = strstr(buf, "\r\n\r\n")) != NULL) {
      for (char *h = strstr(buf, "\r\n"); h && h < end; h = strstr(h + 2, "\r\n"))
        if (strncasecmp(h + 2, "Content-Length:", 15) == 0)
          clen = strtol(h + 17, NULL, 10);
    }
  }
  size_t bn = (size_t)clen < cap - 1 ? (size_t)clen : cap - 1;
  memcpy(body, end + 4, bn);
  body[bn] = '\0';
  return 1;
}

/* First request on a connection: answered, kept alive. Second: read whole, then hung up. */
static void serve_connection(dying_server *s, int fd) {
  static const char ok[] =
    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok";
  char body[256];
  for (int nth = 1; nth <= 2 && read_request(s, fd, body, sizeof body); nth++) {
    pthread_mutex_lock(&s->mu);
    strncat(s->seen, body, sizeof s->seen - strlen(s->seen) - 2);
    strcat(s->seen, "|");
    pthread_mutex_unlock(&s->mu);
    if (nth == 1 && send(fd, ok, sizeof ok - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof ok - 1))
      break;
  }
  close(fd);
}

typedef struct conn_arg {
  dying_server *s;
  int fd;
} conn_arg;

static void *conn_main(void *ud) {
  conn_arg *c = ud;
  serve_connection(c->s, c->fd);
  free(c);
  return NULL;
}

static void *dying_server_main(void *ud) {
  dying_server *s = ud;
  for (;;) {
    struct pollfd p[2] = {{s->lfd, POLLIN, 0}, {s->stop[0], POLLIN, 0}};
    if (poll(p, 2, 1000) < 0 && errno != EINTR)
      break;
    if (p[1].revents)
      break;
    if (p[0].revents) {
      int fd = accept(s->lfd, NULL, NULL);
      conn_arg *c = fd >= 0 && s->nconns < 16 ? malloc(sizeof *c) : NULL;
      if (c) {
        c->s = s;
        c->fd = fd;
        if (pthread_create(&s->conns[s->nconns], NULL, conn_main, c) == 0)
          s->nconns++;
        else
          free(c), c = NULL;
      }
      if (fd >= 0 && c == NULL)
        close(fd);
    }
  }
  for (int i = 0; i < s->nconns; i++) /* they end at once: the stop pipe is readable */
    pthread_join(s->conns[i], NULL);
  return NULL;
}

static int dying_server_start(dying_server *s) {
  struct sockaddr_in a;
  socklen_t alen = sizeof a;
  memset(s, 0, sizeof *s);
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s->lfd < 0 || bind(s->lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(s->lfd, 8) != 0 ||
      getsockname(s->lfd, (struct sockaddr *)&a, &alen) != 0 || pipe(s->stop) != 0)
    return -1;
  s->port = ntohs(a.sin_port);
  pthread_mutex_init(&s->mu, NULL);
  return pthread_create(&s->thread, NULL, dying_server_main, s) == 0 ? 0 : -1;
}

static void dying_server_stop(dying_server *s) {
  (void)!write(s->stop[1], "x", 1);
  pthread_join(s->thread, NULL);
  close(s->lfd);
  close(s->stop[0]);
  close(s->stop[1]);
  pthread_mutex_destroy(&s->mu);
}

/* How many times the server received this body. */
static int copies(dying_server *s, const char *body) {
  char key[64];
  int n = 0;
  snprintf(key, sizeof key, "|%s|", body);
  pthread_mutex_lock(&s->mu);
  char all[sizeof s->seen + 1] = "|";
  strcat(all, s->seen);
  pthread_mutex_unlock(&s->mu);
  for (const char *p = all; (p = strstr(p, key)) != NULL; p++)
    n++;
  return n;
}

static ef_xfer *post(ef_loop *l, int port, const char *body, int once) {
  char url[64], err[256];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/submit", port);
  ef_xfer *x = ef_xfer_new();
  ef_xfer_set_url(x, url);
  ef_xfer_set_method(x, "POST");
  ef_xfer_add_header(x, "Content-Type: text/plain");
  ef_xfer_set_body(x, body, strlen(body));
  ef_xfer_set_timeouts(x, 5000, 10000);
  ef_xfer_set_once(x, once);
  if (ef_loop_start(l, x, err, sizeof err) != 0)
    fprintf(stderr, "start: %s\n", err);
  wait_done(l, x);
  return x;
}

/*
** libcurl re-sends a request by itself when a reused connection closes before any answer
** byte (Curl_retry_request). With once, the body cannot be rewound, so the second submit
** fails RESEND_REFUSED and the server saw it exactly once; without, it saw it twice.
*/
static void test_once(void) {
  dying_server s;
  if (dying_server_start(&s) != 0) {
    CHECK(!"cannot start the loopback server");
    return;
  }
  ef_loop *l = ef_loop_new();
  ef_xfer *a = post(l, s.port, "first", 1);
  CHECK(ef_xfer_status(a) == 200 && ef_xfer_new_connections(a) == 1);
  CHECK(ef_xfer_uploaded(a) == 5);
  ef_xfer *b = post(l, s.port, "second", 1);
  CHECK(strcmp(ef_xfer_code(b), "RESEND_REFUSED") == 0);
  CHECK(ef_xfer_error(b) && strstr(ef_xfer_error(b), "not sent again") != NULL);
  CHECK(ef_xfer_status(b) == 0 && ef_xfer_uploaded(b) == 6);
  CHECK(copies(&s, "first") == 1 && copies(&s, "second") == 1);
  ef_xfer_free(a);
  ef_xfer_free(b);
  ef_loop_free(l);

  /* The hazard itself, documented: without once the same death makes two copies. */
  l = ef_loop_new();
  a = post(l, s.port, "third", 0);
  b = post(l, s.port, "fourth", 0);
  CHECK(ef_xfer_status(a) == 200 && ef_xfer_status(b) == 200);
  CHECK(copies(&s, "fourth") == 2);
  CHECK(ef_xfer_uploaded(b) == 6);
  ef_xfer_free(a);
  ef_xfer_free(b);

  /* once without a body: it cannot be refused a rewind, so it never rides a reused
  ** connection (the open one from "fourth" is left alone). */
  a = post(l, s.port, "", 1);
  CHECK(ef_xfer_status(a) == 200 && ef_xfer_new_connections(a) == 1);
  CHECK(ef_xfer_uploaded(a) == 0 && copies(&s, "") == 1);
  ef_xfer_free(a);
  ef_loop_free(l);
  dying_server_stop(&s);
}

/* ---- journal appends, the folder lock, bounded input reads ---- */

static long file_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/*
** A journal's append that fails half way (EFBIG past RLIMIT_FSIZE, in a child so the limit
** stays there) leaves the file ending exactly where the previous record ended.
*/
static void test_append(const char *dir) {
  char path[256], err[256];
  size_t end = 0;
  snprintf(path, sizeof path, "%s/journal.jsonl", dir);
  int fd = ef_open_log(path, err, sizeof err);
  CHECK(fd >= 0);
  CHECK(ef_append_fd(fd, path, "{\"a\":1}\n", 8, &end, err, sizeof err) == 0 && end == 8);
  CHECK(ef_append_fd(fd, path, "{\"b\":2}\n", 8, &end, err, sizeof err) == 0 && end == 16);
  CHECK(file_size(path) == 16);
  pid_t pid = fork();
  if (pid == 0) {
    struct rlimit rl = {20, 20}; /* room for 4 of the next record's 10 bytes */
    char big[] = "{\"c\":333}\n";
    signal(SIGXFSZ, SIG_IGN);
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
      _exit(3);
    int rc = ef_append_fd(fd, path, big, sizeof big - 1, NULL, err, sizeof err);
    _exit(rc == -1 && strstr(err, "cannot write") && strstr(err, strerror(EFBIG)) ? 0 : 4);
  }
  int st = -1;
  CHECK(pid > 0 && waitpid(pid, &st, 0) == pid);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  CHECK(file_size(path) == 16);
  CHECK(ef_append_fd(fd, path, "{\"d\":4}\n", 8, &end, err, sizeof err) == 0 && end == 24);
  CHECK(file_size(path) == 24);

  CHECK(ef_cut_fd(fd, 16) == 0 && file_size(path) == 16);
  CHECK(ef_cut_fd(fd, 17) != 0 && file_size(path) == 16); /* never grows */
  close(fd);
  snprintf(path, sizeof path, "%s/missing/journal.jsonl", dir);
  CHECK(ef_open_log(path, err, sizeof err) == -1);
  CHECK(strstr(err, "cannot write") != NULL);
}

/* A child process trying the lock: exit 0 when it got it, 10 when refused naming want_pid. */
static int lock_in_child(const char *path, long want_pid) {
  pid_t pid = fork();
  if (pid == 0) {
    char err[256], needle[64];
    long holder = -1;
    int fd = ef_lock(path, err, sizeof err, &holder);
    snprintf(needle, sizeof needle, "held by process %ld", want_pid);
    if (fd >= 0)
      _exit(0);
    _exit(fd == EF_LOCKED && holder == want_pid && strstr(err, needle) ? 10 : 20);
  }
  int st = -1;
  if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st))
    return -1;
  return WEXITSTATUS(st);
}

static void test_lock(const char *dir) {
  char path[256], err[256];
  long holder = -1;
  snprintf(path, sizeof path, "%s/.lock", dir);
  int fd = ef_lock(path, err, sizeof err, &holder);
  CHECK(fd >= 0 && holder == 0);
  CHECK(file_size(path) > 1); /* our pid and a newline */
  CHECK(lock_in_child(path, (long)getpid()) == 10);
  ef_unlock(fd);
  CHECK(file_size(path) == 0);
  CHECK(lock_in_child(path, 0) == 0);
  fd = ef_lock(path, err, sizeof err, &holder); /* the child's death released it */
  CHECK(fd >= 0);
  ef_unlock(fd);
  snprintf(path, sizeof path, "%s/missing/.lock", dir);
  CHECK(ef_lock(path, err, sizeof err, &holder) == -1 && strstr(err, "cannot lock") != NULL);
}

static void test_read_file(const char *dir) {
  char path[256], err[256];
  ef_buf b = {0};
  CHECK(strcmp(ef_read_file("/dev/zero", 100, &b, err, sizeof err), "NOT_REGULAR") == 0);
  CHECK(strcmp(err, "'/dev/zero' is a character device, not a regular file") == 0);
  CHECK(strcmp(ef_read_file(dir, 100, &b, err, sizeof err), "NOT_REGULAR") == 0);
  CHECK(strstr(err, "is a directory, not a regular file") != NULL);

  snprintf(path, sizeof path, "%s/fifo", dir);
  CHECK(mkfifo(path, 0600) == 0);
  double t0 = now(); /* no writer: opening it for reading would wait forever */
  CHECK(strcmp(ef_read_file(path, 100, &b, err, sizeof err), "NOT_REGULAR") == 0);
  CHECK(now() - t0 < 1.0 && strstr(err, "is a FIFO") != NULL);

  snprintf(path, sizeof path, "%s/sock", dir);
  int sfd = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un un = {0};
  un.sun_family = AF_UNIX;
  CHECK(strlen(path) < sizeof un.sun_path);
  memcpy(un.sun_path, path, strlen(path) + 1 < sizeof un.sun_path ? strlen(path) + 1 : 0);
  CHECK(sfd >= 0 && bind(sfd, (struct sockaddr *)&un, sizeof un) == 0);
  CHECK(strcmp(ef_read_file(path, 100, &b, err, sizeof err), "NOT_REGULAR") == 0);
  CHECK(strstr(err, "is a socket") != NULL);
  close(sfd);

  snprintf(path, sizeof path, "%s/small.txt", dir);
  CHECK(ef_write_atomic(path, "hello\0world", 11, err, sizeof err) == 0);
  CHECK(ef_read_file(path, 11, &b, err, sizeof err) == NULL);
  CHECK(b.len == 11 && memcmp(b.data, "hello\0world", 11) == 0);
  CHECK(strcmp(ef_read_file(path, 10, &b, err, sizeof err), "TOO_LARGE") == 0);
  CHECK(strstr(err, "is 11 bytes, over the limit of 10 bytes") != NULL && b.data == NULL);
  snprintf(path, sizeof path, "%s/empty", dir);
  CHECK(ef_write_atomic(path, "", 0, err, sizeof err) == 0);
  CHECK(ef_read_file(path, 0, &b, err, sizeof err) == NULL && b.len == 0);
  snprintf(path, sizeof path, "%s/absent", dir);
  CHECK(strcmp(ef_read_file(path, 10, &b, err, sizeof err), "READ_ERROR") == 0);
  CHECK(strstr(err, strerror(ENOENT)) != NULL);
  ef_buf_free(&b);
}

static void test_local_files(void) {
  char dir[] = "/tmp/editflow-local-XXXXXX", cmd[300];
  CHECK(mkdtemp(dir) != NULL);
  test_append(dir);
  test_lock(dir);
  test_read_file(dir);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  CHECK(system(cmd) == 0);
}

/* Steps the loop until d is popped (bounded: 20 s); other popped ops are counted in *others. */
static void wait_op(ef_loop *l, ef_dop *d, int *others) {
  char err[256];
  double deadline = now() + 20;
  while (!ef_dop_done(d) && now() < deadline) {
    CHECK(ef_loop_step(l, 100, err, sizeof err) == 0);
    ef_dop *p;
    while ((p = ef_loop_pop_disk(l)) != NULL)
      if (p != d && others)
        (*others)++;
  }
}

static size_t disk_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (size_t)st.st_size : (size_t)-1;
}

/* Entries in dir other than . and .. whose name starts with a dot (temporary files). */
static int hidden_in(const char *dir) {
  char cmd[400];
  snprintf(cmd, sizeof cmd, "test -z \"$(ls -A '%s' | grep '^\\.')\"", dir);
  return system(cmd) != 0;
}

/* Disk work off the loop's thread (ef_disk.c): commits, writes and syncs run on workers and
** are reported after a step; an op outlives its owner and the loop finishes what it was given. */
static void test_disk(void) {
  ef_loop *l = ef_loop_new();
  char dir[] = "/tmp/editflow-disk-XXXXXX", err[256], url[512], a[300], b[300], c[300];
  CHECK(mkdtemp(dir) != NULL);
  snprintf(url, sizeof url, "%s/_sandbox/stats", base);
  snprintf(a, sizeof a, "%s/a.json", dir);
  snprintf(b, sizeof b, "%s/b.json", dir);
  snprintf(c, sizeof c, "%s/c.bin", dir);

  /* A download committed by a worker: fsync, then the name (never replacing). */
  ef_xfer *x = ef_xfer_new();
  ef_xfer_set_url(x, url);
  CHECK(ef_xfer_to_file(x, dir, err, sizeof err) == 0);
  CHECK(ef_loop_start(l, x, err, sizeof err) == 0);
  wait_done(l, x);
  CHECK(ef_xfer_status(x) == 200);
  CHECK(ef_write_atomic(a, "taken", 5, err, sizeof err) == 0);
  ef_dop *d = ef_xfer_commit_op(x, a, 0, err, sizeof err);
  CHECK(d != NULL && ef_xfer_temp_path(x) == NULL); /* the op has the file now */
  CHECK(ef_loop_disk(l, d, err, sizeof err) == 0);
  CHECK(ef_loop_disk_pending(l) == 1);
  if (ef_loop_fd(l) >= 0) { /* the loop's descriptor wakes a host when the op has finished */
    struct pollfd pfd = {ef_loop_fd(l), POLLIN, 0};
    CHECK(poll(&pfd, 1, 10000) == 1);
  }
  wait_op(l, d, NULL);
  CHECK(ef_dop_done(d) && ef_loop_disk_pending(l) == 0);
  CHECK(ef_dop_result(d, err, sizeof err) == 1 && strstr(err, "exists") != NULL);
  CHECK(disk_size(a) == 5); /* not replaced */
  CHECK(ef_xfer_adopt_temp(x, d) == 0 && ef_xfer_temp_path(x) != NULL); /* back, for another name */
  CHECK(ef_xfer_adopt_temp(x, d) != 0);                                /* only once */
  ef_dop_free(d);
  d = ef_xfer_commit_op(x, b, 0, err, sizeof err);
  CHECK(d != NULL && ef_loop_disk(l, d, err, sizeof err) == 0);
  CHECK(ef_loop_disk(l, d, err, sizeof err) != 0); /* only once */
  wait_op(l, d, NULL);
  CHECK(ef_dop_result(d, err, sizeof err) == 0);
  CHECK(disk_size(b) == ef_xfer_size(x) && ef_xfer_size(x) > 0);
  struct stat st;
  CHECK(stat(b, &st) == 0 && (st.st_mode & 0044) != 0);
  ef_dop_free(d);
  ef_xfer_free(x);

  /* A folder's fsync; one of a folder that is not there names it. */
  d = ef_dop_sync_dir(dir);
  CHECK(ef_loop_disk(l, d, err, sizeof err) == 0);
  wait_op(l, d, NULL);
  CHECK(ef_dop_result(d, err, sizeof err) == 0);
  ef_dop_free(d);
  char missing[300];
  snprintf(missing, sizeof missing, "%s/missing", dir);
  d = ef_dop_sync_dir(missing);
  CHECK(ef_loop_disk(l, d, err, sizeof err) == 0);
  wait_op(l, d, NULL);
  CHECK(ef_dop_result(d, err, sizeof err) == -1 && strstr(err, "missing") != NULL);
  ef_dop_free(d);

  /* Many writes at once, and an fdatasync of an open file; the caller's descriptor stays
  ** its own (the op synced a duplicate). */
  ef_dop *ops[40];
  char name[300];
  for (int i = 0; i < 40; i++) {
    snprintf(name, sizeof name, "%s/w%d.bin", dir, i);
    ops[i] = ef_dop_write(name, "0123456789", (size_t)(i % 10) + 1, 1);
    CHECK(ops[i] != NULL && ef_loop_disk(l, ops[i], err, sizeof err) == 0);
  }
  int fd = open(c, O_WRONLY | O_CREAT | O_APPEND, 0644);
  size_t end = 0;
  CHECK(fd >= 0 && ef_append_fd(fd, c, "record\n", 7, &end, err, sizeof err) == 0 && end == 7);
  d = ef_dop_sync(fd, 1);
  CHECK(d != NULL && ef_loop_disk(l, d, err, sizeof err) == 0);
  wait_op(l, d, NULL);
  CHECK(ef_dop_result(d, err, sizeof err) == 0);
  ef_dop_free(d);
  CHECK(write(fd, "more\n", 5) == 5 && disk_size(c) == 12);
  close(fd);
  for (int i = 0; i < 40; i++) {
    wait_op(l, ops[i], NULL);
    CHECK(ef_dop_result(ops[i], err, sizeof err) == 0);
    snprintf(name, sizeof name, "%s/w%d.bin", dir, i);
    CHECK(disk_size(name) == (size_t)(i % 10) + 1);
    ef_dop_free(ops[i]);
  }
  /* "new" never replaces, and leaves no temporary file behind */
  d = ef_dop_write(a, "other", 5, 0);
  CHECK(ef_loop_disk(l, d, err, sizeof err) == 0);
  wait_op(l, d, NULL);
  CHECK(ef_dop_result(d, err, sizeof err) == 1 && disk_size(a) == 5);
  ef_dop_free(d);
  CHECK(!hidden_in(dir));

  /* A blocking wait, without the loop: the result is readable; the loop still reports it. */
  d = ef_dop_write(c, "blocking", 8, 1);
  CHECK(ef_loop_disk(l, d, err, sizeof err) == 0);
  ef_dop_wait(d);
  CHECK(!ef_dop_done(d) && ef_dop_result(d, err, sizeof err) == 0 && disk_size(c) == 8);
  wait_op(l, d, NULL);
  CHECK(ef_dop_done(d) && ef_loop_disk_pending(l) == 0);
  ef_dop_free(d);

  /* Freed while running: the op still finishes, is collected, and nothing leaks (valgrind). */
  d = ef_dop_write(c, "orphan", 6, 1);
  CHECK(ef_loop_disk(l, d, err, sizeof err) == 0);
  ef_dop_free(d);
  double deadline = now() + 20;
  while (ef_loop_disk_pending(l) > 0 && now() < deadline) {
    CHECK(ef_loop_step(l, 100, err, sizeof err) == 0);
    CHECK(ef_loop_pop_disk(l) == NULL); /* an orphan is never reported */
  }
  CHECK(ef_loop_disk_pending(l) == 0 && disk_size(c) == 6);

  /* Freeing the loop finishes what it was given: the write lands, the op reads done. */
  d = ef_dop_write(c, "at the end", 10, 1);
  ef_dop *orphan = ef_dop_write(a, "x", 1, 1);
  CHECK(ef_loop_disk(l, d, err, sizeof err) == 0 && ef_loop_disk(l, orphan, err, sizeof err) == 0);
  ef_dop_free(orphan);
  ef_loop_free(l);
  CHECK(ef_dop_done(d) && ef_dop_result(d, err, sizeof err) == 0 && disk_size(c) == 10);
  CHECK(disk_size(a) == 1);
  ef_dop_free(d);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  CHECK(system(cmd) == 0);
}

/* The fingerprint map: every key set is found with its last value, keys never set are not,
** across many growths, the fingerprint 0 included; and it costs 12 bytes a slot. */
static void test_fpmap(void) {
  ef_fpmap *m = ef_fpmap_new();
  CHECK(m != NULL);
  uint32_t v = 99;
  CHECK(ef_fpmap_get(m, 42, &v) == 0 && v == 99);
  CHECK(ef_fpmap_get(m, 0, &v) == 0);
  CHECK(ef_fpmap_set(m, 0, 7) == 0 && ef_fpmap_get(m, 0, &v) == 1 && v == 7);
  /* keys with structure (multiples of 2^32 and of 2^50: equal low bits) and random-looking ones */
  const uint32_t n = 200000;
  int ok = 1;
  for (uint32_t i = 1; i <= n; i++) {
    ok &= ef_fpmap_set(m, (uint64_t)i << 32, i) == 0;
    ok &= ef_fpmap_set(m, (uint64_t)i * 0x9E3779B97F4A7C15ULL, i % 3) == 0;
  }
  CHECK(ok);
  /* keys that differ only in their top 16 bits must not share one run of slots: 60,000 of
  ** them cost about a million probes, not 1.8 billion (so timed loosely: ms against seconds) */
  ef_fpmap *hi = ef_fpmap_new();
  double t0 = now();
  for (uint32_t i = 1; i <= 60000; i++)
    ok &= ef_fpmap_set(hi, (uint64_t)i << 48, i) == 0 && ef_fpmap_get(hi, (uint64_t)i << 48, &v) == 1 && v == i;
  CHECK(ok && ef_fpmap_count(hi) == 60000);
  CHECK(now() - t0 < 2.0);
  ef_fpmap_free(hi);
  CHECK(ef_fpmap_count(m) == 2 * (size_t)n + 1);
  for (uint32_t i = 1; i <= n; i++) {
    ok &= ef_fpmap_get(m, (uint64_t)i << 32, &v) == 1 && v == i;
    ok &= ef_fpmap_get(m, (uint64_t)i * 0x9E3779B97F4A7C15ULL, &v) == 1 && v == i % 3;
    ok &= ef_fpmap_get(m, ((uint64_t)i << 32) + 1, NULL) == 0;
  }
  CHECK(ok);
  CHECK(ef_fpmap_set(m, (uint64_t)5 << 32, 1234) == 0);
  CHECK(ef_fpmap_get(m, (uint64_t)5 << 32, &v) == 1 && v == 1234);
  CHECK(ef_fpmap_count(m) == 2 * (size_t)n + 1);
  CHECK(ef_fpmap_get(m, 0, &v) == 1 && v == 7);
  /* 400,001 entries at most 4/5 full: 2^19 slots of 12 bytes */
  CHECK(ef_fpmap_bytes(m) <= ((size_t)1 << 19) * 12 + 64);
  ef_fpmap_free(m);
}

int main(void) {
  base = getenv("EDITFLOW_SANDBOX_URL");
  if (base == NULL) {
    fprintf(stderr, "EDITFLOW_SANDBOX_URL is not set (run through tests/run_with_sandbox.py)\n");
    return 2;
  }
  CHECK(ef_global_init() == 0);
  test_codec();
  test_fpmap();
  test_crypto();
  test_sse();
  test_files();
  test_local_files();
  test_once();
  test_requests();
  test_file_sink();
  test_disk();
  test_hook();
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
