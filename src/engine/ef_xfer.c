/*
** ef_xfer.c — one HTTP request and its answer: setup, libcurl callbacks, outcome, file sink.
**
** Callbacks only fill C buffers or write to the sink's descriptor; a fault there (body over its
** limit, disk full) is recorded in the transfer and the callback returns libcurl's abort value,
** so the reason survives libcurl's generic CURLE_WRITE_ERROR. The easy handle exists only while
** the transfer runs; the request fields stay owned by the transfer until it is freed.
**
** A request marked "once" is never sent twice by libcurl itself: its body goes through a read
** callback whose seek callback refuses to rewind, so libcurl's silent re-send on a reused
** connection that died before answering (Curl_retry_request) fails with CURLE_SEND_FAIL_REWIND
** instead; whether to send it again is then the caller's decision (RESEND_REFUSED).
*/
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include "ef_internal.h"

enum { SINK_OK, SINK_TOO_LARGE, SINK_NOMEM, SINK_IO };

static void seterr(char *err, size_t n, const char *what, const char *detail) {
  if (err && n)
    snprintf(err, n, "%s%s%s", what, detail ? ": " : "", detail ? detail : "");
}

ef_xfer *ef_xfer_new(void) {
  ef_xfer *x = calloc(1, sizeof *x);
  if (x == NULL)
    return NULL;
  x->state = EF_XFER_NEW;
  x->fd = -1;
  x->code = "OK";
  x->connect_ms = 30000;
  return x;
}

void ef_xfer_free(ef_xfer *x) {
  if (x == NULL)
    return;
  if (x->loop)
    ef_loop_abort(x->loop, x);
  ef_xfer_discard(x);
  free(x->url);
  free(x->method);
  free(x->body);
  curl_slist_free_all(x->headers);
  ef_buf_free(&x->resp);
  ef_buf_free(&x->hdrs);
  ef_buf_free(&x->events);
  ef_sse_free(&x->parser);
  free(x->errmsg);
  free(x);
}

/* ---- setup ---- */

static int replace(char **slot, const char *s) {
  char *d = ef_strdup(s);
  if (d == NULL)
    return -1;
  free(*slot);
  *slot = d;
  return 0;
}

int ef_xfer_set_url(ef_xfer *x, const char *url) {
  return x->state == EF_XFER_NEW ? replace(&x->url, url) : -1;
}

int ef_xfer_set_method(ef_xfer *x, const char *method) {
  static const char *const ok[] = {"GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", NULL};
  for (int i = 0; ok[i]; i++)
    if (strcmp(method, ok[i]) == 0)
      return x->state == EF_XFER_NEW ? replace(&x->method, method) : -1;
  return -1;
}

int ef_xfer_add_header(ef_xfer *x, const char *line) {
  if (x->state != EF_XFER_NEW || strpbrk(line, "\r\n"))
    return -1; /* a CR or LF would let a value smuggle in another header */
  struct curl_slist *l = curl_slist_append(x->headers, line);
  if (l == NULL)
    return -1;
  x->headers = l;
  return 0;
}

int ef_xfer_set_body(ef_xfer *x, const char *data, size_t len) {
  if (x->state != EF_XFER_NEW)
    return -1;
  char *d = malloc(len ? len : 1);
  if (d == NULL)
    return -1;
  if (len)
    memcpy(d, data, len);
  free(x->body);
  x->body = d;
  x->body_len = len;
  x->has_body = 1;
  return 0;
}

void ef_xfer_set_timeouts(ef_xfer *x, long connect_ms, long total_ms) {
  x->connect_ms = connect_ms;
  x->total_ms = total_ms;
}

void ef_xfer_set_low_speed(ef_xfer *x, long bytes_per_s, long seconds) {
  x->low_bytes = bytes_per_s;
  x->low_secs = seconds;
}

void ef_xfer_set_max_body(ef_xfer *x, size_t max) { x->max_body = max; }

