/*
** lbinding.h — what the binding's files share: the userdata layouts and type names.
** The binding only translates between Lua values and the engine (src/engine/ef_engine.h);
** policy (what to request, retries, naming) lives in lua/editflow/.
*/
#ifndef LBINDING_H
#define LBINDING_H

#include "lua.h"
#include "lauxlib.h"
#include "ef_engine.h"

#define EF_LOOP_MT "editflow.Loop"
#define EF_XFER_MT "editflow.Transfer"
#define EF_LOCK_MT "editflow.Lock"
#define EF_FILE_MT "editflow.File"
#define EF_DOP_MT "editflow.DiskOp"
#define EF_FPMAP_MT "editflow.FpMap"
#define EF_BUF_MT "editflow.Buffer" /* an engine buffer owned by Lua while a result is built */

typedef struct lloop {
  ef_loop *l; /* NULL once closed */
} lloop;

typedef struct lxfer {
  ef_xfer *x; /* NULL once closed */
} lxfer;

/* lloop.c */
int ef_lua_loop_new(lua_State *L);
void ef_lua_loop_register(lua_State *L);
void ef_lua_loop_forget(lua_State *L, int loop_idx, ef_xfer *x);

/* lxfer.c */
void ef_lua_xfer_register(lua_State *L);
lxfer *ef_lua_xfer_push(lua_State *L);

/* lfile.c */
int ef_lua_file_open(lua_State *L);
int ef_lua_file_fd(lua_State *L, int idx); /* raises unless idx is an open File */
void ef_lua_file_register(lua_State *L);

/* ldisk.c: loop methods, and step()'s report of a finished op */
int ef_lua_disk_sync(lua_State *L);
int ef_lua_disk_sync_dir(lua_State *L);
int ef_lua_disk_commit(lua_State *L);
int ef_lua_disk_write(lua_State *L);
int ef_lua_disk_digest(lua_State *L);
int ef_lua_disk_tempfile(lua_State *L);
ef_dop *ef_lua_disk_test(lua_State *L, int idx);
int ef_lua_disk_reported(lua_State *L, int set_idx, ef_dop *d);
void ef_lua_disk_register(lua_State *L);

/* ljson.c: adds json_decode and json_null to the module table on top of the stack */
void ef_lua_json_register(lua_State *L);

/* lfpmap.c */
int ef_lua_fpmap_new(lua_State *L);
void ef_lua_fpmap_register(lua_State *L);

/* llock.c */
int ef_lua_lock_new(lua_State *L);
void ef_lua_lock_register(lua_State *L);

#endif
