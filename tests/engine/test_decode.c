/*
** test_decode.c — the engine's readers of remote bytes that need no server: the JSON pull
** parser (ef_json.c), the event-stream parser (ef_sse.c) and image dimensions (ef_image_size
** in ef_codec.c). Each JSON case is the text and the events it must give, written as a
** compact trace, or the exact error message; each event stream, the events it dispatches,
** whole and cut into pieces at every byte. Image headers are built by hand, byte by byte, for each format, and every
** truncation of each must be refused without reading past its end. Prints
** "N passed, N failed"; exits non-zero on any failure.
*/
#define _POSIX_C_SOURCE 200809L
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ef_engine.h"
#include "ef_json.h"

static int passed, failed;

#define CHECK(cond)                                                                         \
  do {                                                                                      \
    if (cond) {                                                                             \
      passed++;                                                                             \
    } else {                                                                                \
      failed++;                                                                             \
      fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                      \
    }                                                                                       \
  } while (0)

/*
** Reads all of text (n bytes) and writes its events into out as a trace: { } [ ] for
** containers, k:NAME for keys, s:TEXT for strings (escapes decoded, bytes below 0x20 or
** above 0x7E as \xHH), i:N for integers, d:%.17g for doubles, t f n for literals. On error
** the trace is "E:" and the message. Returns the trace.
*/
static const char *trace(const char *text, size_t n, int depth, char *out, size_t cap) {
  ef_json j;
  ef_json_event ev;
  size_t o = 0;
  char *dec = malloc(n + 1);
  ef_json_init(&j, text, n, depth);
  out[0] = '\0';
  for (;;) {
    ef_json_type t = ef_json_next(&j, &ev);
    char item[512];
    item[0] = '\0';
    switch (t) {
    case EF_JSON_ERROR: snprintf(item, sizeof item, "E:%s", j.err); break;
    case EF_JSON_END: break;
    case EF_JSON_OBJECT: strcpy(item, "{"); break;
    case EF_JSON_OBJECT_END: strcpy(item, "}"); break;
    case EF_JSON_ARRAY: strcpy(item, "["); break;
    case EF_JSON_ARRAY_END: strcpy(item, "]"); break;
    case EF_JSON_KEY:
    case EF_JSON_STRING: {
      size_t len = ev.escaped ? ef_json_unescape(ev.s, ev.len, dec) : ev.len;
      const char *s = ev.escaped ? dec : ev.s;
      size_t k = (size_t)snprintf(item, sizeof item, "%s", t == EF_JSON_KEY ? "k:" : "s:");
      for (size_t i = 0; i < len && k + 5 < sizeof item; i++) {
        unsigned char c = (unsigned char)s[i];
        k += (size_t)snprintf(item + k, sizeof item - k, c < 0x20 || c > 0x7E ? "\\x%02X" : "%c", c);
      }
      break;
    }
    case EF_JSON_INTEGER: snprintf(item, sizeof item, "i:%lld", ev.i); break;
    case EF_JSON_NUMBER: snprintf(item, sizeof item, "d:%.17g", ev.d); break;
    case EF_JSON_TRUE: strcpy(item, "t"); break;
    case EF_JSON_FALSE: strcpy(item, "f"); break;
    case EF_JSON_NULL: strcpy(item, "n"); break;
    }
    if (item[0])
      o += (size_t)snprintf(out + o, cap - o, "%s%s", o ? " " : "", item);
    if (t == EF_JSON_END || t == EF_JSON_ERROR || o >= cap - 1)
      break;
  }
  free(dec);
  return out;
}

static void expect_n(const char *text, size_t n, int depth, const char *want, int line) {
  char got[4096];
  trace(text, n, depth, got, sizeof got);
  if (strcmp(got, want) == 0) {
    passed++;
  } else {
    failed++;
    fprintf(stderr, "FAIL %s:%d: json %.60s\n  got  %s\n  want %s\n", __FILE__, line, text, got,
            want);
  }
}

#define EXPECT(text, want) expect_n(text, strlen(text), 64, want, __LINE__)

