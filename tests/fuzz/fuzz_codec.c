/*
** fuzz_codec.c — libFuzzer target: the decoders of remote bytes in ef_codec.c. base64 (data:
** URIs from results) must decode within its output bound and round-trip what it accepts;
** image sniffing and dimensions must stay in bounds, and a size is only ever found in bytes
** that sniff as an image, and is never zero; a cleaned file name must never be a path or a special
** name, whatever the server called the file.
*/
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "ef_engine.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* base64 */
  unsigned char *out = malloc(size / 4 * 3 + 3);
  size_t bad = 0;
  long n = ef_b64_decode((const char *)data, size, out, &bad);
  if (n >= 0) {
    if ((size_t)n > size / 4 * 3 + 3)
      abort();
    char *again = malloc(ef_b64_encoded_len((size_t)n) + 1);
    ef_b64_encode(out, (size_t)n, again);
    unsigned char *back = malloc((size_t)n + 3);
    size_t bad2 = 0;
    long m = ef_b64_decode(again, strlen(again), back, &bad2);
    if (m != n || memcmp(back, out, (size_t)n) != 0)
      abort();
    free(back);
    free(again);
  } else if (bad > size) {
    abort();
  }
  free(out);

  /* sniffing and dimensions; the bytes are copied to an exact-size block so that ASan sees
  ** any read past the end (libFuzzer's own buffer is exact too, but not every driver's) */
  const ef_image_kind *kind = ef_sniff_image(data, size);
  unsigned char *img = malloc(size ? size : 1);
  memcpy(img, data, size);
  uint32_t w = 0, h = 0;
  if (ef_image_size(img, size, &w, &h) == 0 && (kind == NULL || w == 0 || h == 0))
    abort();
  free(img);

  /* file names */
  char name[128];
  ef_safe_name((const char *)data, size, name, sizeof name);
  size_t len = strlen(name);
  if (len == 0 || len > 121 || strchr(name, '/') || strchr(name, '\\') || name[0] == '.' ||
      strcmp(name, "..") == 0)
    abort();
  for (size_t i = 0; i < len; i++) {
    char c = name[i];
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '.' || c == '_' || c == '-';
    if (!ok)
      abort();
  }
  return 0;
}
