/*
** embedded_lua.h — the Lua half of editflow compiled into the host (see cmake/embed_lua.cmake).
*/
#ifndef EMBEDDED_LUA_H
#define EMBEDDED_LUA_H
#include <stddef.h>

typedef struct ef_embedded {
  const char *name;      /* module name for require */
  const char *chunkname; /* "@lua/editflow/x.lua", for tracebacks */
  const unsigned char *data;
  size_t len;
} ef_embedded;

extern const ef_embedded ef_embedded_lua[];
#endif
