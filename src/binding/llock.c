/*
** llock.c — the editflow.Lock userdata: one folder's exclusive lock (core.lock(path)).
**
** The engine takes it with flock (ef_fs.c), so the kernel drops it when the process dies and
** a crash leaves nothing stale. The userdata owns the descriptor that holds it: close(),
** __close and __gc share one idempotent release, so `local lk <close> = core.lock(p)` works.
*/
#include "lbinding.h"

typedef struct llock {
  int fd; /* -1 once closed (or before the lock was taken) */
} llock;

/*
** core.lock(path) -> lock | nil, message, "LOCKED", pid | nil, message, "LOCK_ERROR".
** The userdata exists, closed, before the lock is taken, so no error can leave a held
** descriptor without an owner.
*/
int ef_lua_lock_new(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  llock *k = lua_newuserdatauv(L, sizeof *k, 0);
  k->fd = -1;
  luaL_setmetatable(L, EF_LOCK_MT);
  char err[512];
  long holder = 0;
  int fd = ef_lock(path, err, sizeof err, &holder);
  if (fd >= 0) {
    k->fd = fd;
    return 1;
  }
  lua_pushnil(L);
  lua_pushstring(L, err);
  if (fd != EF_LOCKED) {
    lua_pushliteral(L, "LOCK_ERROR");
    return 3;
  }
  lua_pushliteral(L, "LOCKED");
  if (holder > 0)
    lua_pushinteger(L, (lua_Integer)holder);
  else
    lua_pushnil(L);
  return 4;
}

static int lock_close(lua_State *L) {
  llock *k = luaL_checkudata(L, 1, EF_LOCK_MT);
  if (k->fd >= 0) {
    ef_unlock(k->fd);
    k->fd = -1;
  }
  return 0;
}

/* lock:held() -> true until closed. */
static int lock_held(lua_State *L) {
  llock *k = luaL_checkudata(L, 1, EF_LOCK_MT);
  lua_pushboolean(L, k->fd >= 0);
  return 1;
}

static int lock_tostring(lua_State *L) {
  llock *k = luaL_checkudata(L, 1, EF_LOCK_MT);
  lua_pushfstring(L, "editflow.Lock (%p%s)", (void *)k, k->fd >= 0 ? "" : ", closed");
  return 1;
}

static const luaL_Reg meth[] = {{"close", lock_close}, {"held", lock_held}, {NULL, NULL}};

static const luaL_Reg metameth[] = {
  {"__index", NULL}, {"__gc", lock_close}, {"__close", lock_close},
  {"__tostring", lock_tostring}, {NULL, NULL}};

void ef_lua_lock_register(lua_State *L) {
  luaL_newmetatable(L, EF_LOCK_MT);
  luaL_setfuncs(L, metameth, 0);
  luaL_newlibtable(L, meth);
  luaL_setfuncs(L, meth, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}