void ef_xfer_set_sse(ef_xfer *x, size_t max_event) {
  if (x->state != EF_XFER_NEW)
    return;
  ef_sse_free(&x->parser);
  ef_sse_init(&x->parser, max_event);
  x->sse = 1;
}

const ef_buf *ef_xfer_events(const ef_xfer *x) { return &x->events; }
void ef_xfer_clear_events(ef_xfer *x) { ef_buf_reset(&x->events); }
void ef_xfer_set_follow(ef_xfer *x, int follow) { x->follow = follow; }

void ef_xfer_set_once(ef_xfer *x, int once) {
  if (x->state == EF_XFER_NEW)
    x->once = once != 0;
}

int ef_xfer_to_file(ef_xfer *x, const char *dir, char *err, size_t errlen) {
  if (x->state != EF_XFER_NEW || x->fd >= 0) {
    seterr(err, errlen, "transfer already has a file or has started", NULL);
    return -1;
  }
  size_t n = strlen(dir);
  char *tmpl = malloc(n + sizeof "/.editflow-XXXXXX.part");
  if (tmpl == NULL) {
    seterr(err, errlen, "out of memory", NULL);
    return -1;
  }
  snprintf(tmpl, n + sizeof "/.editflow-XXXXXX.part", "%s/.editflow-XXXXXX.part", dir);
  int fd = ef_mktemp(tmpl, 5);
  if (fd < 0) {
    seterr(err, errlen, dir, strerror(errno));
    free(tmpl);
    return -1;
  }
  x->fd = fd;
  x->temp_path = tmpl;
  return 0;
}

/* The temporary file a tempfile op made on a disk worker, as ef_xfer_to_file would have. */
int ef_xfer_take_temp(ef_xfer *x, ef_dop *d, char *err, size_t errlen) {
  if (x->state != EF_XFER_NEW || x->fd >= 0) {
    seterr(err, errlen, "transfer already has a file or has started", NULL);
    return -1;
  }
  if (ef_dop_take_file(d, &x->fd, &x->temp_path) != 0) {
    seterr(err, errlen, "the disk operation holds no temporary file (not a tempfile, not "
                        "finished, failed, or taken already)", NULL);
    return -1;
  }
  return 0;
}

/* ---- callbacks: fill buffers, never call out ---- */

static void keep_head(ef_xfer *x, const char *p, size_t n) {
  if (x->head_len < EF_HEAD_BYTES) {
    size_t k = EF_HEAD_BYTES - x->head_len;
    if (k > n)
      k = n;
    memcpy(x->head + x->head_len, p, k);
    x->head_len += k;
  }
}

/* One complete event: queued for the reader, bounded so an unread backlog cannot grow forever. */
static int push_event(void *ud, const char *data, size_t len) {
  ef_xfer *x = ud;
  unsigned char hdr[4] = {(unsigned char)len, (unsigned char)(len >> 8), (unsigned char)(len >> 16),
                          (unsigned char)(len >> 24)};
  if (x->events.len + len + 4 > 16 * x->parser.max)
    return -1;
  if (ef_buf_append(&x->events, hdr, 4) != 0 || ef_buf_append(&x->events, data, len) != 0)
    return -1;
  if (!x->news && x->loop)
    ef_loop_note_news(x->loop, x);
  return 0;
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud) {
  ef_xfer *x = ud;
  size_t n = size * nmemb;
  if (x->sse && x->status >= 200 && x->status <= 299) {
    /* An event stream is unbounded in total; what is bounded is one event and the backlog. */
    keep_head(x, p, n);
    x->received += n;
    if (ef_sse_feed(&x->parser, p, n, push_event, x) != 0) {
      x->sink_fault = SINK_TOO_LARGE;
      return 0;
    }
    return n;
  }
  if (x->max_body && x->received + n > x->max_body) {
    x->sink_fault = SINK_TOO_LARGE;
    return 0;
  }
  keep_head(x, p, n);
  if (x->fd >= 0) {
    int e = ef_write_all(x->fd, p, n);
    if (e != 0) {
      x->sink_fault = SINK_IO;
      x->sink_errno = e;
      return 0;
    }
  } else if (ef_buf_append(&x->resp, p, n) != 0) {
    x->sink_fault = SINK_NOMEM;
    return 0;
  }
  x->received += n;
  return n;
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *ud) {
  ef_xfer *x = ud;
  size_t n = size * nmemb;
  /* A new status line starts a new response (after 100 Continue or a redirect): keep only
  ** the final response's headers. */
  if (n >= 5 && memcmp(p, "HTTP/", 5) == 0) {
    const char *sp = memchr(p, ' ', n);
    ef_buf_reset(&x->hdrs);
    x->status = sp ? strtol(sp + 1, NULL, 10) : 0; /* known early, for the event-stream mode */
  }
  if (x->hdrs.len + n > 256 * 1024)
    return 0; /* a header block this large is hostile */
  return ef_buf_append(&x->hdrs, p, n) == 0 ? n : 0;
}

