/*
** ef_json.h — a strict JSON (RFC 8259) reader with no Lua in it: a pull parser that hands out
** one event at a time (begin/end of objects and arrays, keys, strings, exact 64-bit integers,
** doubles, literals), so that a caller can build its own values without callbacks and stop
** anywhere. The reader never allocates: strings point into the input (decode their escapes
** with ef_json_unescape into a buffer of at least their raw length), and its nesting record
** is a fixed bit set inside the struct.
**
** Decisions a caller may need to know:
**   - a leading UTF-8 byte order mark is skipped (RFC 8259 section 8.1 allows ignoring it);
**     anything but whitespace after the value is an error;
**   - bytes 0x80..0xFF inside strings pass through unchecked (not validated as UTF-8); control
**     bytes below 0x20 must be escaped; \uXXXX escapes become UTF-8, surrogate pairs one
**     4-byte sequence, a lone surrogate its own 3-byte sequence (so no escape is an error);
**   - an integer literal (no fraction, no exponent) within int64 is an EF_JSON_INTEGER read
**     exactly from its digits; every other number is an EF_JSON_NUMBER, correctly rounded and
**     independent of the process locale; a number beyond the double range is an error (it
**     would be an infinity, which JSON cannot write back);
**   - error messages end in "at byte N", N counting from 0 at the start of the input.
*/
#ifndef EF_JSON_H
#define EF_JSON_H

#include <stddef.h>

#define EF_JSON_MAX_DEPTH 1024    /* the deepest nesting any reader can be set to allow */
#define EF_JSON_DEFAULT_DEPTH 64

typedef enum ef_json_type {
  EF_JSON_ERROR = -1, /* message in j->err; every later call returns EF_JSON_ERROR again */
  EF_JSON_END = 0,    /* the value is complete and only whitespace followed it */
  EF_JSON_OBJECT,
  EF_JSON_OBJECT_END,
  EF_JSON_ARRAY,
  EF_JSON_ARRAY_END,
  EF_JSON_KEY,        /* s, len, escaped: a member's name; its value's events follow */
  EF_JSON_STRING,     /* s, len, escaped */
  EF_JSON_INTEGER,    /* i (s, len: the literal) */
  EF_JSON_NUMBER,     /* d (s, len: the literal) */
  EF_JSON_TRUE,
  EF_JSON_FALSE,
  EF_JSON_NULL
} ef_json_type;

typedef struct ef_json_event {
  ef_json_type type;
  const char *s; /* into the input: a string's raw bytes between the quotes, or a number */
  size_t len;
  int escaped;   /* the raw string holds escapes: decode it with ef_json_unescape */
  long long i;
  double d;
} ef_json_event;

typedef struct ef_json {
  const char *p;
  size_t n, at;   /* the input, and the offset of the next unread byte */
  int depth;      /* containers open now (after EF_JSON_OBJECT or EF_JSON_ARRAY: with it) */
  int max_depth;
  int state;
  unsigned char arrays[EF_JSON_MAX_DEPTH / 8]; /* bit d-1 set: the container at depth d is an array */
  size_t err_at;
  char err[96];
} ef_json;

/* max_depth outside 1..EF_JSON_MAX_DEPTH is taken as the nearest bound. */
void ef_json_init(ef_json *j, const char *p, size_t n, int max_depth);
/* The next event (also stored in *ev). */
ef_json_type ef_json_next(ef_json *j, ef_json_event *ev);
/* Decodes the escapes of a raw string from a KEY or STRING event into out, which must hold
** len bytes (the decoded form is never longer). Returns the decoded length. */
size_t ef_json_unescape(const char *s, size_t len, char *out);

#endif