static void test_json_values(void) {
  /* integers: exact from the digits, int64's edges, and one past them becomes a double */
  EXPECT("196619188014358660", "i:196619188014358660");
  EXPECT("9223372036854775807", "i:9223372036854775807");
  EXPECT("-9223372036854775808", "i:-9223372036854775808");
  EXPECT("9223372036854775808", "d:9.2233720368547758e+18");
  EXPECT("-9223372036854775809", "d:-9.2233720368547758e+18");
  EXPECT("18446744073709551616", "d:1.8446744073709552e+19");
  EXPECT("0", "i:0");
  EXPECT("-0", "i:0");
  EXPECT(" 42 ", "i:42");
  /* doubles, correctly rounded */
  EXPECT("4.5", "d:4.5");
  EXPECT("0.1", "d:0.10000000000000001");
  EXPECT("-0.0", "d:-0");
  EXPECT("1e3", "d:1000");
  EXPECT("1E+3", "d:1000");
  EXPECT("2.5e-3", "d:0.0025000000000000001");
  EXPECT("1.7976931348623157e308", "d:1.7976931348623157e+308");
  EXPECT("4.9406564584124654e-324", "d:4.9406564584124654e-324");
  EXPECT("2.4703282292062328e-324", "d:4.9406564584124654e-324"); /* just above half: up */
  EXPECT("1e-400", "d:0");
  EXPECT("-1e-99999999999999999999", "d:-0");
  EXPECT("0.000000000000000000000000000001", "d:1.0000000000000001e-30");
  EXPECT("123456789012345678901234567890", "d:1.2345678901234568e+29");
  EXPECT("9007199254740993.0", "d:9007199254740992"); /* 2^53 + 1: a tie, to even */
  EXPECT("9007199254740993.00000000000000000000001", "d:9007199254740994"); /* past the tie */
  /* a tie decided only by a digit far past the 800 kept: the sticky digit keeps it exact */
  {
    char big[1200];
    strcpy(big, "9007199254740993.");
    size_t k = strlen(big);
    memset(big + k, '0', 1000);
    strcpy(big + k + 1000, "1");
    expect_n(big, strlen(big), 64, "d:9007199254740994", __LINE__);
    big[k + 1000] = '0';
    expect_n(big, strlen(big), 64, "d:9007199254740992", __LINE__);
  }
  /* literals, strings, containers */
  EXPECT("true", "t");
  EXPECT("false", "f");
  EXPECT("null", "n");
  EXPECT("\"\"", "s:");
  EXPECT("\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"", "s:a\"b\\c/d\\x08\\x0C\\x0A\\x0D\\x09");
  EXPECT("\"\\u00e9\\u20AC\"", "s:\\xC3\\xA9\\xE2\\x82\\xAC");
  EXPECT("\"\\ud83d\\ude00\"", "s:\\xF0\\x9F\\x98\\x80");             /* a surrogate pair */
  EXPECT("\"\\ud800x\"", "s:\\xED\\xA0\\x80x");                        /* lone high */
  EXPECT("\"\\udc00\"", "s:\\xED\\xB0\\x80");                          /* lone low */
  EXPECT("\"\\ud800\\u0041\"", "s:\\xED\\xA0\\x80A");                  /* high, then no low */
  EXPECT("\"\\ude00\\ud83d\"", "s:\\xED\\xB8\\x80\\xED\\xA0\\xBD");    /* reversed pair */
  EXPECT("\"a\\u0000b\"", "s:a\\x00b");                                /* NUL in a string */
  EXPECT("\"caf\xc3\xa9\"", "s:caf\\xC3\\xA9");                        /* raw UTF-8 passes */
  EXPECT("[]", "[ ]");
  EXPECT("{}", "{ }");
  EXPECT(" [ 1 , [ ] , { } ] ", "[ i:1 [ ] { } ]");
  EXPECT("{\"a\":{\"b\":[true,false,null]},\"c\":\"d\"}",
         "{ k:a { k:b [ t f n ] } k:c s:d }");
  EXPECT("{\"a\\n\":1,\"a\\n\":2}", "{ k:a\\x0A i:1 k:a\\x0A i:2 }"); /* duplicates are the caller's */
  EXPECT("\xEF\xBB\xBF{}", "{ }");                                      /* a BOM is skipped */
  EXPECT("\t\r\n 7 \t\r\n", "i:7");
}

