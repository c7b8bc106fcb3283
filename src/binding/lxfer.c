/*
** lxfer.c — the editflow.Transfer userdata: one request's outcome as Lua values.
**
** A transfer is created by loop:request() (lloop.c), which also keeps it reachable while it
** runs. Its single user value is the loop it belongs to. close(), __close and __gc share one
** idempotent release; releasing a running transfer aborts it (the engine detaches it).
*/
#include <string.h>
#include "lbinding.h"

lxfer *ef_lua_xfer_push(lua_State *L) {
  lxfer *t = lua_newuserdatauv(L, sizeof *t, 1);
  t->x = NULL; /* valid "closed" state before anything is acquired */
  luaL_setmetatable(L, EF_XFER_MT);
  return t;
}

static lxfer *check_xfer(lua_State *L) {
  lxfer *t = luaL_checkudata(L, 1, EF_XFER_MT);
  if (t->x == NULL)
    luaL_error(L, "attempt to use a closed transfer");
  return t;
}

/* Stops the transfer if it still runs and removes it from its loop's in-flight set. */
static void stop_running(lua_State *L, lxfer *t) {
  if (ef_xfer_get_state(t->x) != EF_XFER_RUNNING)
    return;
  if (lua_getiuservalue(L, 1, 1) == LUA_TUSERDATA) {
    lloop *lo = luaL_testudata(L, -1, EF_LOOP_MT);
    if (lo && lo->l) {
      ef_loop_abort(lo->l, t->x);
      ef_lua_loop_forget(L, lua_gettop(L), t->x);
    }
  }
  lua_pop(L, 1);
}

static int xfer_close(lua_State *L) {
  lxfer *t = luaL_checkudata(L, 1, EF_XFER_MT);
  if (t->x) {
    stop_running(L, t);
    ef_xfer_free(t->x);
    t->x = NULL;
  }
  return 0;
}

/* __gc runs only once nothing (no loop's in-flight set either) reaches the transfer. */
static int xfer_gc(lua_State *L) {
  lxfer *t = luaL_checkudata(L, 1, EF_XFER_MT);
  ef_xfer_free(t->x);
  t->x = NULL;
  return 0;
}

static int xfer_abort(lua_State *L) {
  lxfer *t = check_xfer(L);
  stop_running(L, t);
  return 0;
}

static int xfer_state(lua_State *L) {
  static const char *const names[] = {"new", "running", "done"};
  lxfer *t = check_xfer(L);
  lua_pushstring(L, names[ef_xfer_get_state(t->x)]);
  return 1;
}

static int xfer_done(lua_State *L) {
  lxfer *t = check_xfer(L);
  lua_pushboolean(L, ef_xfer_get_state(t->x) == EF_XFER_DONE);
  return 1;
}

/*
** Header lines of the final response into a table: names lower-cased, repeated fields joined
** with ", " (RFC 9110 §5.3). The status line and malformed lines are skipped.
*/
static void push_headers(lua_State *L, const ef_buf *h) {
  lua_newtable(L);
  if (h->data == NULL)
    return;
  const char *p = h->data, *end = h->data + h->len;
  const char *nl = memchr(p, '\n', (size_t)(end - p));
  p = nl ? nl + 1 : end;
  while (p < end) {
    nl = memchr(p, '\n', (size_t)(end - p));
    const char *le = nl ? nl : end;
    const char *colon = memchr(p, ':', (size_t)(le - p));
    if (colon && colon > p && colon - p < 128) {
      char name[128];
      size_t n = (size_t)(colon - p);
      for (size_t i = 0; i < n; i++)
        name[i] = (char)((p[i] >= 'A' && p[i] <= 'Z') ? p[i] + 32 : p[i]);
      const char *v = colon + 1, *ve = le;
      while (v < ve && (*v == ' ' || *v == '\t'))
        v++;
      while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
        ve--;
      lua_pushlstring(L, name, n);
      if (lua_rawget(L, -2) == LUA_TSTRING) {
        lua_pushliteral(L, ", ");
        lua_pushlstring(L, v, (size_t)(ve - v));
        lua_concat(L, 3);
      } else {
        lua_pop(L, 1);
        lua_pushlstring(L, v, (size_t)(ve - v));
      }
      lua_pushlstring(L, name, n);
      lua_insert(L, -2);
      lua_rawset(L, -3);
    }
    p = nl ? nl + 1 : end;
  }
}

/* t:headers() -> the final response's headers (a table; names lower-cased). */
static int xfer_headers(lua_State *L) {
  lxfer *t = check_xfer(L);
  push_headers(L, ef_xfer_headers(t->x));
  return 1;
}

