/*
** fuzz_sse.c — libFuzzer target: the event-stream parser over arbitrary bytes. The input's
** first three bytes choose the limit, a piece size and a cut; the rest is the stream. The
** same stream is fed whole, one byte at a time, in two pieces at the cut, and in pieces of the
** chosen size: every way must dispatch the same events and stop (or not) at the same limit,
** and all must agree with a reference reading written straight from WHATWG's steps (the
** whole text split into lines first, the data buffer with its trailing LF as the spec keeps
** it). Every event is within the limit and holds no CR (a CR always ends a line).
*/
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "ef_engine.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
  ef_buf log; /* each event as its 4-byte length and bytes; "E" when the parser stopped */
  size_t max;
} events;

static void record(events *ev, const char *d, size_t n) {
  unsigned char len[4] = {(unsigned char)(n >> 24), (unsigned char)(n >> 16), (unsigned char)(n >> 8),
                          (unsigned char)n};
  if (n > ev->max || memchr(d, '\r', n) != NULL)
    abort();
  if (ef_buf_append(&ev->log, len, 4) != 0 || ef_buf_append(&ev->log, d, n) != 0)
    abort();
}

static int on_event(void *ud, const char *d, size_t n) {
  record(ud, d, n);
  return 0;
}

/* Feeds s in pieces of `step` bytes (the first piece `first` bytes, when not 0). */
static void parse(const char *s, size_t n, size_t first, size_t step, events *ev) {
  ef_sse p;
  ef_sse_init(&p, ev->max);
  for (size_t off = 0; off < n;) {
    size_t k = off == 0 && first ? first : step;
    if (k > n - off)
      k = n - off;
    if (ef_sse_feed(&p, s + off, k, on_event, ev) != 0) {
      ef_buf_append(&ev->log, "E", 1);
      break;
    }
    off += k;
  }
  ef_sse_free(&p);
}

/* The spec's steps over the whole text: lines first, then each line interpreted. */
static void reference(const char *s, size_t n, events *ev) {
  ef_buf buf = {0}; /* the spec's data buffer: each value followed by an LF */
  size_t i = 0;
  if (n >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
    i = 3;
  while (i < n) {
    size_t end = i;
    while (end < n && s[end] != '\r' && s[end] != '\n')
      end++;
    const char *line = s + i;
    size_t len = end - i;
    if (len > ev->max) {
      ef_buf_append(&ev->log, "E", 1);
      break;
    }
    if (end == n)
      break; /* an unfinished line at the end: discarded */
    i = end + (s[end] == '\r' && end + 1 < n && s[end + 1] == '\n' ? 2 : 1);
    if (len == 0) {
      if (buf.len > 0)
        record(ev, buf.data, buf.len - 1); /* the last LF removed */
      buf.len = 0;
      continue;
    }
    if (line[0] == ':')
      continue;
    size_t name = 0;
    while (name < len && line[name] != ':')
      name++;
    const char *value = line + name + (name < len);
    size_t vlen = len - (size_t)(value - line);
    if (vlen && value[0] == ' ') {
      value++;
      vlen--;
    }
    if (name == 4 && memcmp(line, "data", 4) == 0) {
      if (buf.len + vlen > ev->max) { /* the event with this value added, its LF not counted */
        ef_buf_append(&ev->log, "E", 1);
        break;
      }
      ef_buf_append(&buf, value, vlen);
      ef_buf_append(&buf, "\n", 1);
    }
  }
  ef_buf_free(&buf);
}

static int same(const events *a, const events *b) {
  return a->log.len == b->log.len && (a->log.len == 0 || memcmp(a->log.data, b->log.data, a->log.len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 3)
    return 0;
  size_t max = 4 + (size_t)(data[0] >> 4) * 8;  /* 4 .. 124 */
  size_t step = (size_t)(data[0] & 15) + 1;     /* 1 .. 16 */
  const char *s = (const char *)data + 3;
  size_t n = size - 3;
  size_t cut = ((size_t)data[1] << 8 | data[2]) % (n + 1);
  events want = {{0}, max}, whole = {{0}, max}, bytes = {{0}, max}, two = {{0}, max},
         pieces = {{0}, max};
  reference(s, n, &want);
  parse(s, n, 0, n ? n : 1, &whole);
  parse(s, n, 0, 1, &bytes);
  parse(s, n, cut, n ? n : 1, &two);
  parse(s, n, 0, step, &pieces);
  if (!same(&whole, &want) || !same(&bytes, &want) || !same(&two, &want) || !same(&pieces, &want))
    abort();
  ef_buf_free(&want.log);
  ef_buf_free(&whole.log);
  ef_buf_free(&bytes.log);
  ef_buf_free(&two.log);
  ef_buf_free(&pieces.log);
  return 0;
}
