/*
** ef_sse.c — a parser for server-sent events, fed the body of a status stream in whatever
** pieces the network delivers. It follows WHATWG HTML's "Interpreting an event stream":
**
**   - one UTF-8 BOM at the very start of the stream is skipped (a second one is text);
**   - a line ends at CRLF, at an LF, or at a CR not followed by an LF (the CR of a CRLF may
**     end one piece and its LF begin the next);
**   - a blank line dispatches the event, if a data field was seen since the last one;
**   - a line that begins with ':' is a comment; any other line is a field: its name runs up
**     to the first ':', its value is the rest less ONE leading space; a line without ':' is
**     a field whose value is empty;
**   - only "data" matters here (event, id, retry and unknown names are ignored): the data
**     values of one event are joined by LF;
**   - an event no blank line ended when the stream stops is never dispatched.
**
** Bytes are not decoded: what the spec would turn into U+FFFD passes as is (the JSON reader
** judges the event). A line or an event larger than the parser's limit is an error, so a
** hostile server cannot make the client buffer without bound. Total over any input, and the
** events do not depend on where the pieces are cut (the fuzz target checks both).
*/
#include <string.h>
#include "ef_engine.h"

static const char BOM[3] = {'\xEF', '\xBB', '\xBF'};

void ef_sse_init(ef_sse *p, size_t max_event) {
  memset(p, 0, sizeof *p);
  p->max = max_event ? max_event : 1024 * 1024;
}

void ef_sse_free(ef_sse *p) {
  ef_buf_free(&p->line);
  ef_buf_free(&p->data);
}

/* Adds k bytes to the current line, within the limit. */
static int line_add(ef_sse *p, const char *s, size_t k) {
  if (p->line.len + k > p->max)
    return -1;
  return ef_buf_append(&p->line, s, k);
}

/* A data field: its value joins the event's data, after an LF if data came before. */
static int data_field(ef_sse *p, const char *v, size_t vn) {
  size_t sep = p->has_data ? 1 : 0;
  if (p->data.len + sep + vn > p->max)
    return -1;
  if ((sep && ef_buf_append(&p->data, "\n", 1) != 0) || ef_buf_append(&p->data, v, vn) != 0)
    return -1;
  p->has_data = 1;
  return 0;
}

/* One whole line, its end left out: a dispatch, a comment, or a field. */
static int line_end(ef_sse *p, ef_sse_emit emit, void *ud) {
  const char *s = p->line.data ? p->line.data : "";
  size_t n = p->line.len;
  int rc = 0;
  if (n == 0) { /* blank: dispatch */
    if (p->has_data)
      rc = emit(ud, p->data.data ? p->data.data : "", p->data.len);
    ef_buf_reset(&p->data);
    p->has_data = 0;
  } else if (s[0] != ':') { /* a field (a comment is skipped) */
    const char *colon = memchr(s, ':', n);
    size_t name = colon ? (size_t)(colon - s) : n;
    const char *v = colon ? colon + 1 : s + n; /* no colon: the whole line names an empty field */
    size_t vn = n - (size_t)(v - s);
    if (vn > 0 && *v == ' ') { /* one space, not all of them */
      v++;
      vn--;
    }
    if (name == 4 && memcmp(s, "data", 4) == 0)
      rc = data_field(p, v, vn);
  }
  ef_buf_reset(&p->line);
  return rc;
}

int ef_sse_feed(ef_sse *p, const char *buf, size_t n, ef_sse_emit emit, void *ud) {
  size_t i = 0;
  if (p->failed)
    return -1;
  while (p->bom >= 0 && i < n) { /* the stream's first bytes: a BOM, maybe cut across pieces */
    if (buf[i] == BOM[p->bom]) {
      i++;
      if (++p->bom == (int)sizeof BOM)
        p->bom = -1;
    } else { /* not a BOM after all: what matched so far begins the first line */
      if (line_add(p, BOM, (size_t)p->bom) != 0) {
        p->failed = 1;
        return -1;
      }
      p->bom = -1;
    }
  }
  while (i < n) {
    char c = buf[i];
    if (c == '\n' || c == '\r') {
      int crlf = c == '\n' && p->after_cr; /* the LF of a CRLF whose CR ended the line */
      p->after_cr = c == '\r';
      i++;
      if (!crlf && line_end(p, emit, ud) != 0) {
        p->failed = 1;
        return -1;
      }
      continue;
    }
    p->after_cr = 0;
    /* the run of ordinary bytes up to the next line end, in one append */
    size_t j = i;
    while (j < n && buf[j] != '\n' && buf[j] != '\r')
      j++;
    if (line_add(p, buf + i, j - i) != 0) {
      p->failed = 1;
      return -1;
    }
    i = j;
  }
  return 0;
}
