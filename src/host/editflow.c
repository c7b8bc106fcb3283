/*
** editflow.c — the `editflow` host: lua.c trimmed to what editflow needs.
**
** main() runs everything inside pmain() under lua_pcall, so no error escapes unreported.
** `editflow run [OPTIONS] SCRIPT [ARGS]` runs a user script the way `lua SCRIPT` would
** (global `arg`, `...`); every other command goes to the Lua function editflow.cli.main,
** which returns the exit status. Chunks run through docall(), whose message handler adds a
** traceback. SIGINT, SIGTERM and SIGHUP only install a hook, so the interrupt lands between Lua
** instructions, never inside libcurl; the host then lets editflow.cli.interrupted cancel what
** is in flight (or leave it running: --on-interrupt detach) and exits 128 + the signal's
** number. With --on-interrupt finish the first signal unwinds nothing: it is only noted, and
** Lua asks for it between turns of the loop (editflow.cli.host.interrupt) to stop sending and
** let the running jobs end; a second signal then unwinds as above. The same signal again
** within a second counts once (timeout(1) signals the process, then its group); a signal
** after the unwinding one kills at once. Descriptors 0-2 found closed get /dev/null before anything opens
** a file, so a journal never becomes "stderr". `editflow run` then turns the loop until the
** tasks the script spawned have ended (editflow.cli.run_wait), as node and luvit do.
** The engine module and the embedded Lua modules are installed in package.preload, so the
** binary needs no files beside it; other C modules a script requires (luv, lua-cjson, ...)
** load as usual, which is why the host links liblua shared.
*/
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"
#include "embedded_lua.h"
#include "ef_engine.h"

int luaopen_editflow_core(lua_State *L);

static const char *progname = "editflow";
static lua_State *globalL = NULL;
static volatile sig_atomic_t interrupted = 0; /* the first stopping signal's number, or 0 */
static volatile sig_atomic_t counted = 0;     /* the last stop signal that counted */
static struct timespec counted_at;             /* when it came (CLOCK_MONOTONIC) */
static volatile sig_atomic_t noted = 0;       /* the first, taken as "finish what runs" */
static volatile sig_atomic_t unwinding = 0;   /* the hook that unwinds the script is set */

/* What the first stop signal does (--on-interrupt): the policy is Lua's, the timing is here. */
enum { ON_CANCEL, ON_FINISH, ON_DETACH };
static const char *const on_interrupt_names[] = {"cancel", "finish", "detach", NULL};
static volatile sig_atomic_t on_interrupt = ON_CANCEL;

/* ---- interrupts, as lua.c: the handler only sets a hook ---- */

/* The signals that stop a run: Ctrl-C, kill / a service manager, a closed terminal. */
static const int stop_signals[] = {SIGINT, SIGTERM, SIGHUP};
#define NSTOP ((int)(sizeof stop_signals / sizeof stop_signals[0]))
/*
** Under nohup SIGHUP starts ignored, and must stay so: that is what nohup is for. SIGINT is
** caught even when it starts ignored (as lua.c does; a script's `editflow ... &` is stopped
** with kill -INT), and SIGTERM is not ignored by anything that starts us.
*/
static int ignored_at_start[NSTOP];

static void note_ignored_signals(void) {
  for (int k = 0; k < NSTOP; k++) {
    struct sigaction old;
    ignored_at_start[k] = stop_signals[k] == SIGHUP && sigaction(SIGHUP, NULL, &old) == 0 &&
                          old.sa_handler == SIG_IGN;
  }
}

static const char *signal_name(int sig) {
  return sig == SIGTERM ? "SIGTERM" : sig == SIGHUP ? "SIGHUP" : "SIGINT";
}

static void lstop(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  luaL_error(L, "interrupted!");
}

/*
** A stop signal. One stop often arrives twice: timeout(1), service managers and terminals
** signal the process and then its process group, so the same signal again within a second of
** the last one that counted is the same request and changes nothing. Otherwise:
**   - the first, with --on-interrupt finish, is only noted: Lua polls for it between turns of
**     the loop (host.interrupt), stops sending and lets the running jobs end;
**   - the first in the other modes, or the second with finish, sets the hook that unwinds the
**     script; the host then cancels what is in flight (or, detach, leaves it running);
**   - any signal after that ends the process at once: back to the default action, raised
**     again, delivered as this handler returns.
** While it runs the other stop signals are blocked (sa_mask), so only one handler touches
** counted_at at a time. Only async-signal-safe calls here (clock_gettime, signal, raise;
** lua_sethook as lua.c uses it).
*/
static void laction(int i) {
  int flag = LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT;
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  if (counted) {
    long long ms = (long long)(now.tv_sec - counted_at.tv_sec) * 1000 +
                   (now.tv_nsec - counted_at.tv_nsec) / 1000000;
    if (i == counted && ms < 1000)
      return;
    if (unwinding) {
      signal(i, SIG_DFL);
      raise(i);
      return;
    }
  }
  if (!interrupted)
    interrupted = i;
  counted = i;
  counted_at = now;
  if (on_interrupt == ON_FINISH && !noted) {
    noted = 1;
    return;
  }
  unwinding = 1;
  lua_sethook(globalL, lstop, flag, 1);
}

