/*
** lloop.c — the editflow.Loop userdata: starts transfers and steps the engine's multi loop.
**
** Lifetime: the loop's user value is its in-flight set, a table from each running transfer's
** engine pointer (light userdata) to the transfer's userdata. That set is what keeps a
** transfer alive while libcurl writes into it (luv's self-reference, as a table the loop
** owns), and how step() turns the engine's finished ef_xfer pointers back into userdata.
** A transfer leaves the set when step() reports it, or when it is aborted or closed.
*/
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/select.h>
#include <unistd.h>
#include "lbinding.h"

static lloop *check_loop(lua_State *L, int idx) {
  lloop *lo = luaL_checkudata(L, idx, EF_LOOP_MT);
  if (lo->l == NULL)
    luaL_error(L, "attempt to use a closed loop");
  return lo;
}

int ef_lua_loop_new(lua_State *L) {
  lloop *lo = lua_newuserdatauv(L, sizeof *lo, 1);
  lo->l = NULL;
  luaL_setmetatable(L, EF_LOOP_MT);
  lua_newtable(L);
  lua_setiuservalue(L, -2, 1);
  lo->l = ef_loop_new();
  if (lo->l == NULL)
    return luaL_error(L, "cannot create the transfer loop (libcurl initialisation failed)");
  return 1;
}

void ef_lua_loop_forget(lua_State *L, int loop_idx, ef_xfer *x) {
  loop_idx = lua_absindex(L, loop_idx);
  if (lua_getiuservalue(L, loop_idx, 1) == LUA_TTABLE) {
    lua_pushnil(L);
    lua_rawsetp(L, -2, x);
  }
  lua_pop(L, 1);
}

static int loop_close(lua_State *L) {
  lloop *lo = luaL_checkudata(L, 1, EF_LOOP_MT);
  if (lo->l) {
    ef_loop_free(lo->l); /* running transfers end ABORTED and are detached */
    lo->l = NULL;
    lua_newtable(L);
    lua_setiuservalue(L, 1, 1);
  }
  return 0;
}

/* ---- loop:request{...}: validate every field, then acquire ---- */

/* Raw reads: values stay anchored in the caller's table, so popped strings remain valid. */
static int rawfield(lua_State *L, int t, const char *k) {
  lua_pushstring(L, k);
  return lua_rawget(L, t);
}

static const char *opt_string(lua_State *L, int t, const char *k, const char *def) {
  const char *s;
  int ty = rawfield(L, t, k);
  if (ty == LUA_TNIL)
    s = def;
  else if (ty == LUA_TSTRING)
    s = lua_tostring(L, -1);
  else
    return (luaL_error(L, "request field '%s' must be a string, got %s", k, luaL_typename(L, -1)),
            NULL);
  lua_pop(L, 1); /* the string stays alive: the options table holds it */
  return s;
}

/* A path field: its C string must be the whole string (a NUL would cut the path short). */
static const char *opt_path(lua_State *L, int t, const char *k) {
  const char *s = opt_string(L, t, k, NULL);
  rawfield(L, t, k);
  size_t n = lua_rawlen(L, -1);
  lua_pop(L, 1);
  if (s && strlen(s) != n)
    luaL_argerror(L, t, lua_pushfstring(L, "field '%s' must not contain a NUL byte", k));
  return s;
}

static lua_Integer opt_int(lua_State *L, int t, const char *k, lua_Integer def, lua_Integer max) {
  int isint;
  lua_Integer v;
  if (rawfield(L, t, k) == LUA_TNIL) {
    lua_pop(L, 1);
    return def;
  }
  v = lua_tointegerx(L, -1, &isint);
  if (!isint || v < 0 || v > max)
    luaL_error(L, "request field '%s' must be an integer 0..%I, got %s", k, max,
               luaL_tolstring(L, -1, NULL));
  lua_pop(L, 1);
  return v;
}