/*
** The outcome. Transport failure: nil, message, code (a stable string such as
** "COULDNT_CONNECT"). Otherwise a table: status, body (memory sink), size, seconds, head
** (first bytes of the body) and, for a file sink not yet committed, file (its temp path).
** Headers are not parsed unless asked for (t:headers()): most answers never need them.
** Any HTTP status is a successful transport; judging it is policy.
*/
static int xfer_response(lua_State *L) {
  lxfer *t = check_xfer(L);
  ef_xfer *x = t->x;
  if (ef_xfer_get_state(x) != EF_XFER_DONE)
    return luaL_error(L, "transfer has not finished");
  const char *err = ef_xfer_error(x);
  if (err) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    lua_pushstring(L, ef_xfer_code(x));
    return 3;
  }
  size_t hn;
  const unsigned char *head = ef_xfer_head(x, &hn);
  const ef_buf *body = ef_xfer_body(x);
  lua_createtable(L, 0, 8);
  lua_pushinteger(L, ef_xfer_status(x));
  lua_setfield(L, -2, "status");
  lua_pushlstring(L, body->data ? body->data : "", body->len);
  lua_setfield(L, -2, "body");
  lua_pushinteger(L, (lua_Integer)ef_xfer_size(x));
  lua_setfield(L, -2, "size");
  lua_pushnumber(L, ef_xfer_seconds(x));
  lua_setfield(L, -2, "seconds");
  lua_pushlstring(L, (const char *)head, hn);
  lua_setfield(L, -2, "head");
  if (ef_xfer_temp_path(x)) {
    lua_pushstring(L, ef_xfer_temp_path(x));
    lua_setfield(L, -2, "file");
  }
  return 1;
}

/* t:events() -> array of the events' data received since the last call (sse transfers). */
static int xfer_events(lua_State *L) {
  lxfer *t = check_xfer(L);
  const ef_buf *b = ef_xfer_events(t->x);
  lua_createtable(L, 0, 0);
  lua_Integer n = 0;
  size_t off = 0;
  while (b->data && off + 4 <= b->len) {
    const unsigned char *h = (const unsigned char *)b->data + off;
    size_t len = (size_t)h[0] | (size_t)h[1] << 8 | (size_t)h[2] << 16 | (size_t)h[3] << 24;
    if (off + 4 + len > b->len)
      break;
    lua_pushlstring(L, b->data + off + 4, len);
    lua_rawseti(L, -2, ++n);
    off += 4 + len;
  }
  ef_xfer_clear_events(t->x);
  return 1;
}

/*
** t:sent() -> bytes of the request body that may have left this process: for a once request,
** those handed to libcurl so far; otherwise libcurl's count, known once the transfer ended.
** 0 means the server cannot have the body, so sending it again cannot make a duplicate.
*/
static int xfer_sent(lua_State *L) {
  lxfer *t = check_xfer(L);
  lua_pushinteger(L, (lua_Integer)ef_xfer_uploaded(t->x));
  return 1;
}

/* t:commit(path [, "new"]) -> true | nil, msg, "FILE_WRITE" | nil, msg, "EXISTS" (with "new":
** never replaces path; the temporary file is kept so another name can be tried). */
static int xfer_commit(lua_State *L) {
  static const char *const modes[] = {"replace", "new", NULL};
  lxfer *t = check_xfer(L);
  const char *path = luaL_checkstring(L, 2);
  int fresh = luaL_checkoption(L, 3, "replace", modes) == 1;
  char err[512];
  if (fresh) {
    int r = ef_xfer_commit_new(t->x, path, err, sizeof err);
    if (r == 1) {
      lua_pushnil(L);
      lua_pushstring(L, err);
      lua_pushliteral(L, "EXISTS");
      return 3;
    }
    if (r == 0) {
      lua_pushboolean(L, 1);
      return 1;
    }
    lua_pushnil(L);
    lua_pushstring(L, err);
    lua_pushliteral(L, "FILE_WRITE");
    return 3;
  }
  if (ef_xfer_commit(t->x, path, err, sizeof err) != 0) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    lua_pushliteral(L, "FILE_WRITE");
    return 3;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int xfer_discard(lua_State *L) {
  lxfer *t = check_xfer(L);
  ef_xfer_discard(t->x);
  return 0;
}

static int xfer_tostring(lua_State *L) {
  lxfer *t = luaL_checkudata(L, 1, EF_XFER_MT);
  lua_pushfstring(L, "editflow.Transfer (%p%s)", (void *)t, t->x ? "" : ", closed");
  return 1;
}

static const luaL_Reg meth[] = {
  {"state", xfer_state},       {"done", xfer_done},     {"response", xfer_response},
  {"commit", xfer_commit},     {"discard", xfer_discard}, {"abort", xfer_abort},
  {"events", xfer_events},     {"headers", xfer_headers}, {"sent", xfer_sent},
  {"close", xfer_close},       {NULL, NULL}};

static const luaL_Reg metameth[] = {
  {"__index", NULL}, {"__gc", xfer_gc}, {"__close", xfer_close},
  {"__tostring", xfer_tostring}, {NULL, NULL}};

void ef_lua_xfer_register(lua_State *L) {
  luaL_newmetatable(L, EF_XFER_MT);
  luaL_setfuncs(L, metameth, 0);
  luaL_newlibtable(L, meth);
  luaL_setfuncs(L, meth, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}
