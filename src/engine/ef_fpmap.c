/*
** ef_fpmap.c — a map from 64-bit fingerprints to small counts, for the journal's memory of
** every request id and body a long run has seen (a Lua table costs about 40 bytes an entry
** there; this costs 12 bytes a slot, at most 4/5 full).
**
** Open addressing with linear probing over two parallel arrays (keys, values). Key 0 marks an
** empty slot, so the fingerprint 0 is kept aside. The slot is the top bits of the key times
** 2^64/phi (Fibonacci hashing): every bit of the key moves them, so keys that differ only in
** their high bits (made on purpose: FNV-1a is no defence) do not pile into one run.
** Nothing is ever removed: a fingerprint seen stays seen.
*/
#include <stdlib.h>
#include "ef_engine.h"

struct ef_fpmap {
  uint64_t *keys;
  uint32_t *vals;
  size_t cap; /* a power of two, or 0 before the first set */
  int shift;  /* 64 - log2(cap): the product's top log2(cap) bits pick the slot */
  size_t count;
  int has_zero;
  uint32_t zero_val;
};

ef_fpmap *ef_fpmap_new(void) { return calloc(1, sizeof(ef_fpmap)); }

void ef_fpmap_free(ef_fpmap *m) {
  if (m) {
    free(m->keys);
    free(m->vals);
    free(m);
  }
}

static size_t slot(const ef_fpmap *m, uint64_t key) {
  return (size_t)((key * 0x9E3779B97F4A7C15ULL) >> m->shift);
}

static size_t find(const ef_fpmap *m, uint64_t key) {
  size_t i = slot(m, key);
  while (m->keys[i] != 0 && m->keys[i] != key)
    i = (i + 1) & (m->cap - 1);
  return i;
}

int ef_fpmap_get(const ef_fpmap *m, uint64_t key, uint32_t *val) {
  if (key == 0) {
    if (m->has_zero && val)
      *val = m->zero_val;
    return m->has_zero;
  }
  if (m->cap == 0)
    return 0;
  size_t i = find(m, key);
  if (m->keys[i] == 0)
    return 0;
  if (val)
    *val = m->vals[i];
  return 1;
}

static int grow(ef_fpmap *m) {
  size_t cap = m->cap ? m->cap * 2 : 64;
  if (cap < m->cap)
    return -1;
  int shift = m->cap ? m->shift - 1 : 64 - 6; /* 64 - log2(cap) */
  ef_fpmap bigger = {calloc(cap, sizeof(uint64_t)), malloc(cap * sizeof(uint32_t)), cap, shift, 0, 0, 0};
  if (bigger.keys == NULL || bigger.vals == NULL) {
    free(bigger.keys);
    free(bigger.vals);
    return -1;
  }
  for (size_t i = 0; i < m->cap; i++) {
    if (m->keys[i] != 0) {
      size_t j = find(&bigger, m->keys[i]);
      bigger.keys[j] = m->keys[i];
      bigger.vals[j] = m->vals[i];
    }
  }
  free(m->keys);
  free(m->vals);
  m->keys = bigger.keys;
  m->vals = bigger.vals;
  m->cap = cap;
  m->shift = shift;
  return 0;
}

int ef_fpmap_set(ef_fpmap *m, uint64_t key, uint32_t val) {
  if (key == 0) {
    m->count += !m->has_zero;
    m->has_zero = 1;
    m->zero_val = val;
    return 0;
  }
  size_t i = m->cap ? find(m, key) : 0;
  if (m->cap && m->keys[i] == key) {
    m->vals[i] = val;
    return 0;
  }
  /* a new key that would make it over 4/5 full: twice the slots first */
  if (m->cap == 0 || (m->count + 1) * 5 > m->cap * 4) {
    if (grow(m) != 0)
      return -1;
    i = find(m, key);
  }
  m->keys[i] = key;
  m->vals[i] = val;
  m->count++;
  return 0;
}

size_t ef_fpmap_count(const ef_fpmap *m) { return m->count; }

size_t ef_fpmap_bytes(const ef_fpmap *m) {
  return sizeof *m + m->cap * (sizeof(uint64_t) + sizeof(uint32_t));
}