/* The body of a "once" request, handed out in order and counted (what may have left us). */
static size_t on_read(char *p, size_t size, size_t nmemb, void *ud) {
  ef_xfer *x = ud;
  size_t n = size * nmemb, left = x->body_len - x->sent;
  if (n > left)
    n = left;
  if (n)
    memcpy(p, x->body + x->sent, n);
  x->sent += n;
  return n;
}

/*
** libcurl seeks only to send the body again (a retry on a fresh connection, a redirect that
** keeps the method): refusing makes it fail with CURLE_SEND_FAIL_REWIND rather than re-send.
** A "rewind" to where nothing was handed out yet changes nothing and is allowed.
*/
static int on_seek(void *ud, curl_off_t offset, int origin) {
  ef_xfer *x = ud;
  return offset == 0 && origin == SEEK_SET && x->sent == 0 ? CURL_SEEKFUNC_OK
                                                           : CURL_SEEKFUNC_CANTSEEK;
}

/* ---- running ---- */

#define SETOPT(opt, val)                                                                    \
  do {                                                                                      \
    if (curl_easy_setopt(e, opt, val) != CURLE_OK) {                                        \
      seterr(err, errlen, "libcurl refused option " #opt, NULL);                          \
      return -1;                                                                            \
    }                                                                                       \
  } while (0)

/*
** The body of a method that has one. A "once" body is read through on_read/on_seek (CURLOPT_POST
** with its size, so the method and headers are as with CURLOPT_POSTFIELDS); a "once" request
** without a body cannot be refused a re-send that way, so it gets a connection of its own:
** libcurl re-sends only on a reused connection.
*/
static int set_body(ef_xfer *x, CURL *e, char *err, size_t errlen) {
  if (x->once && x->body_len > 0) {
    x->sent = 0;
    SETOPT(CURLOPT_POST, 1L);
    SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->body_len);
    SETOPT(CURLOPT_READFUNCTION, on_read);
    SETOPT(CURLOPT_READDATA, (void *)x);
    SETOPT(CURLOPT_SEEKFUNCTION, on_seek);
    SETOPT(CURLOPT_SEEKDATA, (void *)x);
    return 0;
  }
  SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->body_len);
  SETOPT(CURLOPT_POSTFIELDS, x->body ? x->body : "");
  return 0;
}

