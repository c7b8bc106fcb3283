/*
** fuzz_json_engine.c — libFuzzer target: the engine's JSON reader (ef_json.c) alone, on any
** bytes. Invariants checked besides memory safety: events nest (every end matches its open,
** depth never passes the limit), an error says "at byte N" with N within the input, escapes
** never decode longer than their raw form, integers and doubles agree with strtoll/strtod on
** the literal (the fuzzer runs in the C locale), and an accepted text written back in
** canonical form reads again into exactly the same canonical form (a round trip through the
** reader's own output).
*/
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ef_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct out {
  char *p;
  size_t len, cap;
} out;

static void put(out *o, const char *s, size_t n) {
  if (o->len + n + 1 > o->cap) {
    o->cap = (o->len + n + 1) * 2;
    o->p = realloc(o->p, o->cap);
    if (o->p == NULL)
      abort();
  }
  memcpy(o->p + o->len, s, n);
  o->len += n;
}

static void put_string(out *o, const char *s, size_t n) {
  put(o, "\"", 1);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    char esc[8];
    if (c < 0x20 || c == '"' || c == '\\') {
      snprintf(esc, sizeof esc, "\\u%04x", c);
      put(o, esc, 6);
    } else {
      put(o, (const char *)&c, 1);
    }
  }
  put(o, "\"", 1);
}

/* Reads text; on success writes its canonical form into *canon (when not NULL) and returns 0. */
static int read_all(const char *text, size_t n, int max_depth, out *canon) {
  ef_json j;
  ef_json_event ev;
  char *dec = malloc(n + 1);
  char lit[64], num[40];
  /* stack[d]: the kind of container open at depth d; first[d]: nothing written in it yet */
  int stack[EF_JSON_MAX_DEPTH + 1], first[EF_JSON_MAX_DEPTH + 1], rc = -1;
  int depth = 0;
  ef_json_init(&j, text, n, max_depth);
  for (;;) {
    ef_json_type t = ef_json_next(&j, &ev);
    if (t == EF_JSON_ERROR) {
      const char *at = strstr(j.err, " at byte ");
      if (at == NULL || j.err_at > n || strtoull(at + 9, NULL, 10) != j.err_at)
        abort();
      break;
    }
    if (t == EF_JSON_END) {
      if (depth != 0 || j.depth != 0)
        abort();
      rc = 0;
      break;
    }
    int closing = t == EF_JSON_OBJECT_END || t == EF_JSON_ARRAY_END;
    if (depth > 0 && !closing && (stack[depth] == EF_JSON_ARRAY || t == EF_JSON_KEY)) {
      if (canon && !first[depth])
        put(canon, ",", 1); /* between elements, and before every key but the first */
      first[depth] = 0;
    }
    switch (t) {
    case EF_JSON_OBJECT:
    case EF_JSON_ARRAY:
      if (depth >= max_depth || j.depth != depth + 1)
        abort();
      stack[++depth] = t;
      first[depth] = 1;
      if (canon)
        put(canon, t == EF_JSON_OBJECT ? "{" : "[", 1);
      break;
    case EF_JSON_OBJECT_END:
    case EF_JSON_ARRAY_END:
      if (depth == 0 || stack[depth] != (t == EF_JSON_OBJECT_END ? EF_JSON_OBJECT : EF_JSON_ARRAY))
        abort();
      depth--;
      if (j.depth != depth)
        abort();
      if (canon)
        put(canon, t == EF_JSON_OBJECT_END ? "}" : "]", 1);
      break;
    case EF_JSON_KEY:
    case EF_JSON_STRING: {
      if (t == EF_JSON_KEY && (depth == 0 || stack[depth] != EF_JSON_OBJECT))
        abort();
      if (ev.s < text || ev.s + ev.len > text + n)
        abort();
      size_t len = ev.len;
      const char *s = ev.s;
      if (ev.escaped) {
        len = ef_json_unescape(ev.s, ev.len, dec);
        if (len > ev.len)
          abort();
        s = dec;
      } else if (memchr(ev.s, '\\', ev.len)) {
        abort();
      }
      if (canon) {
        put_string(canon, s, len);
        if (t == EF_JSON_KEY)
          put(canon, ":", 1);
      }
      break;
    }
    case EF_JSON_INTEGER:
    case EF_JSON_NUMBER:
      if (ev.len == 0 || ev.s < text || ev.s + ev.len > text + n)
        abort();
      if (ev.len < sizeof lit) { /* the literal, checked against the C library's reading */
        memcpy(lit, ev.s, ev.len);
        lit[ev.len] = '\0';
        errno = 0;
        if (t == EF_JSON_INTEGER && (strtoll(lit, NULL, 10) != ev.i || errno != 0))
          abort();
        if (t == EF_JSON_NUMBER && strtod(lit, NULL) != ev.d)
          abort();
      }
      if (canon) {
        int k = t == EF_JSON_INTEGER ? snprintf(num, sizeof num, "%lld", ev.i)
                                     : snprintf(num, sizeof num, "%.17g", ev.d);
        put(canon, num, (size_t)k);
        if (t == EF_JSON_NUMBER && strspn(num, "-0123456789") == (size_t)k)
          put(canon, ".0", 2); /* keep it a double: 1e20 would read back as an integer */
      }
      break;
    case EF_JSON_TRUE:
      if (canon)
        put(canon, "true", 4);
      break;
    case EF_JSON_FALSE:
      if (canon)
        put(canon, "false", 5);
      break;
    case EF_JSON_NULL:
      if (canon)
        put(canon, "null", 4);
      break;
    default:
      abort();
    }
  }
  free(dec);
  return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* a byte of the input picks the depth limit, so small limits are reached too */
  int max_depth = size > 0 ? 1 + data[0] % 80 : 64;
  out c1 = {0}, c2 = {0};
  if (read_all((const char *)data, size, max_depth, &c1) == 0) {
    if (read_all(c1.p ? c1.p : "", c1.len, max_depth, &c2) != 0)
      abort(); /* our own canonical form must read */
    if (c1.len != c2.len || (c1.len && memcmp(c1.p, c2.p, c1.len) != 0))
      abort();
  }
  free(c1.p);
  free(c2.p);
  return 0;
}
