/*
** test_engine.c — the engine's own tests, in C, against the sandbox on loopback.
** Run through tests/run_with_sandbox.py, which starts the sandbox, exports its URL as
** EDITFLOW_SANDBOX_URL and stops it by PID afterwards. Pure-function cases (base64, sniffing,
** names, files) need no server. Prints "N passed, N failed"; exits non-zero on any failure.
*/
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

int main(void) {
  base = getenv("EDITFLOW_SANDBOX_URL");
  if (base == NULL) {
    fprintf(stderr, "EDITFLOW_SANDBOX_URL is not set (run through tests/run_with_sandbox.py)\n");
    return 2;
  }
  CHECK(ef_global_init() == 0);
  test_codec();
  test_sse();
  test_files();
  test_requests();
  test_file_sink();
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