int ef_xfer_prepare(ef_xfer *x, char *err, size_t errlen) {
  CURL *e = x->easy;
  const char *m = x->method ? x->method : (x->has_body ? "POST" : "GET");
  if (x->url == NULL) {
    seterr(err, errlen, "transfer has no URL", NULL);
    return -1;
  }
  SETOPT(CURLOPT_URL, x->url);
  SETOPT(CURLOPT_PRIVATE, (void *)x);
  SETOPT(CURLOPT_NOSIGNAL, 1L);
  SETOPT(CURLOPT_ERRORBUFFER, x->errbuf);
  SETOPT(CURLOPT_WRITEFUNCTION, on_body);
  SETOPT(CURLOPT_WRITEDATA, (void *)x);
  SETOPT(CURLOPT_HEADERFUNCTION, on_header);
  SETOPT(CURLOPT_HEADERDATA, (void *)x);
  SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
  SETOPT(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  SETOPT(CURLOPT_USERAGENT, "editflow/" EDITFLOW_VERSION);
  SETOPT(CURLOPT_TCP_KEEPALIVE, 1L);
  SETOPT(CURLOPT_CONNECTTIMEOUT_MS, x->connect_ms);
  SETOPT(CURLOPT_TIMEOUT_MS, x->total_ms);
  if (x->low_bytes > 0 && x->low_secs > 0) {
    SETOPT(CURLOPT_LOW_SPEED_LIMIT, x->low_bytes);
    SETOPT(CURLOPT_LOW_SPEED_TIME, x->low_secs);
  }
  if (x->max_body && !x->sse)
    SETOPT(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)x->max_body);
  /* Status events and JSON answers are small; a thousand of them in flight should not each
  ** hold libcurl's default 16 KB receive buffer. File downloads keep the default. Best
  ** effort: libcurl 7.88 refuses to resize the buffer of a reused handle, which keeps its
  ** first size (correct either way, only the memory differs). */
  (void)curl_easy_setopt(e, CURLOPT_BUFFERSIZE, x->fd >= 0 ? 16384L : 4096L);
  /* A body sent through the read callback (once mode) goes through libcurl's upload buffer,
  ** 64 KB by default and allocated per transfer; submits are a few KB, so take its minimum. */
  if (x->has_body)
    (void)curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, 16384L);
  if (x->follow) {
    SETOPT(CURLOPT_FOLLOWLOCATION, 1L);
    SETOPT(CURLOPT_MAXREDIRS, 5L);
  }
  if (strcmp(m, "GET") == 0) {
    SETOPT(CURLOPT_HTTPGET, 1L);
  } else if (strcmp(m, "HEAD") == 0) {
    SETOPT(CURLOPT_NOBODY, 1L);
  } else {
    if (strcmp(m, "POST") != 0)
      SETOPT(CURLOPT_CUSTOMREQUEST, m);
    if (set_body(x, e, err, errlen) != 0)
      return -1;
  }
  if (x->once && (x->body_len == 0 || strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0))
    SETOPT(CURLOPT_FRESH_CONNECT, 1L);
  /* "Expect:" stops libcurl waiting up to a second for 100 Continue before a large body. */
  if (x->has_body) {
    struct curl_slist *l = curl_slist_append(x->headers, "Expect:");
    if (l == NULL) {
      seterr(err, errlen, "out of memory", NULL);
      return -1;
    }
    x->headers = l;
  }
  SETOPT(CURLOPT_HTTPHEADER, x->headers);
  return 0;
}

static const char *code_name(CURLcode rc) {
  switch (rc) {
  case CURLE_OK: return "OK";
  case CURLE_UNSUPPORTED_PROTOCOL: return "UNSUPPORTED_PROTOCOL";
  case CURLE_URL_MALFORMAT: return "URL_MALFORMAT";
  case CURLE_COULDNT_RESOLVE_PROXY: return "COULDNT_RESOLVE_PROXY";
  case CURLE_COULDNT_RESOLVE_HOST: return "COULDNT_RESOLVE_HOST";
  case CURLE_COULDNT_CONNECT: return "COULDNT_CONNECT";
  case CURLE_HTTP2: return "HTTP2";
  case CURLE_PARTIAL_FILE: return "PARTIAL_FILE";
  case CURLE_WRITE_ERROR: return "WRITE_ERROR";
  case CURLE_OUT_OF_MEMORY: return "OUT_OF_MEMORY";
  case CURLE_OPERATION_TIMEDOUT: return "OPERATION_TIMEDOUT";
  case CURLE_TOO_MANY_REDIRECTS: return "TOO_MANY_REDIRECTS";
  case CURLE_GOT_NOTHING: return "GOT_NOTHING";
  case CURLE_SEND_ERROR: return "SEND_ERROR";
  case CURLE_RECV_ERROR: return "RECV_ERROR";
  case CURLE_SSL_CONNECT_ERROR: return "SSL_CONNECT_ERROR";
  case CURLE_PEER_FAILED_VERIFICATION: return "PEER_FAILED_VERIFICATION";
  case CURLE_FILESIZE_EXCEEDED: return "BODY_TOO_LARGE";
  case CURLE_ABORTED_BY_CALLBACK: return "ABORTED";
  case CURLE_BAD_CONTENT_ENCODING: return "BAD_CONTENT_ENCODING";
  case CURLE_WEIRD_SERVER_REPLY: return "WEIRD_SERVER_REPLY";
  case CURLE_HTTP2_STREAM: return "HTTP2_STREAM";
  case CURLE_SEND_FAIL_REWIND: return "RESEND_REFUSED";
  default: return "CURL_ERROR";
  }
}