/* Stop signals run laction while Lua code runs (handler), and kill outside it (SIG_DFL). */
static void set_stop_handlers(void (*handler)(int)) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = handler;
  sigemptyset(&sa.sa_mask);
  for (int k = 0; k < NSTOP; k++)
    sigaddset(&sa.sa_mask, stop_signals[k]);
  for (int k = 0; k < NSTOP; k++)
    if (!ignored_at_start[k])
      sigaction(stop_signals[k], &sa, NULL);
}

static void l_message(const char *msg) {
  fprintf(stderr, "%s: %s\n", progname, msg);
  fflush(stderr);
}

static int report(lua_State *L, int status) {
  if (status != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    l_message(msg ? msg : "(error object is not a string)");
    lua_pop(L, 1);
  }
  return status;
}

/* Message handler: turns any error value into a string and appends a traceback. */
static int msghandler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      return 1; /* an error object with __tostring (editflow errors) */
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

static int docall(lua_State *L, int narg, int nres) {
  int base = lua_gettop(L) - narg;
  lua_pushcfunction(L, msghandler);
  lua_insert(L, base);
  globalL = L;
  if (!interrupted) /* once interrupted, laction stays: it decides what a second signal does */
    set_stop_handlers(laction);
  int status = lua_pcall(L, narg, nres, base);
  if (!interrupted)
    set_stop_handlers(SIG_DFL);
  lua_remove(L, base);
  return status;
}

/* ---- editflow.cli.host: what the command line asks the host about stop signals ---- */

/* host.on_interrupt("cancel" | "finish" | "detach"): what the first stop signal does. */
static int host_on_interrupt(lua_State *L) {
  on_interrupt = luaL_checkoption(L, 1, NULL, on_interrupt_names);
  return 0;
}

/*
** host.interrupt() -> nil, or the first stop signal's name ("SIGINT", ...), whether the
** script is being unwound (false: only noted, as --on-interrupt finish takes the first), and
** the mode. Lua asks between turns of the loop: nothing here runs inside a signal handler.
*/
static int host_interrupt(lua_State *L) {
  if (!interrupted) {
    lua_pushnil(L);
    return 1;
  }
  lua_pushstring(L, signal_name(interrupted));
  lua_pushboolean(L, unwinding);
  lua_pushstring(L, on_interrupt_names[on_interrupt]);
  return 3;
}

static const luaL_Reg hostlib[] = {
    {"on_interrupt", host_on_interrupt},
    {"interrupt", host_interrupt},
    {NULL, NULL},
};

static int luaopen_host(lua_State *L) {
  luaL_newlib(L, hostlib);
  return 1;
}

/* ---- preloading the engine and the embedded Lua modules ---- */

static int load_embedded(lua_State *L) {
  const ef_embedded *m = lua_touserdata(L, lua_upvalueindex(1));
  if (luaL_loadbuffer(L, (const char *)m->data, m->len, m->chunkname) != LUA_OK)
    return lua_error(L);
  lua_pushstring(L, m->name);
  lua_call(L, 1, 1);
  return 1;
}

static void preload(lua_State *L) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_editflow_core);
  lua_setfield(L, -2, "editflow.core");
  lua_pushcfunction(L, luaopen_host);
  lua_setfield(L, -2, "editflow.cli.host");
  for (const ef_embedded *m = ef_embedded_lua; m->name; m++) {
    lua_pushlightuserdata(L, (void *)m);
    lua_pushcclosure(L, load_embedded, 1);
    lua_setfield(L, -2, m->name);
  }
  lua_pop(L, 1);
}

/* ---- commands ---- */

/* `arg` as lua.c builds it: arg[0] = script, arg[1..] = its arguments, negatives before. */
static void create_arg_table(lua_State *L, char **argv, int argc, int script) {
  lua_createtable(L, argc - script, script + 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}

/* Calls editflow.cli.NAME(argv-table[, extra]); leaves its results on the stack. */
static int call_cli(lua_State *L, const char *name, char **argv, int argc, const char *extra,
                    int nres) {
  lua_getglobal(L, "require");
  lua_pushliteral(L, "editflow.cli");
  if (docall(L, 1, 1) != LUA_OK)
    return LUA_ERRRUN;
  lua_getfield(L, -1, name);
  lua_remove(L, -2);
  lua_createtable(L, argc, 0);
  for (int i = 1; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i);
  }
  if (extra == NULL)
    return docall(L, 1, nres);
  lua_pushstring(L, extra);
  return docall(L, 2, nres);
}