/* A header name or value: a string (or number) read without metamethods; NULL otherwise. */
static const char *header_part(lua_State *L, int idx, size_t *n) {
  int ty = lua_type(L, idx);
  if (ty != LUA_TSTRING && ty != LUA_TNUMBER)
    return NULL;
  return lua_tolstring(L, idx, n); /* numbers convert in place; no metamethod can run */
}

/*
** Headers come as an array of "Name: value" lines or as name = value pairs. Lines are built
** in a C buffer from plain strings only: running a metamethod here could let Lua code change
** the options table (and free the strings already read from it) in the middle of the request.
** An error names the header but never prints its value (it may be a credential).
*/
static void add_headers(lua_State *L, int t, ef_xfer *x) {
  if (rawfield(L, t, "headers") == LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  if (!lua_istable(L, -1))
    luaL_error(L, "request field 'headers' must be a table");
  int h = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, h)) {
    size_t kn = 0, vn = 0;
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &kn) : NULL;
    const char *v = header_part(L, -1, &vn);
    if (v == NULL)
      luaL_error(L, "request header %s must be a string", k ? k : "entry");
    char line[8192];
    int len = k ? snprintf(line, sizeof line, "%s: %s", k, v) : snprintf(line, sizeof line, "%s", v);
    if (len < 0 || (size_t)len >= sizeof line || strlen(line) != (k ? kn + 2 + vn : vn))
      luaL_error(L, "request header %s is too long or holds a NUL byte", k ? k : "entry");
    if (ef_xfer_add_header(x, line) != 0) {
      const char *colon = strchr(line, ':');
      luaL_error(L, "bad request header '%s' (CR or LF are not allowed)",
                 colon ? lua_pushlstring(L, line, (size_t)(colon - line)) : "entry");
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

static int fail(lua_State *L, const char *msg, const char *code) {
  lua_pushnil(L);
  lua_pushstring(L, msg);
  lua_pushstring(L, code);
  return 3;
}

/*
** loop:request{url=, method=, headers=, body=, timeout=ms, connect_timeout=ms, max_body=bytes,
** follow=bool, file=dir|tempfile op, sse=bool, max_event=bytes, low_speed_limit=bytes/s,
** low_speed_time=s, once=bool} -> transfer, started. once: libcurl never sends the request a
** second time by itself (a body it would have to re-send ends "RESEND_REFUSED" instead).
** Misuse raises; a failure to start (file cannot be created, libcurl refuses) returns
** nil, message, code.
*/
static int loop_request(lua_State *L) {
  static const char *const methods[] = {"GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", NULL};
  lloop *lo = check_loop(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  const char *url = opt_string(L, 2, "url", NULL);
  const char *method = opt_string(L, 2, "method", NULL);
  /* file: a folder to make the temporary file in here, or a finished loop:tempfile op */
  ef_dop *file_op = NULL;
  if (rawfield(L, 2, "file") == LUA_TUSERDATA && (file_op = ef_lua_disk_test(L, -1)) == NULL)
    return luaL_error(L, "request field 'file' must be a folder or a loop:tempfile operation");
  lua_pop(L, 1);
  const char *dir = file_op ? NULL : opt_path(L, 2, "file");
  size_t body_len = 0;
  const char *body = NULL;
  if (url == NULL)
    return luaL_error(L, "request field 'url' is required");
  if (method) {
    int i = 0;
    while (methods[i] && strcmp(methods[i], method) != 0)
      i++;
    if (methods[i] == NULL)
      return luaL_error(L, "request field 'method' must be one of GET, POST, PUT, DELETE, "
                           "HEAD, PATCH, got '%s'", method);
  }
  if (rawfield(L, 2, "body") != LUA_TNIL) {
    if (lua_type(L, -1) != LUA_TSTRING)
      return luaL_error(L, "request field 'body' must be a string");
    body = lua_tolstring(L, -1, &body_len);
  }
  lua_pop(L, 1);
  long timeout = (long)opt_int(L, 2, "timeout", 0, LONG_MAX);
  long connect = (long)opt_int(L, 2, "connect_timeout", 30000, LONG_MAX);
  lua_Integer max_body = opt_int(L, 2, "max_body", 0, LUA_MAXINTEGER);
  long low_limit = (long)opt_int(L, 2, "low_speed_limit", 0, LONG_MAX);
  long low_time = (long)opt_int(L, 2, "low_speed_time", 0, LONG_MAX);
  rawfield(L, 2, "follow");
  int follow = lua_toboolean(L, -1);
  rawfield(L, 2, "sse");
  int sse = lua_toboolean(L, -1);
  rawfield(L, 2, "once");
  int once = lua_toboolean(L, -1);
  lua_pop(L, 3);
  lua_Integer max_event = opt_int(L, 2, "max_event", 1024 * 1024, 64 * 1024 * 1024);
  if (sse && (dir || file_op))
    return luaL_error(L, "request fields 'sse' and 'file' exclude each other");

  lxfer *t = ef_lua_xfer_push(L); /* owns x from here on, so raising cannot leak it */
  int ti = lua_gettop(L);
  t->x = ef_xfer_new();
  if (t->x == NULL)
    return luaL_error(L, "out of memory");
  if (ef_xfer_set_url(t->x, url) != 0 || (method && ef_xfer_set_method(t->x, method) != 0) ||
      (body && ef_xfer_set_body(t->x, body, body_len) != 0))
    return luaL_error(L, "out of memory");
  add_headers(L, 2, t->x);
  ef_xfer_set_timeouts(t->x, connect, timeout);
  ef_xfer_set_low_speed(t->x, low_limit, low_time);
  ef_xfer_set_max_body(t->x, (size_t)max_body);
  ef_xfer_set_follow(t->x, follow);
  ef_xfer_set_once(t->x, once);
  if (sse)
    ef_xfer_set_sse(t->x, (size_t)max_event);

  char err[512];
  if (dir && ef_xfer_to_file(t->x, dir, err, sizeof err) != 0)
    return fail(L, err, "FILE_OPEN");
  if (file_op && ef_xfer_take_temp(t->x, file_op, err, sizeof err) != 0)
    return luaL_error(L, "request field 'file': %s", err); /* misuse: check op:result() first */
  if (ef_loop_start(lo->l, t->x, err, sizeof err) != 0) {
    ef_xfer_discard(t->x);
    return fail(L, err, "START");
  }
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, ti, 1);
  lua_getiuservalue(L, 1, 1);
  lua_pushvalue(L, ti);
  lua_rawsetp(L, -2, t->x);
  lua_pop(L, 1);
  return 1;
}

/*
** loop:step([timeout_ms]) -> array of the running event streams that received events, then
** of the transfers that finished, then of the disk operations that finished (each at most
** once). Waits at most timeout_ms (default 0: never blocks).
*/
static int loop_step(lua_State *L) {
  lloop *lo = check_loop(L, 1);
  lua_Integer ms = luaL_optinteger(L, 2, 0);
  char err[256];
  if (ms < 0)
    ms = 0;
  if (ms > INT_MAX)
    ms = INT_MAX;
  if (ef_loop_step(lo->l, (int)ms, err, sizeof err) != 0)
    return fail(L, err, "MULTI");
  lua_getiuservalue(L, 1, 1);
  lua_newtable(L);
  lua_Integer n = 0;
  ef_xfer *x;
  /* Event streams first: a job that learns it has ended starts fetching its result before
  ** the turn's downloads and commits are handled (result lag is what a user waits on). */
  while ((x = ef_loop_pop_news(lo->l)) != NULL) { /* still running: stays in the set */
    if (lua_rawgetp(L, -2, x) == LUA_TUSERDATA)
      lua_rawseti(L, -2, ++n);
    else
      lua_pop(L, 1);
  }
  while ((x = ef_loop_pop_done(lo->l)) != NULL) {
    if (lua_rawgetp(L, -2, x) == LUA_TUSERDATA) {
      lua_rawseti(L, -2, ++n);
      lua_pushnil(L);
      lua_rawsetp(L, -3, x);
    } else {
      lua_pop(L, 1);
    }
  }
  ef_dop *d;
  while ((d = ef_loop_pop_disk(lo->l)) != NULL)
    if (ef_lua_disk_reported(L, -2, d))
      lua_rawseti(L, -2, ++n);
  return 1;
}

static int loop_running(lua_State *L) {
  lloop *lo = check_loop(L, 1);
  lua_pushinteger(L, (lua_Integer)(ef_loop_running(lo->l) + ef_loop_disk_pending(lo->l)));
  return 1;
}

static int loop_limits(lua_State *L) {
  lloop *lo = check_loop(L, 1);
  lua_Integer total = luaL_optinteger(L, 2, 0), host = luaL_optinteger(L, 3, 0);
  luaL_argcheck(L, total >= 0 && total <= LONG_MAX, 2, "must be 0 (no limit) or more");
  luaL_argcheck(L, host >= 0 && host <= LONG_MAX, 3, "must be 0 (no limit) or more");
  ef_loop_set_limits(lo->l, (long)total, (long)host);
  return 0;
}

/* Pushes v, or nil when it is negative (the engine's "none"). */
static int push_or_nil(lua_State *L, long v) {
  if (v < 0)
    lua_pushnil(L);
  else
    lua_pushinteger(L, (lua_Integer)v);
  return 1;
}

/*
** The host hook (see ef_loop_fd in ef_engine.h). loop:pollfd() -> the descriptor that is
** readable while the loop has work, or nil when the engine's backend has none (poll(2)):
** the Lua side then waits on loop:timeout() alone. The descriptor stays the loop's: watch it
** for reading, never read or close it.
*/
static int loop_pollfd(lua_State *L) {
  lloop *lo = check_loop(L, 1);
  return push_or_nil(L, ef_loop_fd(lo->l));
}

/* The closef of a pollfile: what io's own closing does (file:close(), __gc, __close). */
static int pollfile_close(lua_State *L) {
  luaL_Stream *p = luaL_checkudata(L, 1, LUA_FILEHANDLE);
  int r = fclose(p->f);
  return luaL_fileresult(L, r == 0, NULL);
}

/*
** loop:pollfile() -> a Lua file (io's FILE* userdata) on a duplicate of pollfd(), for hosts
** that wait only on Lua files (darktable's control.read); nil where pollfd() is nil, or
** nil and a message when the io library is not loaded, the descriptor cannot be duplicated,
** or no number below FD_SETSIZE is free for the duplicate. Readable exactly when pollfd() is; never read from it. Each call makes a new
** duplicate, owned by the caller: close it (or let it be collected) when done; closing it
** leaves the loop's own descriptor open. Close-on-exec, like the loop's.
*/
static int loop_pollfile(lua_State *L) {
  lloop *lo = check_loop(L, 1);
  int fd = ef_loop_fd(lo->l);
  if (fd < 0) {
    lua_pushnil(L);
    return 1;
  }
  if (luaL_getmetatable(L, LUA_FILEHANDLE) != LUA_TTABLE) {
    lua_pushnil(L);
    lua_pushliteral(L, "pollfile needs Lua's io library (it returns an io file)");
    return 2;
  }
  lua_pop(L, 1);
  luaL_Stream *p = lua_newuserdatauv(L, sizeof *p, 0);
  p->f = NULL;
  p->closef = NULL; /* an io file being made: io treats it as closed until closef is set */
  luaL_setmetatable(L, LUA_FILEHANDLE);
  int dup = fcntl(fd, F_DUPFD_CLOEXEC, 0); /* the lowest free number */
  if (dup < 0)
    return luaL_fileresult(L, 0, "pollfile");
  if (dup >= FD_SETSIZE) {
    /* Hosts that wait on Lua files may use select(2) (darktable's control.read does), which
    ** aborts the process on a descriptor this high: refuse rather than hand one out. */
    close(dup);
    lua_pushnil(L);
    lua_pushfstring(L, "no descriptor below %d is free (select-based hosts such as darktable "
                       "cannot wait on a higher one): make the pollfile early, before many "
                       "connections are open",
                    (int)FD_SETSIZE);
    return 2;
  }
  p->f = fdopen(dup, "r");
  if (p->f == NULL) {
    int e = errno;
    close(dup);
    errno = e;
    return luaL_fileresult(L, 0, "pollfile");
  }
  p->closef = pollfile_close;
  return 1;
}

/*
** loop:arm(ms): wake the loop (and its pollfd) in ms milliseconds at the latest; nil or -1
** clears. One wakeup at a time: a new call replaces the old one. A fraction rounds up, so the
** wakeup never comes before the timer it stands for. Any other negative raises: an overdue
** timer is 0, and silently clearing it would lose the wakeup.
*/
static int loop_arm(lua_State *L) {
  lloop *lo = check_loop(L, 1);
  long ms = -1;
  if (!lua_isnoneornil(L, 2)) {
    lua_Number n = luaL_checknumber(L, 2);
    luaL_argcheck(L, n == -1 || n >= 0, 2, "must be milliseconds >= 0, or -1 or nil to clear");
    if (n >= (lua_Number)LONG_MAX)
      ms = LONG_MAX;
    else if (n >= 0)
      ms = (long)n + ((lua_Number)(long)n < n); /* rounded up, without libm */
  }
  ef_loop_arm(lo->l, ms);
  return 0;
}

/* loop:hold(): the descriptor's timer stays as it is until the next loop:arm (a turn that
** will arm once at its end; see ef_loop_hold). */
static int loop_hold(lua_State *L) {
  ef_loop_hold(check_loop(L, 1)->l);
  return 0;
}

/* loop:timeout() -> milliseconds until the loop must be stepped (0: now), or nil if nothing
** is due but socket activity. */
static int loop_timeout(lua_State *L) {
  lloop *lo = check_loop(L, 1);
  return push_or_nil(L, ef_loop_timeout_ms(lo->l));
}

static int loop_tostring(lua_State *L) {
  lloop *lo = luaL_checkudata(L, 1, EF_LOOP_MT);
  lua_pushfstring(L, "editflow.Loop (%p%s)", (void *)lo, lo->l ? "" : ", closed");
  return 1;
}

static const luaL_Reg meth[] = {
  {"request", loop_request}, {"step", loop_step}, {"running", loop_running},
  {"limits", loop_limits},   {"close", loop_close}, {"pollfd", loop_pollfd},
  {"pollfile", loop_pollfile},
  {"arm", loop_arm},         {"hold", loop_hold},   {"timeout", loop_timeout},
  {"sync", ef_lua_disk_sync},
  {"sync_dir", ef_lua_disk_sync_dir}, {"commit", ef_lua_disk_commit},
  {"write", ef_lua_disk_write}, {"digest", ef_lua_disk_digest},
  {"tempfile", ef_lua_disk_tempfile}, {NULL, NULL}};

static const luaL_Reg metameth[] = {
  {"__index", NULL}, {"__gc", loop_close}, {"__close", loop_close},
  {"__tostring", loop_tostring}, {NULL, NULL}};

void ef_lua_loop_register(lua_State *L) {
  luaL_newmetatable(L, EF_LOOP_MT);
  luaL_setfuncs(L, metameth, 0);
  luaL_newlibtable(L, meth);
  luaL_setfuncs(L, meth, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}