static void test_json_errors(void) {
  EXPECT("", "E:unexpected end of input at byte 0");
  EXPECT("   ", "E:unexpected end of input at byte 3");
  EXPECT("{\"a\" 1}", "{ k:a E:expected ':' at byte 5");
  EXPECT("{\"a\":1 \"b\":2}", "{ k:a i:1 E:expected ',' or '}' at byte 7");
  EXPECT("[1 2]", "[ i:1 E:expected ',' or ']' at byte 3");
  EXPECT("{1:2}", "{ E:expected a string key or '}' at byte 1");
  EXPECT("{\"a\":1,}", "{ k:a i:1 E:expected a string key at byte 7");
  EXPECT("[1,]", "[ i:1 E:expected a value at byte 3");
  EXPECT("[,1]", "[ E:expected a value at byte 1");
  EXPECT("{\"a\":}", "{ k:a E:expected a value at byte 5");
  EXPECT("'a'", "E:expected a value at byte 0");
  EXPECT("1 2", "i:1 E:unexpected data after the value at byte 2");
  EXPECT("{}x", "{ } E:unexpected data after the value at byte 2");
  EXPECT("nul", "E:unexpected end of input at byte 3");
  EXPECT("nulx", "E:invalid literal at byte 0");
  EXPECT("True", "E:expected a value at byte 0");
  EXPECT("truex", "t E:unexpected data after the value at byte 4");
  EXPECT("01", "E:leading zero in a number at byte 0");
  EXPECT("-01", "E:leading zero in a number at byte 0");
  EXPECT("-", "E:unexpected end of input at byte 1");
  EXPECT("-a", "E:invalid number at byte 1");
  EXPECT("+1", "E:expected a value at byte 0");
  EXPECT(".5", "E:expected a value at byte 0");
  EXPECT("1.", "E:unexpected end of input at byte 2");
  EXPECT("1.e5", "E:invalid number at byte 2");
  EXPECT("1e", "E:unexpected end of input at byte 2");
  EXPECT("1e+", "E:unexpected end of input at byte 3");
  EXPECT("[1ex]", "[ E:invalid number at byte 3");
  EXPECT("NaN", "E:expected a value at byte 0");
  EXPECT("-Infinity", "E:invalid number at byte 1");
  EXPECT("1e400", "E:number out of range at byte 0");
  EXPECT("[-1.8e308]", "[ E:number out of range at byte 1");
  EXPECT("\"abc", "E:unterminated string starting at byte 0");
  EXPECT("[\"a\\", "[ E:unterminated string starting at byte 1");
  EXPECT("\"\\u12", "E:unterminated string starting at byte 0");
  EXPECT("\"\\u12g4\"", "E:invalid \\u escape at byte 1");
  EXPECT("\"\\x\"", "E:invalid escape at byte 1");
  EXPECT("\"\\U0041\"", "E:invalid escape at byte 1");
  EXPECT("\"a\tb\"", "E:control character in a string at byte 2");
  EXPECT("\"\xEF\xBB\xBF\"", "s:\\xEF\\xBB\\xBF");           /* a BOM inside a string is text */
  EXPECT(" \xEF\xBB\xBF{}", "E:expected a value at byte 1"); /* and only first, not after space */
  expect_n("\"a\0b\"", 5, 64, "E:control character in a string at byte 2", __LINE__);
  expect_n("[1]\0", 4, 64, "[ i:1 ] E:unexpected data after the value at byte 3", __LINE__);
  expect_n("12", 1, 64, "i:1", __LINE__); /* n is the end: the byte past it is not read */
  /* strings are crossed 8 bytes at a time: a quote, a backslash or a control byte at every
  ** offset and alignment must still be seen, and bytes above 0x7F never stop a run */
  for (size_t k = 0; k < 40; k++) {
    char text[64], want[128];
    memset(text, '\xE9', sizeof text);
    text[0] = '"';
    text[k + 1] = '"';
    text[k + 2] = '\0';
    char got[4096];
    trace(text, k + 2, 64, got, sizeof got);
    CHECK(strncmp(got, "s:", 2) == 0 && strlen(got) == 2 + 4 * k);
    text[k + 1] = '\x1f';
    text[k + 2] = '"';
    snprintf(want, sizeof want, "E:control character in a string at byte %zu", k + 1);
    expect_n(text, k + 3, 64, want, __LINE__);
    text[k + 1] = '\\';
    text[k + 2] = 'n';
    text[k + 3] = '"';
    trace(text, k + 4, 64, got, sizeof got);
    CHECK(strstr(got, "\\x0A") != NULL && strstr(got, "E:") == NULL);
  }
  /* truncated at every byte: each prefix of a complete text fails, and only at its end */
  const char *doc = "{\"seed\":196619188014358660,\"images\":[{\"url\":\"https://x/\\u00e9.png\","
                    "\"w\":1024}],\"nsfw\":[false,true],\"t\":1.5e-3,\"n\":null}";
  size_t len = strlen(doc);
  for (size_t k = 0; k < len; k++) {
    char got[4096], want[64];
    trace(doc, k, 64, got, sizeof got);
    const char *e = strstr(got, "E:");
    snprintf(want, sizeof want, "at byte %zu", k);
    int ok = e != NULL && (strstr(e, "unexpected end of input") || strstr(e, "unterminated string"));
    if (!ok || (strstr(e, "unexpected end") && !strstr(e, want))) {
      fprintf(stderr, "truncated at %zu: %s\n", k, got);
      ok = 0;
    }
    CHECK(ok);
  }
}

