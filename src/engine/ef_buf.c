/*
** ef_buf.c — the growable byte buffer behind response bodies and header blocks.
** Grows geometrically so appending a body in many small callbacks stays linear.
*/
#include <stdlib.h>
#include <string.h>
#include "ef_internal.h"

int ef_buf_append(ef_buf *b, const void *p, size_t n) {
  if (n > (size_t)-1 - b->len - 1)
    return -1;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1)
      cap = cap > ((size_t)-1) / 2 ? b->len + n + 1 : cap * 2;
    char *d = realloc(b->data, cap);
    if (d == NULL)
      return -1;
    b->data = d;
    b->cap = cap;
  }
  if (n)
    memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
  return 0;
}

void ef_buf_reset(ef_buf *b) {
  b->len = 0;
  if (b->data)
    b->data[0] = '\0';
}

void ef_buf_free(ef_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

char *ef_strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = malloc(n);
  if (p)
    memcpy(p, s, n);
  return p;
}
