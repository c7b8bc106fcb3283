/*
** lfpmap.c — the editflow.FpMap userdata (core.fpmap()): a 64-bit fingerprint (a
** core.hash64 integer) to a count from 0 to 2^32-1, in 12 bytes a slot (ef_fpmap.c), for what
** a long run must remember of every job: the request ids it was given and the bodies it sent.
**   m:get(h) -> count | nil     m:set(h, count)     m:count() -> entries
*/
#include "lbinding.h"

typedef struct lfpmap {
  ef_fpmap *m;
} lfpmap;

static ef_fpmap *check_map(lua_State *L) {
  ef_fpmap *m = ((lfpmap *)luaL_checkudata(L, 1, EF_FPMAP_MT))->m;
  luaL_argcheck(L, m != NULL, 1, "fingerprint map already freed");
  return m;
}

/* core.fpmap() -> an empty map */
int ef_lua_fpmap_new(lua_State *L) {
  lfpmap *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->m = NULL;
  luaL_setmetatable(L, EF_FPMAP_MT);
  if ((u->m = ef_fpmap_new()) == NULL)
    return luaL_error(L, "not enough memory");
  return 1;
}

static int fpmap_get(lua_State *L) {
  ef_fpmap *m = check_map(L);
  uint32_t v;
  if (ef_fpmap_get(m, (uint64_t)luaL_checkinteger(L, 2), &v))
    lua_pushinteger(L, (lua_Integer)v);
  else
    lua_pushnil(L);
  return 1;
}

static int fpmap_set(lua_State *L) {
  ef_fpmap *m = check_map(L);
  lua_Integer h = luaL_checkinteger(L, 2), v = luaL_checkinteger(L, 3);
  luaL_argcheck(L, v >= 0 && v <= (lua_Integer)UINT32_MAX, 3, "a count from 0 to 2^32-1");
  if (ef_fpmap_set(m, (uint64_t)h, (uint32_t)v) != 0)
    return luaL_error(L, "not enough memory");
  return 0;
}

static int fpmap_count(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)ef_fpmap_count(check_map(L)));
  return 1;
}

static int fpmap_gc(lua_State *L) {
  lfpmap *u = luaL_checkudata(L, 1, EF_FPMAP_MT);
  ef_fpmap_free(u->m);
  u->m = NULL;
  return 0;
}

void ef_lua_fpmap_register(lua_State *L) {
  static const luaL_Reg meth[] = {{"get", fpmap_get}, {"set", fpmap_set}, {"count", fpmap_count},
                                  {NULL, NULL}};
  luaL_newmetatable(L, EF_FPMAP_MT);
  lua_pushcfunction(L, fpmap_gc);
  lua_setfield(L, -2, "__gc");
  luaL_newlib(L, meth);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}