static void test_json_depth(void) {
  char text[2 * EF_JSON_MAX_DEPTH + 8], want[64];
  /* 64 levels pass, the 65th is refused where it opens */
  memset(text, '[', 64);
  memset(text + 64, ']', 64);
  {
    char got[4096];
    trace(text, 128, 64, got, sizeof got);
    CHECK(strstr(got, "E:") == NULL);
  }
  memset(text, '[', 65);
  memset(text + 65, ']', 65);
  {
    char got[4096];
    trace(text, 130, 64, got, sizeof got);
    CHECK(strstr(got, "E:nesting deeper than 64 at byte 64") != NULL);
  }
  expect_n("{\"a\":[{}]}", 10, 2, "{ k:a [ E:nesting deeper than 2 at byte 6", __LINE__);
  expect_n("[[]]", 4, 2, "[ [ ] ]", __LINE__);
  /* the most a reader allows, and settings beyond it are clamped */
  memset(text, '[', EF_JSON_MAX_DEPTH + 1);
  memset(text + EF_JSON_MAX_DEPTH + 1, ']', EF_JSON_MAX_DEPTH + 1);
  {
    char got[8192];
    trace(text, 2 * EF_JSON_MAX_DEPTH + 2, 1 << 20, got, sizeof got);
    snprintf(want, sizeof want, "E:nesting deeper than %d at byte %d", EF_JSON_MAX_DEPTH,
             EF_JSON_MAX_DEPTH);
    CHECK(strstr(got, want) != NULL);
    trace(text + 1, 2 * EF_JSON_MAX_DEPTH, EF_JSON_MAX_DEPTH, got, sizeof got);
    CHECK(strstr(got, "E:") == NULL);
  }
  expect_n("[1]", 3, 0, "[ i:1 ]", __LINE__); /* 0 is taken as 1 */
  /* an error is final */
  ef_json j;
  ef_json_event ev;
  ef_json_init(&j, "[x]", 3, 64);
  CHECK(ef_json_next(&j, &ev) == EF_JSON_ARRAY);
  CHECK(ef_json_next(&j, &ev) == EF_JSON_ERROR && j.err_at == 1);
  CHECK(ef_json_next(&j, &ev) == EF_JSON_ERROR);
  ef_json_init(&j, "1", 1, 64);
  CHECK(ef_json_next(&j, &ev) == EF_JSON_INTEGER && ev.len == 1 && ev.s[0] == '1');
  CHECK(ef_json_next(&j, &ev) == EF_JSON_END);
  CHECK(ef_json_next(&j, &ev) == EF_JSON_END);
}

/* Numbers do not depend on the process locale (a decimal comma must not change them). */
static void test_json_locale(void) {
  static const char *const names[] = {"de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8", "ru_RU.UTF-8"};
  const char *got = NULL;
  for (size_t i = 0; i < sizeof names / sizeof names[0] && got == NULL; i++)
    got = setlocale(LC_NUMERIC, names[i]);
  if (got == NULL || strcmp(localeconv()->decimal_point, ",") != 0) {
    printf("(no locale with a decimal comma here: the locale case was skipped)\n");
    setlocale(LC_NUMERIC, "C");
    return;
  }
  static const char *const nums[] = {"1.5", "2.5e-3", "0.1", "1234567890.123456789012",
                                     "12345678901234567890.5", "1e-310"};
  static const double want[] = {1.5, 2.5e-3, 0.1, 1234567890.123456789012, 12345678901234567890.5,
                                1e-310};
  for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
    ef_json j;
    ef_json_event ev;
    ef_json_init(&j, nums[i], strlen(nums[i]), 64);
    CHECK(ef_json_next(&j, &ev) == EF_JSON_NUMBER && ev.d == want[i]);
  }
  setlocale(LC_NUMERIC, "C");
}