/*
** After a stop signal has unwound the script, or after a run that --on-interrupt finish let
** end: editflow.cli.interrupted(argv, "SIGINT" | "SIGTERM" | "SIGHUP") asks the queue to cancel
** what is in flight (bounded, a few seconds), or leaves it running (detach), and reports; then
** exit 128 + the first signal's number as shells expect (130, 143, 129).
*/
static int after_interrupt(lua_State *L, int status, char **argv, int argc) {
  int sig = interrupted;
  if (!sig)
    return -1;
  if (status != LUA_OK) {
    if (unwinding)
      lua_pop(L, 1); /* the "interrupted!" error itself */
    else
      (void)report(L, status); /* a finishing run's own error: said, then the report */
  }
  lua_sethook(L, NULL, 0, 0); /* still set if the signal came as the chunk was returning */
  (void)report(L, call_cli(L, "interrupted", argv, argc, signal_name(sig), 0));
  return 128 + sig;
}

/*
** `editflow run [OPTIONS] SCRIPT [ARGS...]`: the options (progress display, --json) are read
** by editflow.cli.run_options, which answers the index of SCRIPT in argv.
*/
static int run_script(lua_State *L, char **argv, int argc) {
  if (report(L, call_cli(L, "run_options", argv, argc, NULL, 2)) != LUA_OK)
    return 1;
  if (lua_isnil(L, -2)) {
    if (lua_isboolean(L, -1)) /* --help was answered: nothing to run */
      return 0;
    l_message(lua_tostring(L, -1));
    return 2;
  }
  int script = (int)lua_tointeger(L, -2);
  lua_pop(L, 2);
  create_arg_table(L, argv, argc, script);
  const char *fname = strcmp(argv[script], "-") == 0 ? NULL : argv[script];
  int status = luaL_loadfile(L, fname);
  if (status == LUA_OK) {
    for (int i = script + 1; i < argc; i++)
      lua_pushstring(L, argv[i]);
    status = docall(L, argc - script - 1, 0);
  }
  if (status == LUA_OK) /* the script's tasks run to their end, as under node or luvit */
    status = call_cli(L, "run_wait", argv, argc, NULL, 0);
  int rc = after_interrupt(L, status, argv, argc);
  if (rc >= 0)
    return rc;
  /* ends a live progress line; answers how many tasks failed with nobody collecting the error */
  int failed = 0;
  if (call_cli(L, "run_done", argv, argc, NULL, 1) == LUA_OK) {
    failed = lua_tointeger(L, -1) > 0;
    lua_pop(L, 1);
  }
  return (report(L, status) == LUA_OK && !failed) ? 0 : 1;
}

static int run_cli(lua_State *L, char **argv, int argc) {
  int status = call_cli(L, "main", argv, argc, NULL, 1);
  int rc = after_interrupt(L, status, argv, argc);
  if (rc >= 0)
    return rc;
  if (report(L, status) != LUA_OK)
    return 1;
  int isnum;
  lua_Integer code = lua_tointegerx(L, -1, &isnum);
  return isnum ? (int)code : 0;
}

static int pmain(lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = (char **)lua_touserdata(L, 2);
  luaL_checkversion(L);
  luaL_openlibs(L);
  preload(L);
  lua_gc(L, LUA_GCRESTART);
  /* Generational, collecting young objects early: a run with a thousand jobs in flight makes
  ** short-lived tables by the million (measured in tests/bench: peak RSS -10%, same CPU). */
  lua_gc(L, LUA_GCGEN, 10, 50);
  int rc = (argc >= 2 && strcmp(argv[1], "run") == 0) ? run_script(L, argv, argc)
                                                      : run_cli(L, argv, argc);
  lua_pushinteger(L, rc);
  return 1;
}

int main(int argc, char **argv) {
  if (ef_open_std_fds() >= 0) { /* first of all: see ef_fs.c */
    l_message("a standard descriptor is closed and /dev/null cannot be opened");
    return EXIT_FAILURE;
  }
  /* libcurl runs with CURLOPT_NOSIGNAL; a write to a peer that has gone must be an error
  ** return, not a signal that kills the process. */
  signal(SIGPIPE, SIG_IGN);
  note_ignored_signals();
  lua_State *L = luaL_newstate();
  if (L == NULL) {
    l_message("cannot create state: not enough memory");
    return EXIT_FAILURE;
  }
  lua_gc(L, LUA_GCSTOP);
  lua_pushcfunction(L, pmain);
  lua_pushinteger(L, argc);
  lua_pushlightuserdata(L, argv);
  int status = lua_pcall(L, 2, 1, 0);
  int rc = status == LUA_OK ? (int)lua_tointeger(L, -1) : 1;
  report(L, status);
  lua_close(L);
  return rc;
}
