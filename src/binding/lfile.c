/*
** lfile.c — the editflow.File userdata: a journal kept open for appending
** (core.open_log(path)). Appends go to the page cache at once; making them durable is a
** separate step (loop:sync(file, "data"), run off the loop's thread), so many records share
** one fdatasync. close(), __close and __gc share one idempotent release.
*/
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "lbinding.h"

typedef struct lfile {
  int fd; /* -1 once closed */
} lfile;

static lfile *check_file(lua_State *L, int idx) {
  lfile *f = luaL_checkudata(L, idx, EF_FILE_MT);
  if (f->fd < 0)
    luaL_error(L, "attempt to use a closed file");
  return f;
}

int ef_lua_file_fd(lua_State *L, int idx) { return check_file(L, idx)->fd; }

/* core.open_log(path) -> file | nil, message. Created 0666 less the umask if missing. */
int ef_lua_file_open(lua_State *L) {
  size_t n;
  const char *path = luaL_checklstring(L, 1, &n);
  luaL_argcheck(L, strlen(path) == n, 1, "must not contain a NUL byte"); /* open(2) would cut it */
  lfile *f = lua_newuserdatauv(L, sizeof *f, 1);
  f->fd = -1;
  luaL_setmetatable(L, EF_FILE_MT);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1); /* the path, for messages */
  char err[512];
  f->fd = ef_open_log(path, err, sizeof err);
  if (f->fd < 0) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  return 1;
}

static const char *file_path(lua_State *L, int idx) {
  lua_getiuservalue(L, idx, 1);
  const char *p = lua_tostring(L, -1); /* anchored in the userdata */
  lua_pop(L, 1);
  return p ? p : "?";
}

/* file:append(bytes) -> size after | nil, message, "WRITE" | nil, message, "TORN" (the cut
** back failed too: the file may end in a partial record). Not yet durable: see loop:sync. */
static int file_append(lua_State *L) {
  lfile *f = check_file(L, 1);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  char err[512];
  size_t end = 0;
  int rc = ef_append_fd(f->fd, file_path(L, 1), s, n, &end, err, sizeof err);
  if (rc != 0) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    lua_pushstring(L, rc == -2 ? "TORN" : "WRITE");
    return 3;
  }
  lua_pushinteger(L, (lua_Integer)end);
  return 1;
}

/* file:size() -> bytes now in the file (durable or not). */
static int file_size(lua_State *L) {
  lfile *f = check_file(L, 1);
  struct stat st;
  if (fstat(f->fd, &st) != 0) {
    lua_pushnil(L);
    lua_pushstring(L, strerror(errno));
    return 2;
  }
  lua_pushinteger(L, (lua_Integer)st.st_size);
  return 1;
}

/* file:cut(size) -> true | nil, message: shrinks the file to size bytes and waits until that
** is on disk (what a failed sync leaves in doubt must not outlive it). Never grows it. */
static int file_cut(lua_State *L) {
  lfile *f = check_file(L, 1);
  lua_Integer size = luaL_checkinteger(L, 2);
  luaL_argcheck(L, size >= 0, 2, "must be 0 or more");
  int e = ef_cut_fd(f->fd, (size_t)size); /* EINVAL: it would grow the file */
  if (e != 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "cannot cut %s back: %s", file_path(L, 1), strerror(e));
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* file:sync() -> true | nil, message: fdatasync here, on the caller's thread (for a caller
** that may not wait for the loop's workers). */
static int file_sync(lua_State *L) {
  lfile *f = check_file(L, 1);
  int e = ef_sync_fd(f->fd, 1);
  if (e != 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "cannot write %s: %s", file_path(L, 1), strerror(e));
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int file_close(lua_State *L) {
  lfile *f = luaL_checkudata(L, 1, EF_FILE_MT);
  if (f->fd >= 0) {
    (void)close(f->fd);
    f->fd = -1;
  }
  return 0;
}

static const luaL_Reg meth[] = {
  {"append", file_append}, {"size", file_size}, {"cut", file_cut}, {"sync", file_sync},
  {"close", file_close},
  {NULL, NULL}};

static const luaL_Reg metameth[] = {
  {"__index", NULL}, {"__gc", file_close}, {"__close", file_close}, {NULL, NULL}};

void ef_lua_file_register(lua_State *L) {
  luaL_newmetatable(L, EF_FILE_MT);
  luaL_setfuncs(L, metameth, 0);
  luaL_newlibtable(L, meth);
  luaL_setfuncs(L, meth, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}
