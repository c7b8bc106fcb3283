/*
** fuzz_sse.c — libFuzzer target: the event-stream parser over arbitrary bytes, fed in pieces
** whose boundaries the input chooses (a CR here, its LF in the next piece). Checks that every
** event respects the limit and that feeding never crashes or reads out of bounds.
*/
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include "ef_engine.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int check_event(void *ud, const char *d, size_t n) {
  size_t max = *(size_t *)ud;
  if (n > max)
    abort();
  volatile char sink = 0;
  for (size_t i = 0; i < n; i++)
    sink ^= d[i];
  (void)sink;
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ef_sse p;
  size_t max = 64;
  if (size < 1)
    return 0;
  size_t step = (size_t)data[0] % 17 + 1; /* piece size chosen by the input */
  ef_sse_init(&p, max);
  for (size_t off = 1; off < size; off += step) {
    size_t n = size - off < step ? size - off : step;
    if (ef_sse_feed(&p, (const char *)data + off, n, check_event, &max) != 0)
      break;
  }
  ef_sse_free(&p);
  return 0;
}
