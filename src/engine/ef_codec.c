/*
** ef_codec.c — bytes that come from outside: base64 (data: URIs both ways), image-format
** sniffing from magic numbers, and turning any string into a file name that is safe to create.
** Every function here is total over arbitrary input (these are fuzz targets).
*/
#include <string.h>
#include "ef_engine.h"

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t ef_b64_encoded_len(size_t n) { return (n + 2) / 3 * 4; }

void ef_b64_encode(const unsigned char *in, size_t n, char *out) {
  size_t i = 0;
  char *o = out;
  for (; i + 3 <= n; i += 3) {
    unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
    *o++ = B64[v >> 18];
    *o++ = B64[(v >> 12) & 63];
    *o++ = B64[(v >> 6) & 63];
    *o++ = B64[v & 63];
  }
  if (i < n) {
    unsigned v = (unsigned)in[i] << 16 | (i + 1 < n ? (unsigned)in[i + 1] << 8 : 0);
    *o++ = B64[v >> 18];
    *o++ = B64[(v >> 12) & 63];
    *o++ = i + 1 < n ? B64[(v >> 6) & 63] : '=';
    *o++ = '=';
  }
  *o = '\0';
}

static int b64val(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

/*
** Strict standard alphabet; '=' padding is optional but, when present, must end the input.
** out must hold n / 4 * 3 + 3 bytes.
*/
long ef_b64_decode(const char *in, size_t n, unsigned char *out, size_t *bad) {
  unsigned acc = 0;
  int bits = 0;
  size_t o = 0, i, end = n;
  while (end > 0 && in[end - 1] == '=' && n - end < 2)
    end--;
  for (i = 0; i < end; i++) {
    int v = b64val((unsigned char)in[i]);
    if (v < 0) {
      *bad = i;
      return -1;
    }
    acc = (acc << 6) | (unsigned)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (unsigned char)(acc >> bits);
      acc &= (1u << bits) - 1;
    }
  }
  if (bits >= 6 || (end < n && (end + (4 - end % 4) % 4) != n)) {
    *bad = end; /* a lone trailing sextet, or padding that does not square the length */
    return -1;
  }
  return (long)o;
}

const ef_image_kind *ef_sniff_image(const unsigned char *p, size_t n) {
  static const ef_image_kind png = {"png", "image/png"}, jpeg = {"jpg", "image/jpeg"},
                             gif = {"gif", "image/gif"}, webp = {"webp", "image/webp"};
  if (n >= 8 && memcmp(p, "\x89PNG\r\n\x1a\n", 8) == 0)
    return &png;
  if (n >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF)
    return &jpeg;
  if (n >= 6 && (memcmp(p, "GIF87a", 6) == 0 || memcmp(p, "GIF89a", 6) == 0))
    return &gif;
  if (n >= 12 && memcmp(p, "RIFF", 4) == 0 && memcmp(p + 8, "WEBP", 4) == 0)
    return &webp;
  return NULL;
}

unsigned long long ef_fnv1a64(const void *p, size_t n) {
  const unsigned char *b = p;
  unsigned long long h = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < n; i++) {
    h ^= b[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}

static int reserved_stem(const char *s, size_t n) {
  /* Names Windows refuses whatever the extension: CON, PRN, AUX, NUL, COM1-9, LPT1-9. */
  static const char *const names[] = {"con", "prn", "aux", "nul", NULL};
  char low[5];
  size_t i;
  if (n != 3 && n != 4)
    return 0;
  for (i = 0; i < n; i++)
    low[i] = (char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] + 32 : s[i]);
  low[n] = '\0';
  if (n == 3) {
    for (i = 0; names[i]; i++)
      if (strcmp(low, names[i]) == 0)
        return 1;
    return 0;
  }
  return (memcmp(low, "com", 3) == 0 || memcmp(low, "lpt", 3) == 0) && low[3] >= '1' &&
         low[3] <= '9';
}

/*
** Keeps [A-Za-z0-9._-], maps every other byte to '_' (runs folded into one), drops leading
** dots and dashes (no hidden files, no "..", no option look-alikes) and trailing dots and
** spaces, caps the length, and prefixes Windows' reserved device names. Never empty.
*/
void ef_safe_name(const char *in, size_t n, char *out, size_t outlen) {
  size_t o = 0, max = outlen - 1, i, stem;
  if (max > 120)
    max = 120;
  for (i = 0; i < n && o < max; i++) {
    unsigned char c = (unsigned char)in[i];
    int keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '.' || c == '_' || c == '-';
    if (!keep)
      c = '_';
    if ((c == '.' || c == '-') && o == 0)
      continue;
    if (c == '_' && o > 0 && out[o - 1] == '_' && !keep)
      continue;
    out[o++] = (char)c;
  }
  while (o > 0 && out[o - 1] == '.')
    o--;
  out[o] = '\0';
  if (o == 0) {
    out[0] = '_';
    out[1] = '\0';
    return;
  }
  for (stem = 0; stem < o && out[stem] != '.'; stem++)
    ;
  if (reserved_stem(out, stem) && o + 1 < outlen) {
    memmove(out + 1, out, o + 1);
    out[0] = '_';
  }
}