/* ---- server-sent events ---- */

/* Appends one dispatched event to the trace (ud, an ef_buf) as [payload], its bytes shown
** as they are except LF \n, CR \r and anything unprintable or a bracket or backslash \xHH. */
static int sse_collect(void *ud, const char *d, size_t n) {
  ef_buf *b = ud;
  ef_buf_append(b, "[", 1);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)d[i];
    char e[8];
    if (c == '\n' || c == '\r')
      snprintf(e, sizeof e, "\\%c", c == '\n' ? 'n' : 'r');
    else if (c < 0x20 || c > 0x7E || c == '[' || c == ']' || c == '\\')
      snprintf(e, sizeof e, "\\x%02X", c);
    else
      snprintf(e, sizeof e, "%c", c);
    ef_buf_append(b, e, strlen(e));
  }
  ef_buf_append(b, "]", 1);
  return 0;
}

/* Feeds s (n bytes) to a new parser in the pieces that the k ascending cuts make, each piece
** copied to a block of its exact size (ASan sees a read past it); out gets the trace, with
** "E" at the end when a feed failed. */
static void sse_run(const char *s, size_t n, size_t max, const size_t *cuts, size_t k, ef_buf *out) {
  ef_sse p;
  int stopped = 0;
  size_t at = 0;
  ef_buf_reset(out);
  ef_sse_init(&p, max);
  for (size_t c = 0; c <= k; c++) {
    size_t end = c < k ? cuts[c] : n;
    char *piece = malloc(end > at ? end - at : 1);
    memcpy(piece, s + at, end - at);
    if (ef_sse_feed(&p, piece, end - at, sse_collect, out) != 0)
      stopped = 1;
    free(piece);
    at = end;
  }
  if (stopped)
    ef_buf_append(out, "E", 1);
  ef_sse_free(&p);
}

static int sse_same(const ef_buf *got, const char *want) {
  return strcmp(got->data ? got->data : "", want) == 0;
}

/* The stream must dispatch exactly want whole, cut once at every byte, cut twice at every
** pair of bytes (an empty middle piece included), and fed one byte at a time. */
static void expect_sse(const char *s, size_t n, size_t max, const char *want, int line) {
  ef_buf got = {0};
  char where[64] = "whole";
  size_t *cuts = malloc((n > 2 ? n : 2) * sizeof *cuts); /* two cuts, or n - 1 */
  sse_run(s, n, max, NULL, 0, &got);
  int ok = sse_same(&got, want);
  for (size_t a = 0; ok && a <= n; a++) {
    cuts[0] = a;
    sse_run(s, n, max, cuts, 1, &got);
    if (!(ok = sse_same(&got, want)))
      snprintf(where, sizeof where, "cut at %zu", a);
    for (size_t b = a; ok && b <= n; b++) {
      cuts[1] = b;
      sse_run(s, n, max, cuts, 2, &got);
      if (!(ok = sse_same(&got, want)))
        snprintf(where, sizeof where, "cut at %zu and %zu", a, b);
    }
  }
  if (ok && n > 1) {
    for (size_t i = 1; i < n; i++)
      cuts[i - 1] = i;
    sse_run(s, n, max, cuts, n - 1, &got);
    if (!(ok = sse_same(&got, want)))
      snprintf(where, sizeof where, "one byte at a time");
  }
  if (ok) {
    passed++;
  } else {
    failed++;
    fprintf(stderr, "FAIL %s:%d: event stream (%s)\n  got  %s\n  want %s\n", __FILE__, line, where,
            got.data ? got.data : "", want);
  }
  free(cuts);
  ef_buf_free(&got);
}

#define SSE(stream, want) expect_sse(stream, sizeof stream - 1, 0, want, __LINE__)
#define SSE_MAX(stream, max, want) expect_sse(stream, sizeof stream - 1, max, want, __LINE__)

static int sse_stop(void *ud, const char *d, size_t n) {
  (void)d;
  (void)n;
  ++*(int *)ud;
  return 1;
}

