/*
** fuzz_json.c — libFuzzer target: status objects and error bodies as the Lua side parses them
** (editflow.json's decoder, core.json_decode over src/engine/ef_json.c, and its projection
** json.decode_some, which must accept exactly the same texts; then editflow.errors'
** reading of fal's error shapes, then a job's reading of a status object). Lua errors are allowed only as returned values; anything
** raised is a defect.
*/
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int luaopen_editflow_core(lua_State *L);

static const char harness[] =
  "local json = require 'editflow.json'\n"
  "local errors = require 'editflow.errors'\n"
  "local Job = require 'editflow.job'\n"
  "return function(text)\n"
  "  local v = json.decode(text)\n"
  "  local some = json.decode_some(text, { status = true, logs = 1, error = true })\n"
  "  assert((v == nil) == (some == nil), 'decode_some must accept exactly what decode accepts')\n"
  "  if type(v) == 'table' and type(some) == 'table' and getmetatable(v) == nil then\n"
  "    assert(some.status == v.status or type(v.status) == 'table')\n"
  "    assert(type(v.logs) ~= 'table' or #some.logs == #v.logs)\n"
  "  end\n"
  "  local e = errors.from_http({ status = 500, body = text, headers = {} }, 'fuzz', 'id')\n"
  "  assert(type(e.message) == 'string')\n"
  "  if type(v) == 'table' and type(v.status) == 'string' then\n"
  "    local net = { leaks = function(_, s) return s == 'fuzz-key' end }\n"
  "    local job = setmetatable({ client = {}, net = net, logs_seen = 0, request_id = 'id' }, { __index = Job._methods })\n"
  "    job:_observe(v)\n"
  "  end\n"
  "end\n";

static lua_State *L;

static void setup(void) {
  L = luaL_newstate();
  luaL_openlibs(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_editflow_core);
  lua_setfield(L, -2, "editflow.core");
  lua_pop(L, 1);
  if (luaL_loadstring(L, harness) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) {
    fprintf(stderr, "fuzz_json setup: %s\n", lua_tostring(L, -1));
    abort();
  }
  lua_setglobal(L, "check");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (L == NULL)
    setup();
  lua_getglobal(L, "check");
  lua_pushlstring(L, (const char *)data, size);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    fprintf(stderr, "raised: %s\n", lua_tostring(L, -1));
    abort();
  }
  return 0;
}
