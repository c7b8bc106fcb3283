/*
** ldisk.c — the editflow.DiskOp userdata: disk work handed to the loop's workers (ef_disk.c)
** and reported by loop:step() like a finished transfer, so a task waits on it with the same
** runtime.await. Made by loop:sync(file [, "data"|"full"]), loop:sync_dir(path),
** loop:commit(transfer, path [, "new"]), loop:write(path, bytes [, "new"]) and
** loop:digest(path) (op:digest() then gives the file's SHA-256 and size) and loop:tempfile(dir)
** (a download's temporary file, taken by loop:request{file = op}).
**
** Lifetime: like a transfer, a running op sits in the loop's in-flight set (keyed by its
** engine pointer) until step() reports it. Its first user value is the loop (kept alive
** while the op is), its second the transfer whose file a commit took: when the name was
** taken, step() gives the file back to that transfer before reporting, so save.lua can try
** another name or close the transfer, which then removes the file.
*/
#include <stdio.h>
#include <string.h>
#include "lbinding.h"

typedef struct ldop {
  ef_dop *d; /* NULL once closed */
} ldop;

static ldop *check_op(lua_State *L, int idx) {
  ldop *o = luaL_checkudata(L, idx, EF_DOP_MT);
  if (o->d == NULL)
    luaL_error(L, "attempt to use a closed disk operation");
  return o;
}

static int fail(lua_State *L, const char *msg, const char *code) {
  lua_pushnil(L);
  lua_pushstring(L, msg);
  lua_pushstring(L, code);
  return 3;
}

/* Pushes the op's userdata (which owns d from here on), hands d to the loop at loop_idx and
** adds it to the loop's in-flight set. -> 1 (the op), or 3 (nil, message, "START"). */
static int start(lua_State *L, int loop_idx, ef_loop *l, ef_dop *d, int xfer_idx) {
  if (d == NULL)
    return fail(L, "out of memory (or descriptors) for a disk operation", "START");
  ldop *o = lua_newuserdatauv(L, sizeof *o, 2);
  o->d = d;
  luaL_setmetatable(L, EF_DOP_MT);
  int oi = lua_gettop(L);
  char err[256];
  if (ef_loop_disk(l, d, err, sizeof err) != 0)
    return fail(L, err, "START"); /* the userdata frees d when collected */
  lua_pushvalue(L, loop_idx);
  lua_setiuservalue(L, oi, 1);
  if (xfer_idx) {
    lua_pushvalue(L, xfer_idx);
    lua_setiuservalue(L, oi, 2);
  }
  lua_getiuservalue(L, loop_idx, 1);
  lua_pushvalue(L, oi);
  lua_rawsetp(L, -2, d);
  lua_pop(L, 1);
  return 1;
}

static ef_loop *loop_of(lua_State *L) {
  lloop *lo = luaL_checkudata(L, 1, EF_LOOP_MT);
  if (lo->l == NULL)
    luaL_error(L, "attempt to use a closed loop");
  return lo->l;
}

/* loop:sync(file [, "data"|"full"]) -> op: fdatasync (default) or fsync of a File. */
int ef_lua_disk_sync(lua_State *L) {
  static const char *const kinds[] = {"data", "full", NULL};
  ef_loop *l = loop_of(L);
  int fd = ef_lua_file_fd(L, 2);
  int full = luaL_checkoption(L, 3, "data", kinds) == 1;
  return start(L, 1, l, ef_dop_sync(fd, !full), 0);
}

/* loop:sync_dir(path) -> op: fsync of a folder (the names made in it are then on disk). */
int ef_lua_disk_sync_dir(lua_State *L) {
  ef_loop *l = loop_of(L);
  return start(L, 1, l, ef_dop_sync_dir(luaL_checkstring(L, 2)), 0);
}

/* loop:commit(transfer, path [, "new"]) -> op | nil, message, "FILE_WRITE": a finished
** download's file made permanent at path (fsync, then rename; "new": link, never replacing). */
int ef_lua_disk_commit(lua_State *L) {
  static const char *const modes[] = {"replace", "new", NULL};
  ef_loop *l = loop_of(L);
  lxfer *t = luaL_checkudata(L, 2, EF_XFER_MT);
  if (t->x == NULL)
    return luaL_error(L, "attempt to use a closed transfer");
  const char *path = luaL_checkstring(L, 3);
  int replace = luaL_checkoption(L, 4, "replace", modes) == 0;
  char err[512];
  ef_dop *d = ef_xfer_commit_op(t->x, path, replace, err, sizeof err);
  if (d == NULL)
    return fail(L, err, "FILE_WRITE");
  return start(L, 1, l, d, 2);
}

/* loop:write(path, bytes [, "new"]) -> op: bytes into a new file at path, durably (the
** folder's fsync is the caller's, as for a commit). */
int ef_lua_disk_write(lua_State *L) {
  static const char *const modes[] = {"replace", "new", NULL};
  ef_loop *l = loop_of(L);
  const char *path = luaL_checkstring(L, 2);
  size_t n;
  const char *s = luaL_checklstring(L, 3, &n);
  int replace = luaL_checkoption(L, 4, "replace", modes) == 0;
  return start(L, 1, l, ef_dop_write(path, s, n, replace), 0);
}

