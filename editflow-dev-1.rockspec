-- editflow-dev-1.rockspec: `luarocks --lua-version 5.4 make` in the source folder builds the
-- C module editflow.core (against libcurl), installs the Lua modules (editflow/*.lua and
-- editflow/experiment/*.lua; the host-only editflow/cli/* lives inside the binary) and the
-- `editflow` host. The build is the project's own CMake (cmake/install.cmake), told where
-- LuaRocks wants each part; the test suite is not built.
rockspec_format = "3.0"
package = "editflow"
version = "dev-1"

-- `luarocks make` builds the checkout it runs in; the URL matters only to `luarocks install`.
source = {
   url = "git+file://.",
}

description = {
   summary = "Image-editing jobs on fal.ai's queue from Lua 5.4, on libcurl's multi interface",
   detailed = [[
editflow runs image-editing jobs (fal-ai/qwen-image-edit-plus and friends) on fal.ai's queue:
hundreds at once in one thread, each sent once and its result kept (an append-only journal),
with retries, deadlines, prompt experiments (grids of prompt variants and seeds, a manifest and
an HTML contact sheet) and an `editflow` command-line host.
]],
   license = "MIT",
   labels = { "http", "curl", "image", "fal", "async" },
}

-- Only Lua itself is a rock dependency: the module (editflow.core and the Lua files) needs no
-- other rock -- JSON is decoded by editflow.core itself. The `editflow` host compiles in the
-- command line's parser, argparse.lua, at build time; it is not declared as a rock because
-- Debian's lua-argparse (what scripts/deps installs) is not one, and declaring it would send
-- `luarocks make` to a rocks server for a file the machine already has. CMake looks in the
-- tree's Lua folder first (an argparse rock installed there), then where lua5.4 looks
-- (package.path), then /usr/share/lua/5.4; without it only the module is built and
-- installed, and CMake's warning names the remedies.
dependencies = {
   "lua >= 5.4, < 5.5",
}

-- libcurl >= 7.85 (Debian: libcurl4-openssl-dev). Only the library is checked here: Debian keeps
-- curl/curl.h under include/x86_64-linux-gnu, where LuaRocks 3.8 does not look; CMake finds
-- the headers through pkg-config.
-- libcrypto (OpenSSL 3, Debian: libssl-dev) verifies webhook signatures.
external_dependencies = {
   CURL = { library = "curl" },
   CRYPTO = { library = "crypto" },
}

build = {
   type = "cmake",
   variables = {
      CMAKE_BUILD_TYPE = "Release",
      CMAKE_INSTALL_PREFIX = "$(PREFIX)",
      EDITFLOW_INSTALL_BIN = "$(BINDIR)",
      EDITFLOW_INSTALL_LMOD = "$(LUADIR)",
      EDITFLOW_INSTALL_CMOD = "$(LIBDIR)",
      BUILD_TESTING = "OFF",
      -- the tree's deployed Lua folder (ROCKS_TREE is <tree>/lib/luarocks/rocks-5.4)
      ARGPARSE_HINT = "$(ROCKS_TREE)/../../../share/lua/5.4",
   },
   copy_directories = { "doc", "docs" },
}