static void test_sse(void) {
  /* line ends: LF, CRLF, a lone CR, and mixed within one event and one stream */
  SSE("data: one\n\n", "[one]");
  SSE("data: one\r\n\r\n", "[one]");
  SSE("data: one\r\r", "[one]");
  SSE("data: a\r\ndata: b\rdata: c\ndata: d\r\n\r\ndata: e\n\r\n", "[a\\nb\\nc\\nd][e]");
  SSE("data: a\r\rdata: b\r\n\ndata: c\n\r", "[a][b][c]");
  SSE("data: a\n\rdata: b\n\n", "[a][b]");             /* LF then CR: two line ends */
  SSE("data: a\r\r\ndata: b\r\n\n", "[a][b]");         /* CR, then CRLF: two */
  SSE("data: a\r\n\r\r\ndata: b\n\n", "[a][b]");       /* CRLF, CR, CRLF: three line ends (one stray blank) */
  /* multi-line events, CRLF or CR inside: one event, its lines joined by LF */
  SSE("data: {\"status\":\"IN_QUEUE\",\r\ndata: \"queue_position\":2}\r\n\r\n"
      "data: {\"status\":\r\ndata:\"COMPLETED\"}\r\n\r\n",
      "[{\"status\":\"IN_QUEUE\",\\n\"queue_position\":2}][{\"status\":\\n\"COMPLETED\"}]");
  SSE("data: 1\rdata: 2\rdata: 3\r\rdata: 4\r\r", "[1\\n2\\n3][4]");
  SSE("data: a\ndata\ndata: b\r\n\r\n", "[a\\n\\nb]");
  /* the value: one leading space dropped, no more; nothing else trimmed */
  SSE("data:  x\n\n", "[ x]");
  SSE("data:   x \r\n\r\n", "[  x ]");
  SSE("data:x\n\n", "[x]");
  SSE("data:\tx\n\n", "[\\x09x]");
  SSE("data: \n\n", "[]");
  SSE("data:  \n\n", "[ ]");
  SSE("data: a\ndata:  b\ndata:c\n\n", "[a\\n b\\nc]");
  /* the name runs up to the first colon; no colon: a field with an empty value */
  SSE("data: a: b\n\n", "[a: b]");
  SSE("data::x\n\n", "[:x]");
  SSE("data:: x\n\n", "[: x]");
  SSE("data\n\n", "[]");
  SSE("data\r\ndata\r\n\r\n", "[\\n]");
  SSE("data:\n\n", "[]");
  /* comments and other fields change nothing; names are exact and case-sensitive */
  SSE(": ping\n\n", "");
  SSE(":data: x\n\n", "");
  SSE(": a\r\ndata: y\r\n:\r\n: z\r\n\r\n", "[y]");
  SSE("event: status\nid: 7\nretry: 100\nfoo: bar\nfoo\ndata: x\n\n", "[x]");
  SSE("event: status\nid: 7\n\ndata: x\n\n", "[x]");   /* no data: nothing dispatched */
  SSE("Data: x\n\ndata : x\n\n data: x\n\ndataa: x\n\ndat: x\n\ndatadata\n\n", "");
  SSE("data\x00: x\n\n", "");
  SSE("data: a\x00" "b\n\n", "[a\\x00b]");
  SSE("\n\n\r\n\r\r\n", "");
  /* a UTF-8 BOM: skipped once, at the very start only */
  SSE("\xEF\xBB\xBF" "data: a\n\n", "[a]");
  SSE("\xEF\xBB\xBF\r\ndata: a\n\n", "[a]");
  SSE("\xEF\xBB\xBF\xEF\xBB\xBF" "data: a\n\ndata: b\n\n", "[b]"); /* the second is text */
  SSE("data: a\n\n\xEF\xBB\xBF" "data: b\n\n", "[a]");
  SSE("\xEF\xBB" "data: a\n\ndata: b\n\n", "[b]");                  /* half a BOM is text */
  SSE("\xEF" "\n" "data: a\n\n", "[a]");
  SSE("\xEF\xBB\r" "data: a\n\n", "[a]");
  SSE("data: \xEF\xBB\xBF\n\n", "[\\xEF\\xBB\\xBF]");
  /* the end of the stream without a blank line dispatches nothing */
  SSE("data: a\n\ndata: b\n", "[a]");
  SSE("data: a\r\n\r\ndata: b", "[a]");
  SSE("data: a\r\rdata: b\r", "[a]");
  SSE("data: a", "");
  SSE("", "");
  /* the limit, for one line (its end not counted, a half BOM counted) and for one event */
  SSE_MAX(":1234567\r\ndata:12\r\ndata:12\r\ndata:12\r\n\r\n", 8, "[12\\n12\\n12]");
  SSE_MAX(":12345678\n", 8, "E");
  SSE_MAX("data:12\ndata:12\ndata:12\ndata:\n\n", 8, "E");
  SSE_MAX("data:1234\ndata:12345\n\n", 10, "[1234\\n12345]");
  SSE_MAX("data:12345\ndata:12345\n\n", 10, "E");
  SSE_MAX("\xEF\xBB\xBF" ":1234567\ndata: 1\n\n", 8, "[1]");
  SSE_MAX("\xEF\xBB" "1234567\ndata: 1\n\n", 8, "E");
  SSE_MAX("data:1\n\n:123456789\ndata:2\n\n", 8, "[1]E"); /* events before it, none after */
  /* a callback that answers non-zero stops the feed, and the parser stays stopped */
  {
    ef_sse p;
    int calls = 0;
    ef_sse_init(&p, 0);
    CHECK(ef_sse_feed(&p, "data: a\n\ndata: b\n\n", 18, sse_stop, &calls) == -1 && calls == 1);
    CHECK(ef_sse_feed(&p, "data: c\n\n", 9, sse_stop, &calls) == -1 && calls == 1);
    ef_sse_free(&p);
  }
}