void ef_xfer_finish(ef_xfer *x, CURLcode rc) {
  char msg[CURL_ERROR_SIZE + 64];
  x->state = EF_XFER_DONE;
  if (x->easy) {
    long st = 0;
    double secs = 0;
    (void)curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &st);
    (void)curl_easy_getinfo(x->easy, CURLINFO_TOTAL_TIME, &secs);
    curl_off_t up = 0;
    (void)curl_easy_getinfo(x->easy, CURLINFO_NUM_CONNECTS, &x->new_connections);
    (void)curl_easy_getinfo(x->easy, CURLINFO_SIZE_UPLOAD_T, &up);
    x->uploaded = up > 0 ? (size_t)up : 0;
    x->status = st;
    x->seconds = secs;
  }
  x->code = code_name(rc);
  msg[0] = '\0';
  if (rc == CURLE_WRITE_ERROR && x->sink_fault == SINK_TOO_LARGE && x->sse) {
    x->code = "BODY_TOO_LARGE";
    snprintf(msg, sizeof msg, "event stream: an event or the unread backlog passed %zu bytes",
             x->parser.max);
  } else if (rc == CURLE_WRITE_ERROR && x->sink_fault == SINK_TOO_LARGE) {
    x->code = "BODY_TOO_LARGE";
    snprintf(msg, sizeof msg, "response body larger than %zu bytes", x->max_body);
  } else if (rc == CURLE_FILESIZE_EXCEEDED) {
    snprintf(msg, sizeof msg, "response body larger than %zu bytes", x->max_body);
  } else if (rc == CURLE_WRITE_ERROR && x->sink_fault == SINK_IO) {
    x->code = "FILE_WRITE";
    snprintf(msg, sizeof msg, "writing %s: %s", x->temp_path ? x->temp_path : "file",
             strerror(x->sink_errno));
  } else if (rc == CURLE_WRITE_ERROR && x->sink_fault == SINK_NOMEM) {
    x->code = "OUT_OF_MEMORY";
    snprintf(msg, sizeof msg, "out of memory holding the response body");
  } else if (rc == CURLE_SEND_FAIL_REWIND && x->status == 0) {
    snprintf(msg, sizeof msg, "the connection closed before any answer after the request was "
                              "sent; it was not sent again (the server may have it)");
  } else if (rc == CURLE_SEND_FAIL_REWIND) {
    snprintf(msg, sizeof msg, "the server answered HTTP %ld asking for the request again "
                              "(redirect or authentication); it was not sent again", x->status);
  } else if (rc == CURLE_ABORTED_BY_CALLBACK) {
    snprintf(msg, sizeof msg, "transfer aborted before it finished");
  } else if (rc != CURLE_OK) {
    snprintf(msg, sizeof msg, "%s", x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc));
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
      msg[--n] = '\0';
  }
  free(x->errmsg);
  x->errmsg = msg[0] ? ef_strdup(msg) : NULL;
  /* the loop takes the easy handle back (ef_loop.c) */
}

/* ---- results ---- */

