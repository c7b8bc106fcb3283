/*
** ef_sse.c — a parser for server-sent events (the WHATWG "text/event-stream" format), fed the
** body of a status stream in whatever pieces the network delivers.
**
** Lines end in LF, CRLF or CR (a CR at the end of one piece may be followed by the LF at the
** start of the next). "data:" lines accumulate (one leading space dropped, joined by LF); a
** blank line dispatches the event; comments (":...") and the other fields are ignored. A line or
** an event larger than the parser's limit is an error, so a hostile server cannot make the
** client buffer without bound. Total over any input (a fuzz target).
*/
#include <string.h>
#include "ef_engine.h"

void ef_sse_init(ef_sse *p, size_t max_event) {
  memset(p, 0, sizeof *p);
  p->max = max_event ? max_event : 1024 * 1024;
}

void ef_sse_free(ef_sse *p) {
  ef_buf_free(&p->line);
  ef_buf_free(&p->data);
}

static int field(ef_sse *p, ef_sse_emit emit, void *ud) {
  const char *s = p->line.data ? p->line.data : "";
  size_t n = p->line.len;
  int rc = 0;
  if (n == 0) { /* blank line: dispatch */
    if (p->has_data)
      rc = emit(ud, p->data.data ? p->data.data : "", p->data.len);
    ef_buf_reset(&p->data);
    p->has_data = 0;
  } else if (n >= 5 && memcmp(s, "data:", 5) == 0) {
    const char *v = s + 5;
    size_t vn = n - 5;
    if (vn > 0 && *v == ' ') {
      v++;
      vn--;
    }
    if (p->data.len + vn + 1 > p->max)
      return -1;
    if ((p->has_data && ef_buf_append(&p->data, "\n", 1) != 0) || ef_buf_append(&p->data, v, vn) != 0)
      return -1;
    p->has_data = 1;
  } else if (n == 4 && memcmp(s, "data", 4) == 0) { /* "data" alone: an empty data line */
    if (p->data.len + 1 > p->max)
      return -1;
    if ((p->has_data && ef_buf_append(&p->data, "\n", 1) != 0) || ef_buf_append(&p->data, "", 0) != 0)
      return -1;
    p->has_data = 1;
  }
  ef_buf_reset(&p->line);
  return rc;
}

int ef_sse_feed(ef_sse *p, const char *buf, size_t n, ef_sse_emit emit, void *ud) {
  size_t i = 0;
  if (p->failed)
    return -1;
  while (i < n) {
    char c = buf[i];
    if (p->after_cr && c == '\n') { /* the LF of a CRLF split across pieces */
      p->after_cr = 0;
      i++;
      continue;
    }
    p->after_cr = 0;
    if (c == '\n' || c == '\r') {
      p->after_cr = c == '\r';
      if (field(p, emit, ud) != 0) {
        p->failed = 1;
        return -1;
      }
      i++;
      continue;
    }
    /* copy the run of ordinary bytes up to the next line end */
    size_t j = i;
    while (j < n && buf[j] != '\n' && buf[j] != '\r')
      j++;
    if (p->line.len + (j - i) > p->max || ef_buf_append(&p->line, buf + i, j - i) != 0) {
      p->failed = 1;
      return -1;
    }
    i = j;
  }
  return 0;
}