/* ---- image sizes ---- */

static void put_be32(unsigned char *p, unsigned v) {
  p[0] = (unsigned char)(v >> 24);
  p[1] = (unsigned char)(v >> 16);
  p[2] = (unsigned char)(v >> 8);
  p[3] = (unsigned char)v;
}

/* The size must come out of all n bytes, and out of no shorter prefix of them. */
static void expect_size(const unsigned char *p, size_t n, unsigned w, unsigned h, int line) {
  uint32_t gw = 0, gh = 0;
  int ok = ef_image_size(p, n, &gw, &gh) == 0 && gw == w && gh == h;
  for (size_t k = 0; k < n && ok; k++) {
    unsigned char *copy = malloc(k ? k : 1); /* exact size: ASan sees a read past the end */
    memcpy(copy, p, k);
    if (ef_image_size(copy, k, &gw, &gh) != -1) {
      fprintf(stderr, "prefix of %zu bytes gave a size\n", k);
      ok = 0;
    }
    free(copy);
  }
  if (ok) {
    passed++;
  } else {
    failed++;
    fprintf(stderr, "FAIL %s:%d: image size %ux%u (got %ux%u)\n", __FILE__, line, w, h,
            (unsigned)gw, (unsigned)gh);
  }
}

static int size_fails(const unsigned char *p, size_t n) {
  uint32_t w, h;
  return ef_image_size(p, n, &w, &h) == -1;
}