ef_xfer_state ef_xfer_get_state(const ef_xfer *x) { return x->state; }
long ef_xfer_status(const ef_xfer *x) { return x->status; }
const char *ef_xfer_code(const ef_xfer *x) { return x->code; }
const char *ef_xfer_error(const ef_xfer *x) {
  return strcmp(x->code, "OK") == 0 ? NULL : (x->errmsg ? x->errmsg : x->code);
}
const ef_buf *ef_xfer_body(const ef_xfer *x) { return &x->resp; }
const ef_buf *ef_xfer_headers(const ef_xfer *x) { return &x->hdrs; }
double ef_xfer_seconds(const ef_xfer *x) { return x->seconds; }
long ef_xfer_new_connections(const ef_xfer *x) { return x->new_connections; }
size_t ef_xfer_size(const ef_xfer *x) { return x->received; }
size_t ef_xfer_uploaded(const ef_xfer *x) { return x->sent > x->uploaded ? x->sent : x->uploaded; }
const char *ef_xfer_temp_path(const ef_xfer *x) { return x->temp_path; }

const unsigned char *ef_xfer_head(const ef_xfer *x, size_t *n) {
  *n = x->head_len;
  return x->head;
}

/*
** The same commit made off the loop's thread: the op takes the temporary file (descriptor and
** path) and does fsync, then rename or link, on a worker (ef_disk.c). The transfer keeps no
** file meanwhile, so closing it cannot pull the file from under the worker.
*/
ef_dop *ef_xfer_commit_op(ef_xfer *x, const char *final_path, int replace, char *err, size_t errlen) {
  if (x->state != EF_XFER_DONE || x->temp_path == NULL) {
    seterr(err, errlen, "nothing to commit: transfer not finished or not a file download", NULL);
    return NULL;
  }
  ef_dop *d = ef_dop_commit(x->fd, x->temp_path, final_path, replace);
  if (d == NULL) {
    seterr(err, errlen, "out of memory", NULL);
    return NULL;
  }
  x->fd = -1;
  x->temp_path = NULL;
  return d;
}

int ef_xfer_adopt_temp(ef_xfer *x, ef_dop *d) {
  char *p = ef_dop_take_temp(d);
  if (p == NULL)
    return -1;
  if (x->temp_path) { /* cannot happen through the binding; never leak a file */
    (void)unlink(x->temp_path);
    free(x->temp_path);
  }
  x->temp_path = p; /* already on disk: a commit of it skips the fsync (fd is -1) */
  return 0;
}

/*
** Makes the downloaded file permanent: data on disk (fsync) before the name, and the
** directory entry on disk after it, so a crash leaves either no file or the whole file. The
** same commit op the disk workers run (ef_disk.c), run here. replace 0 never replaces: 1 when
** final_path exists (the temporary file is kept: try another name). 0, 1, or -1 with err.
*/
static int commit_here(ef_xfer *x, const char *final_path, int replace, char *err, size_t errlen) {
  ef_dop *d = ef_xfer_commit_op(x, final_path, replace, err, errlen);
  if (d == NULL)
    return -1;
  ef_dop_run(d);
  int r = ef_dop_result(d, err, errlen);
  if (r == 1)
    (void)ef_xfer_adopt_temp(x, d);
  ef_dop_free(d);
  if (r == 0)
    (void)ef_fsync_dir_of(final_path);
  return r;
}

int ef_xfer_commit(ef_xfer *x, const char *final_path, char *err, size_t errlen) {
  return commit_here(x, final_path, 1, err, errlen);
}

/* Filesystems without hard links fall back to rename (ef_place). */
int ef_xfer_commit_new(ef_xfer *x, const char *final_path, char *err, size_t errlen) {
  return commit_here(x, final_path, 0, err, errlen);
}

void ef_xfer_discard(ef_xfer *x) {
  if (x->fd >= 0) {
    close(x->fd);
    x->fd = -1;
  }
  if (x->temp_path) {
    (void)unlink(x->temp_path);
    free(x->temp_path);
    x->temp_path = NULL;
  }
}