/* loop:digest(path) -> op: the file's SHA-256 and size, read on a worker (op:digest()). */
int ef_lua_disk_digest(lua_State *L) {
  ef_loop *l = loop_of(L);
  size_t n;
  const char *path = luaL_checklstring(L, 2, &n);
  luaL_argcheck(L, strlen(path) == n, 2, "must not contain a NUL byte");
  return start(L, 1, l, ef_dop_digest(path), 0);
}

/* loop:tempfile(dir) -> op: a download's temporary file made in dir on a worker, for
** loop:request{file = op}; op:result() says whether it could be made (as request{file = dir}
** would have: "dir: reason"). An op no request took removes its file when closed. */
int ef_lua_disk_tempfile(lua_State *L) {
  ef_loop *l = loop_of(L);
  size_t n;
  const char *dir = luaL_checklstring(L, 2, &n);
  luaL_argcheck(L, strlen(dir) == n, 2, "must not contain a NUL byte");
  return start(L, 1, l, ef_dop_tempfile(dir), 0);
}

/* The engine op of a DiskOp userdata at idx, or NULL when idx holds something else; raises
** for a closed one. */
ef_dop *ef_lua_disk_test(lua_State *L, int idx) {
  ldop *o = luaL_testudata(L, idx, EF_DOP_MT);
  if (o == NULL)
    return NULL;
  return check_op(L, idx)->d;
}

/* Called by loop:step() for each op the engine popped, with the loop's in-flight set at
** set_idx: pushes the op's userdata (or nothing, returning 0, for one no longer held). */
int ef_lua_disk_reported(lua_State *L, int set_idx, ef_dop *d) {
  set_idx = lua_absindex(L, set_idx);
  if (lua_rawgetp(L, set_idx, d) != LUA_TUSERDATA) {
    lua_pop(L, 1);
    return 0;
  }
  lua_pushnil(L);
  lua_rawsetp(L, set_idx, d);
  if (ef_dop_get_kind(d) == EF_DOP_COMMIT && ef_dop_result(d, NULL, 0) == 1) {
    if (lua_getiuservalue(L, -1, 2) == LUA_TUSERDATA) {
      lxfer *t = luaL_testudata(L, -1, EF_XFER_MT);
      if (t && t->x)
        (void)ef_xfer_adopt_temp(t->x, d);
    }
    lua_pop(L, 1);
  }
  return 1;
}

static int op_done(lua_State *L) {
  lua_pushboolean(L, ef_dop_done(check_op(L, 1)->d));
  return 1;
}

/* Pushes an op's outcome: true | nil, message, "EXISTS" | nil, message, "FILE_WRITE". */
static int push_result(lua_State *L, ef_dop *d) {
  char err[512];
  int r = ef_dop_result(d, err, sizeof err);
  if (r == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  return fail(L, err, r == 1 ? "EXISTS" : "FILE_WRITE");
}

/* op:result() -> true | nil, message, "EXISTS" (the name was taken) | nil, message,
** "FILE_WRITE"; raises while the op still runs. */
static int op_result(lua_State *L) {
  ldop *o = check_op(L, 1);
  if (!ef_dop_done(o->d))
    return luaL_error(L, "disk operation still running: wait for it first");
  return push_result(L, o->d);
}

/* op:wait() -> as op:result(), after blocking this thread until the op's worker finished it
** (for a caller that may not wait on the loop). The loop still reports the op afterwards. */
static int op_wait(lua_State *L) {
  ldop *o = check_op(L, 1);
  ef_dop_wait(o->d);
  return push_result(L, o->d);
}

/* op:digest() -> the hex SHA-256 of a digest op's file, its size | nil, message,
** "FILE_WRITE" (the file could not be read); raises while the op still runs, or for an op
** of another kind. */
static int op_digest(lua_State *L) {
  ldop *o = check_op(L, 1);
  if (ef_dop_get_kind(o->d) != EF_DOP_DIGEST)
    return luaL_error(L, "not a digest operation");
  if (!ef_dop_done(o->d))
    return luaL_error(L, "disk operation still running: wait for it first");
  unsigned char sum[32];
  long long size = 0;
  if (ef_dop_digest_of(o->d, sum, &size) != 0)
    return push_result(L, o->d);
  char hex[65];
  for (int i = 0; i < 32; i++)
    snprintf(hex + 2 * i, 3, "%02x", sum[i]);
  lua_pushlstring(L, hex, 64);
  lua_pushinteger(L, (lua_Integer)size);
  return 2;
}

static int op_close(lua_State *L) {
  ldop *o = luaL_checkudata(L, 1, EF_DOP_MT);
  if (o->d) {
    ef_dop_free(o->d); /* a running op finishes on its own, then is freed */
    o->d = NULL;
  }
  return 0;
}

static const luaL_Reg meth[] = {
  {"done", op_done}, {"result", op_result}, {"wait", op_wait}, {"digest", op_digest},
  {"close", op_close},
  {NULL, NULL}};

static const luaL_Reg metameth[] = {
  {"__index", NULL}, {"__gc", op_close}, {"__close", op_close}, {NULL, NULL}};

void ef_lua_disk_register(lua_State *L) {
  luaL_newmetatable(L, EF_DOP_MT);
  luaL_setfuncs(L, metameth, 0);
  luaL_newlibtable(L, meth);
  luaL_setfuncs(L, meth, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}