static void test_image_size(void) {
  /* PNG: signature, IHDR length 13, "IHDR", width, height */
  unsigned char png[33] = "\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR";
  put_be32(png + 16, 1024);
  put_be32(png + 20, 768);
  expect_size(png, 24, 1024, 768, __LINE__);
  CHECK(!size_fails(png, sizeof png));
  png[15] = 'X';
  CHECK(size_fails(png, sizeof png)); /* the first chunk is not IHDR */
  png[15] = 'R';
  put_be32(png + 16, 0);
  CHECK(size_fails(png, sizeof png));
  put_be32(png + 16, 0x80000000u);
  CHECK(size_fails(png, sizeof png)); /* beyond PNG's 2^31 - 1 */

  /* GIF: signature, logical screen width and height (little-endian) */
  static const unsigned char gif[] = "GIF89a\x40\x01\xf0\x00";
  expect_size(gif, 10, 320, 240, __LINE__);
  CHECK(size_fails((const unsigned char *)"GIF87a\0\0\x01\0", 10)); /* zero width */

  /* JPEG: SOI, an APP0 segment, a DHT (C4, not a frame), fill bytes, then SOF2 */
  static const unsigned char jpg[] = {
    0xFF, 0xD8,
    0xFF, 0xE0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0,
    0xFF, 0xC4, 0x00, 0x05, 0x00, 0x01, 0x02,
    0xFF, 0xFF, 0xFF, 0xC2, 0x00, 0x11, 0x08, 0x02, 0x58, 0x03, 0x20, 0x03,
    1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1};
  expect_size(jpg, sizeof jpg, 800, 600, __LINE__);
  /* C8 (JPG) and CC (DAC) are not frames either; RST and TEM markers have no length */
  static const unsigned char jpg2[] = {
    0xFF, 0xD8, 0xFF, 0xC8, 0x00, 0x04, 0xAA, 0xBB, 0xFF, 0xCC, 0x00, 0x04, 0x01, 0x02,
    0xFF, 0xD3, 0xFF, 0x01,
    0xFF, 0xC0, 0x00, 0x0B, 0x08, 0x00, 0x30, 0x00, 0x40, 0x01, 0x01, 0x11, 0x00};
  expect_size(jpg2, sizeof jpg2, 64, 48, __LINE__);
  static const unsigned char jpg_sos[] = {0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x08, 1, 2, 3, 4, 5, 6,
                                          0xFF, 0xC0, 0x00, 0x0B, 0x08, 0, 1, 0, 1, 1, 1, 0x11, 0};
  CHECK(size_fails(jpg_sos, sizeof jpg_sos)); /* a scan before any frame header */
  static const unsigned char jpg_eoi[] = {0xFF, 0xD8, 0xFF, 0xD9};
  CHECK(size_fails(jpg_eoi, sizeof jpg_eoi));
  static const unsigned char jpg_len1[] = {0xFF, 0xD8, 0xFF, 0xE1, 0x00, 0x01, 0xFF, 0xC0};
  CHECK(size_fails(jpg_len1, sizeof jpg_len1)); /* a segment length below 2 */
  static const unsigned char jpg_short[] = {0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x07, 0x08, 0, 1, 0, 1};
  CHECK(size_fails(jpg_short, sizeof jpg_short)); /* a frame header too short to be one */
  static const unsigned char jpg_junk[] = {0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x02, 0x12, 0xFF, 0xC0};
  CHECK(size_fails(jpg_junk, sizeof jpg_junk)); /* no marker where a segment ends */
  static const unsigned char jpg_long[] = {0xFF, 0xD8, 0xFF, 0xE0, 0xFF, 0xFF, 0, 0};
  CHECK(size_fails(jpg_long, sizeof jpg_long)); /* a segment longer than the bytes */

  /* WebP lossy: RIFF, size, WEBP, "VP8 ", chunk size, frame tag, start code, 14-bit sizes */
  static const unsigned char vp8[] = "RIFF\x24\0\0\0WEBPVP8 \x18\0\0\0"
                                     "\x30\x01\x00\x9d\x01\x2a\x80\x02\xe0\x41";
  expect_size(vp8, 30, 640, 480, __LINE__); /* 0x41e0: scale bits 01 above 480 */
  unsigned char vp8bad[30];
  memcpy(vp8bad, vp8, 30);
  vp8bad[23] = 0x9c;
  CHECK(size_fails(vp8bad, 30)); /* no start code */
  memcpy(vp8bad, vp8, 30);
  vp8bad[20] |= 1;
  CHECK(size_fails(vp8bad, 30)); /* an interframe */
  /* WebP lossless: "VP8L", 0x2F, then 14 bits of width - 1, 14 of height - 1, alpha, version */
  unsigned char vp8l[25] = "RIFF\x1a\0\0\0WEBPVP8L\x0d\0\0\0\x2f";
  unsigned bits = (400 - 1) | (300 - 1) << 14 | 1u << 28;
  vp8l[21] = (unsigned char)bits;
  vp8l[22] = (unsigned char)(bits >> 8);
  vp8l[23] = (unsigned char)(bits >> 16);
  vp8l[24] = (unsigned char)(bits >> 24);
  expect_size(vp8l, 25, 400, 300, __LINE__);
  vp8l[24] |= 0x20;
  CHECK(size_fails(vp8l, 25)); /* version 1 */
  vp8l[24] &= 0x1F;
  vp8l[20] = 0x2e;
  CHECK(size_fails(vp8l, 25)); /* no signature */
  /* WebP extended: "VP8X", flags, 3 reserved, 24-bit canvas width - 1, height - 1 */
  static const unsigned char vp8x[] = "RIFF\x24\0\0\0WEBPVP8X\x0a\0\0\0"
                                      "\x10\0\0\0\xff\xff\x00\x0f\x27\x00";
  expect_size(vp8x, 30, 65536, 10000, __LINE__);
  static const unsigned char alph[] = "RIFF\x24\0\0\0WEBPALPH\x0a\0\0\0\0\0\0\0\0\0\0\0\0\0";
  CHECK(size_fails(alph, 30)); /* an unknown first chunk */

  CHECK(size_fails((const unsigned char *)"<html>", 6));
  CHECK(size_fails((const unsigned char *)"", 0));
}

int main(void) {
  test_json_values();
  test_json_errors();
  test_json_depth();
  test_json_locale();
  test_sse();
  test_image_size();
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
