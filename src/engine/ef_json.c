/*
** ef_json.c — the JSON pull parser of ef_json.h. One state variable says what may come next;
** containers are remembered as one bit per level, so the reader neither recurses nor
** allocates, and each call does bounded work beyond the bytes it consumes (every byte is
** looked at a fixed number of times: strings once to find their end, and once more by
** ef_json_unescape if they hold escapes). Numbers are converted without the C library's
** locale-dependent decimal point: see to_double.
*/
#include <float.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ef_json.h"

enum {
  S_VALUE,        /* a value must come: the start, after ':' or after ',' in an array */
  S_ARRAY_FIRST,  /* after '[': a value or ']' */
  S_OBJECT_FIRST, /* after '{': a key or '}' */
  S_KEY,          /* after ',' in an object: a key */
  S_COLON,        /* after a key: ':' and then a value */
  S_AFTER,        /* after a value: ',' or the closing bracket, or the end of input */
  S_DONE,
  S_FAILED
};

void ef_json_init(ef_json *j, const char *p, size_t n, int max_depth) {
  memset(j, 0, sizeof *j);
  j->p = p;
  j->n = n;
  j->max_depth = max_depth < 1 ? 1 : max_depth > EF_JSON_MAX_DEPTH ? EF_JSON_MAX_DEPTH : max_depth;
  j->state = S_VALUE;
  if (n >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
    j->at = 3; /* a byte order mark: tolerated, never required */
}

static ef_json_type fail_at(ef_json *j, size_t at, const char *what) {
  snprintf(j->err, sizeof j->err, "%s at byte %zu", what, at);
  j->err_at = at;
  j->state = S_FAILED;
  return EF_JSON_ERROR;
}

/* At j->at: the end of input if that is where we are, else what was expected. */
static ef_json_type fail_expected(ef_json *j, const char *what) {
  return fail_at(j, j->at, j->at >= j->n ? "unexpected end of input" : what);
}

static int in_array(const ef_json *j) {
  int d = j->depth - 1;
  return (j->arrays[d >> 3] >> (d & 7)) & 1;
}

static void skip_space(ef_json *j) {
  const char *p = j->p;
  size_t i = j->at, n = j->n;
  while (i < n && (p[i] == ' ' || p[i] == '\n' || p[i] == '\r' || p[i] == '\t'))
    i++;
  j->at = i;
}

static int hexval(unsigned char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/*
** Whether any of 8 bytes ends a run of plain string bytes: '"', '\\' or a control byte. The
** usual "has a zero byte" trick, exact for "any" (a borrow only spreads above a true hit), so
** long strings (data: URIs) are crossed a word at a time.
*/
static int special8(uint64_t v) {
  const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
  uint64_t q = v ^ (ones * '"'), b = v ^ (ones * '\\');
  return (((q - ones) & ~q) | ((b - ones) & ~b) | ((v - ones * 0x20) & ~v)) & highs ? 1 : 0;
}

/*
** Finds the end of the string whose opening quote is at j->at and checks every escape in it,
** so that ef_json_unescape cannot fail later. The raw bytes go to ev.
*/
static ef_json_type read_string(ef_json *j, ef_json_event *ev, ef_json_type type) {
  const unsigned char *p = (const unsigned char *)j->p;
  size_t open = j->at, i = open + 1, n = j->n;
  int escaped = 0;
  for (;;) {
    uint64_t v;
    while (n - i >= 8 && (memcpy(&v, p + i, 8), !special8(v)))
      i += 8;
    while (i < n && p[i] >= 0x20 && p[i] != '"' && p[i] != '\\') /* bytes that are themselves */
      i++;
    if (i >= n)
      return fail_at(j, open, "unterminated string starting");
    if (p[i] == '"')
      break;
    if (p[i] < 0x20)
      return fail_at(j, i, "control character in a string");
    escaped = 1; /* a backslash */
    if (i + 1 >= n)
      return fail_at(j, open, "unterminated string starting");
    switch (p[i + 1]) {
    case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
      i += 2;
      break;
    case 'u':
      for (size_t k = i + 2; k < i + 6; k++) {
        if (k >= n)
          return fail_at(j, open, "unterminated string starting");
        if (hexval(p[k]) < 0)
          return fail_at(j, i, "invalid \\u escape");
      }
      i += 6;
      break;
    default:
      return fail_at(j, i, "invalid escape");
    }
  }
  ev->type = type;
  ev->s = (const char *)p + open + 1;
  ev->len = i - open - 1;
  ev->escaped = escaped;
  j->at = i + 1;
  return type;
}

static unsigned hex4(const unsigned char *s) {
  return (unsigned)(hexval(s[0]) << 12 | hexval(s[1]) << 8 | hexval(s[2]) << 4 | hexval(s[3]));
}

static size_t put_utf8(char *o, unsigned cp) {
  if (cp < 0x80) {
    o[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (char)(0xC0 | cp >> 6);
    o[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (char)(0xE0 | cp >> 12);
    o[1] = (char)(0x80 | (cp >> 6 & 0x3F));
    o[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (char)(0xF0 | cp >> 18);
  o[1] = (char)(0x80 | (cp >> 12 & 0x3F));
  o[2] = (char)(0x80 | (cp >> 6 & 0x3F));
  o[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/*
** Input checked by read_string. Every escape shrinks or keeps its size: a two-byte escape
** gives one byte, \uXXXX (six) at most three, a surrogate pair (twelve) four.
*/
size_t ef_json_unescape(const char *s, size_t len, char *out) {
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0, o = 0;
  while (i < len) {
    size_t start = i;
    while (i < len && p[i] != '\\')
      i++;
    memcpy(out + o, p + start, i - start);
    o += i - start;
    if (i >= len)
      break;
    unsigned char c = p[i + 1];
    i += 2;
    switch (c) {
    case 'b': out[o++] = '\b'; break;
    case 'f': out[o++] = '\f'; break;
    case 'n': out[o++] = '\n'; break;
    case 'r': out[o++] = '\r'; break;
    case 't': out[o++] = '\t'; break;
    case 'u': {
      unsigned cp = hex4(p + i);
      i += 4;
      if (cp >= 0xD800 && cp <= 0xDBFF && i + 6 <= len && p[i] == '\\' && p[i + 1] == 'u') {
        unsigned lo = hex4(p + i + 2);
        if (lo >= 0xDC00 && lo <= 0xDFFF) {
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          i += 6;
        }
      }
      o += put_utf8(out + o, cp); /* an unpaired surrogate keeps its own 3-byte form */
      break;
    }
    default: out[o++] = (char)c; break; /* '"', '\\', '/' */
    }
  }
  return o;
}

/*
** Decimal to double, correctly rounded, without strtod's locale: the significant digits are
** collected (leading zeros dropped, the rest counted into the exponent) and handed to strtod
** as "DIGITSeEXP", which has no decimal point for a locale to get wrong. Past MAXDIG digits
** the rest only matter as "was anything non-zero": one sticky '1' stands for them, which
** keeps the rounding exact (no double needs more than 767 digits to decide it). Small cases
** (at most 15 digits, exponent within +-22) take Clinger's exact fast path.
** Returns 0, or -1 when the magnitude is beyond DBL_MAX.
*/
#define MAXDIG 800

static int to_double(const char *s, size_t n, double *out) {
  static const double p10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                               1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                               1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
  char dig[MAXDIG + 2 + 1 + 24];
  size_t i = 0, nd = 0;
  long long e = 0;
  int neg = 0, sticky = 0, frac = 0;
  if (s[i] == '-') {
    neg = 1;
    i++;
  }
  for (; i < n; i++) {
    char c = s[i];
    if (c == '.') {
      frac = 1;
      continue;
    }
    if (c == 'e' || c == 'E')
      break;
    if (nd == 0 && c == '0') {
      e -= frac; /* 0.001: each zero after the point moves the first digit right */
      continue;
    }
    if (nd < MAXDIG) {
      dig[nd++] = c;
      e -= frac;
    } else {
      sticky |= c != '0';
      e += !frac; /* a dropped integer digit still counts a power of ten */
    }
  }
  if (i < n) { /* the exponent, saturated: beyond a billion the answer is 0 or too large */
    long long x = 0;
    int eneg = 0;
    i++;
    if (s[i] == '+' || s[i] == '-')
      eneg = s[i++] == '-';
    for (; i < n; i++)
      if (x < 1000000000)
        x = x * 10 + (s[i] - '0');
    e += eneg ? -x : x;
  }
  if (nd == 0) {
    *out = neg ? -0.0 : 0.0;
    return 0;
  }
  if (sticky) {
    dig[nd++] = '1';
    e -= 1;
  } else {
    while (dig[nd - 1] == '0') { /* 1.50 and 2500 are 15e-1 and 25e2: more reach the fast path */
      nd--;
      e++;
    }
  }
  /* value = DIGITS * 10^e, in [10^(nd-1+e), 10^(nd+e)) */
  if ((long long)nd + e > 310)
    return -1;
  if ((long long)nd + e < -324) { /* below half the smallest subnormal: rounds to zero */
    *out = neg ? -0.0 : 0.0;
    return 0;
  }
#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD == 0
  if (nd <= 15 && e >= -22 && e <= 22) {
    double m = 0;
    for (size_t k = 0; k < nd; k++)
      m = m * 10 + (dig[k] - '0'); /* exact: below 10^15 < 2^53 */
    m = e >= 0 ? m * p10[e] : m / p10[-e];
    *out = neg ? -m : m;
    return 0;
  }
#else
  (void)p10;
#endif
  size_t k = nd;
  long long ue = e < 0 ? -e : e;
  char tmp[24];
  size_t t = 0;
  dig[k++] = 'e';
  if (e < 0)
    dig[k++] = '-';
  do {
    tmp[t++] = (char)('0' + ue % 10);
    ue /= 10;
  } while (ue > 0);
  while (t > 0)
    dig[k++] = tmp[--t];
  dig[k] = '\0';
  double d = strtod(dig, NULL);
  if (d > DBL_MAX)
    return -1;
  *out = neg ? -d : d;
  return 0;
}

static int is_digit(const char *p, size_t i, size_t n) { return i < n && p[i] >= '0' && p[i] <= '9'; }

/*
** -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? at j->at. Without a fraction or an
** exponent and within int64 it is an integer, read from its digits; else a double.
*/
static ef_json_type read_number(ef_json *j, ef_json_event *ev) {
  const char *p = j->p;
  size_t start = j->at, i = start, n = j->n, int_end;
  int neg = 0, integral = 1;
  if (p[i] == '-') {
    neg = 1;
    i++;
  }
  if (i >= n)
    return fail_at(j, i, "unexpected end of input");
  if (p[i] == '0') {
    i++;
    if (is_digit(p, i, n))
      return fail_at(j, start, "leading zero in a number");
  } else if (p[i] >= '1' && p[i] <= '9') {
    while (is_digit(p, i, n))
      i++;
  } else {
    return fail_at(j, i, "invalid number");
  }
  int_end = i;
  if (i < n && p[i] == '.') {
    integral = 0;
    i++;
    if (!is_digit(p, i, n))
      return fail_at(j, i, i >= n ? "unexpected end of input" : "invalid number");
    while (is_digit(p, i, n))
      i++;
  }
  if (i < n && (p[i] == 'e' || p[i] == 'E')) {
    integral = 0;
    i++;
    if (i < n && (p[i] == '+' || p[i] == '-'))
      i++;
    if (!is_digit(p, i, n))
      return fail_at(j, i, i >= n ? "unexpected end of input" : "invalid number");
    while (is_digit(p, i, n))
      i++;
  }
  ev->s = p + start;
  ev->len = i - start;
  j->at = i;
  if (integral) {
    unsigned long long limit = neg ? (unsigned long long)LLONG_MAX + 1 : (unsigned long long)LLONG_MAX;
    unsigned long long u = 0;
    size_t k = start + (size_t)neg;
    for (; k < int_end; k++) {
      unsigned d = (unsigned)(p[k] - '0');
      if (u > (limit - d) / 10)
        break;
      u = u * 10 + d;
    }
    if (k == int_end) {
      ev->type = EF_JSON_INTEGER;
      ev->i = !neg ? (long long)u : u == limit ? LLONG_MIN : -(long long)u;
      return EF_JSON_INTEGER;
    }
  }
  if (to_double(p + start, i - start, &ev->d) != 0)
    return fail_at(j, start, "number out of range");
  ev->type = EF_JSON_NUMBER;
  return EF_JSON_NUMBER;
}

static ef_json_type read_literal(ef_json *j, ef_json_event *ev, const char *word, size_t len,
                                 ef_json_type type) {
  size_t left = j->n - j->at;
  if (memcmp(j->p + j->at, word, left < len ? left : len) != 0)
    return fail_at(j, j->at, "invalid literal");
  if (left < len)
    return fail_at(j, j->n, "unexpected end of input");
  j->at += len;
  ev->type = type;
  return type;
}

static ef_json_type open_container(ef_json *j, ef_json_event *ev, int array) {
  if (j->depth >= j->max_depth) {
    char what[48];
    snprintf(what, sizeof what, "nesting deeper than %d", j->max_depth);
    return fail_at(j, j->at, what);
  }
  int d = j->depth++;
  if (array)
    j->arrays[d >> 3] |= (unsigned char)(1u << (d & 7));
  else
    j->arrays[d >> 3] &= (unsigned char)~(1u << (d & 7));
  j->at++;
  j->state = array ? S_ARRAY_FIRST : S_OBJECT_FIRST;
  ev->type = array ? EF_JSON_ARRAY : EF_JSON_OBJECT;
  return ev->type;
}

static ef_json_type close_container(ef_json *j, ef_json_event *ev, int array) {
  j->depth--;
  j->at++;
  j->state = S_AFTER;
  ev->type = array ? EF_JSON_ARRAY_END : EF_JSON_OBJECT_END;
  return ev->type;
}

static ef_json_type read_value(ef_json *j, ef_json_event *ev) {
  if (j->at >= j->n)
    return fail_at(j, j->at, "unexpected end of input");
  j->state = S_AFTER; /* what follows any scalar; containers set their own */
  switch (j->p[j->at]) {
  case '{': return open_container(j, ev, 0);
  case '[': return open_container(j, ev, 1);
  case '"': return read_string(j, ev, EF_JSON_STRING);
  case 't': return read_literal(j, ev, "true", 4, EF_JSON_TRUE);
  case 'f': return read_literal(j, ev, "false", 5, EF_JSON_FALSE);
  case 'n': return read_literal(j, ev, "null", 4, EF_JSON_NULL);
  case '-': case '0': case '1': case '2': case '3': case '4':
  case '5': case '6': case '7': case '8': case '9':
    return read_number(j, ev);
  default: return fail_at(j, j->at, "expected a value");
  }
}

ef_json_type ef_json_next(ef_json *j, ef_json_event *ev) {
  memset(ev, 0, sizeof *ev);
  for (;;) {
    skip_space(j);
    int c = j->at < j->n ? (unsigned char)j->p[j->at] : -1;
    switch (j->state) {
    case S_DONE:
      return ev->type = EF_JSON_END;
    case S_FAILED:
      return ev->type = EF_JSON_ERROR;
    case S_AFTER:
      if (j->depth == 0) {
        if (c >= 0)
          return fail_at(j, j->at, "unexpected data after the value");
        j->state = S_DONE;
        return ev->type = EF_JSON_END;
      }
      if (c == ',') {
        j->at++;
        j->state = in_array(j) ? S_VALUE : S_KEY;
        continue;
      }
      if (c == (in_array(j) ? ']' : '}'))
        return close_container(j, ev, in_array(j));
      return fail_expected(j, in_array(j) ? "expected ',' or ']'" : "expected ',' or '}'");
    case S_OBJECT_FIRST:
      if (c == '}')
        return close_container(j, ev, 0);
      if (c != '"')
        return fail_expected(j, "expected a string key or '}'");
      j->state = S_COLON;
      return read_string(j, ev, EF_JSON_KEY);
    case S_KEY:
      if (c != '"')
        return fail_expected(j, "expected a string key");
      j->state = S_COLON;
      return read_string(j, ev, EF_JSON_KEY);
    case S_COLON:
      if (c != ':')
        return fail_expected(j, "expected ':'");
      j->at++;
      j->state = S_VALUE;
      continue;
    case S_ARRAY_FIRST:
      if (c == ']')
        return close_container(j, ev, 1);
      return read_value(j, ev);
    default: /* S_VALUE */
      return read_value(j, ev);
    }
  }
}
