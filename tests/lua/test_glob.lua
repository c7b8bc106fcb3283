-- test_glob.lua: editflow.images over a temporary tree, and core.glob beneath it: glob(3)
-- patterns in any part of the path, brackets, braces (where the C library has them), folders,
-- byte order, hidden and non-image files left out, non-regular files skipped without blocking,
-- and the error when nothing matches.
local T = require "testlib"
local core = require "editflow.core"
local editflow = require "editflow"

local PNG_A = T.read(T.source_dir .. "/tests/fixtures/a.png")
local PNG_B = T.read(T.source_dir .. "/tests/fixtures/b.png")
local JPG = T.read(T.source_dir .. "/tests/fixtures/b.jpg")

-- d/ Z.png a.png b.png c.jpg link.png(->a.png) dangling.png(->nowhere) fake.png(text)
--    empty.png .hidden.png fifo.png notes.txt
--    sub1/x.png sub1/fake.png  sub2/z.png  odd[1]/o.png  .secret/s.png
local d = T.tmpdir()
local function put(rel, bytes)
  local path = d .. "/" .. rel
  assert(core.mkdir(path:match("^(.*)/")))
  assert(core.write_file(path, bytes))
end
put("Z.png", PNG_B)
put("a.png", PNG_A)
put("b.png", PNG_B)
put("c.jpg", JPG)
put("fake.png", "not an image, whatever its name says\n")
put("empty.png", "")
put(".hidden.png", PNG_A)
put("notes.txt", "notes\n")
put("sub1/x.png", PNG_A)
put("sub1/fake.png", "text\n")
put("sub2/z.png", PNG_B)
put("odd[1]/o.png", PNG_A)
put(".secret/s.png", PNG_A)
local st = T.sh("cd " .. T.quote(d)
  .. " && ln -s a.png link.png && ln -s missing.png dangling.png && mkfifo fifo.png")
T.eq(st, 0, "links and FIFO made")

-- the paths relative to d, for readable comparisons
local function rel(list)
  local out = {}
  for i, p in ipairs(list) do out[i] = p:sub(1, #d + 1) == d .. "/" and p:sub(#d + 2) or p end
  return table.concat(out, " ")
end

T.case("core.glob: sorted by bytes, empty when nothing matches, 'files' keeps regular files", function()
  T.eq(rel(core.glob(d .. "/?.png")), "Z.png a.png b.png", "bytewise: Z before a, in every locale")
  T.eq(#core.glob(d .. "/*.webp"), 0, "no match is an empty list, not an error")
  T.eq(#core.glob(d .. "/nope/*"), 0, "a missing folder is no match either")
  local all = rel(core.glob(d .. "/*"))
  T.contains(all, "fifo.png", "all kinds by default")
  T.contains(all, "sub1", "folders too")
  T.ok(not all:find(".hidden", 1, true), "* does not match a leading dot")
  T.eq(rel(core.glob(d .. "/*", "files")),
    "Z.png a.png b.png c.jpg empty.png fake.png link.png notes.txt",
    "files: no folder, FIFO or dangling link; a link to a file is a file")
  T.eq(rel(core.glob(d .. "/odd\\[1]/*")), "odd[1]/o.png", "a backslash quotes")
  T.raises(function() core.glob(d .. "/\0*") end, "must not contain a NUL byte")
  T.raises(function() core.glob("*", "dirs") end, "invalid option 'dirs'")
  local home = os.getenv("HOME")
  if home and core.listdir(home) then
    T.eq(core.glob("~")[1], home, "~ is the home folder")
  end
end)

-- glob(3) without GLOB_BRACE (musl) reads { and } as themselves
local BRACES = #core.glob(d .. "/{a,b}.png") == 2

T.case("core.glob: braces expand, sorted as one list, each path once", function()
  if not BRACES then print("# no GLOB_BRACE in this C library: brace cases skipped") return end
  T.eq(rel(core.glob(d .. "/{b,a}.png")), "a.png b.png", "sorted across alternatives")
  T.eq(rel(core.glob(d .. "/{a,?}.png")), "Z.png a.png b.png", "a path two alternatives give is kept once")
  T.eq(rel(core.glob(d .. "/{sub1,sub2}/*.png")), "sub1/fake.png sub1/x.png sub2/z.png", "braces in a folder part")
end)

T.case("images: globs in any part, brackets, ?, braces; only images, sorted", function()
  T.eq(rel(editflow.images(d .. "/*/*.png")), "odd[1]/o.png sub1/x.png sub2/z.png",
    "*/ walks folders; the text named fake.png is left out, and so is the hidden folder")
  T.eq(rel(editflow.images(d .. "/[ab].png")), "a.png b.png", "brackets")
  T.eq(rel(editflow.images(d .. "/?.png")), "Z.png a.png b.png", "? and byte order")
  T.eq(rel(editflow.images(d .. "/*.png")), "Z.png a.png b.png link.png",
    "no text, empty file, FIFO (not even opened), dangling link or hidden file")
  T.eq(rel(editflow.images(d .. "/*")), "Z.png a.png b.png c.jpg link.png", "nor notes.txt or folders")
  T.eq(rel(editflow.images(d .. "/odd\\[1\\]/*.png")), "odd[1]/o.png", "quoted magic")
  if BRACES then
    T.eq(rel(editflow.images(d .. "/{b,c}.{png,jpg}")), "b.png c.jpg", "braces")
  end
end)

T.case("images: folders give their image files; files are taken as is; specs keep their order", function()
  local want = "Z.png a.png b.png c.jpg link.png"
  T.eq(rel(editflow.images(d)), want, "a folder")
  T.eq(rel(editflow.images(d .. "/")), want, "a folder with a slash")
  T.eq(rel(editflow.images(d .. "/odd[1]")), "odd[1]/o.png", "a folder whose name has glob characters")
  T.eq(rel(editflow.images(d .. "/.secret")), ".secret/s.png", "a hidden folder named")
  T.eq(rel(editflow.images(d .. "/fake.png")), "fake.png", "a file named is taken as is (loading checks it)")
  T.eq(rel(editflow.images(d .. "/b.png", d .. "/[a]*.png", d .. "/sub2")), "b.png a.png sub2/z.png",
    "each spec sorted, the specs in the order given")
end)

T.case("images: hidden files are never taken by a folder or a glob", function()
  T.eq(rel(editflow.images(d .. "/.secret/*.png")), ".secret/s.png", "a hidden folder the glob spells is searched")
  T.raises(function() editflow.images(d .. "/.*.png") end, "nothing matches")
  if BRACES then
    T.eq(rel(editflow.images(d .. "/{.hidden,a}.png")), "a.png", "not even when a brace spells the dot")
  end
  T.eq(rel(editflow.images(d .. "/.hidden.png")), ".hidden.png", "a hidden file named is a plain file")
end)

T.case("images: nothing matches raises, naming the spec", function()
  for _, spec in ipairs { d .. "/*.webp", d .. "/nope/*.png", d .. "/missing.png", d .. "/sub1/fake*",
                          d .. "/[xy].png", "~/no-such-folder-for-editflow-tests/*.png" } do
    T.raises(function() editflow.images(spec) end, "editflow.images: nothing matches '" .. spec .. "'")
  end
  T.raises(function() editflow.images(d, 3) end, "editflow.images expects paths or globs")
  T.raises(function() editflow.images("") end, "editflow.images expects paths or globs")
end)

T.case("cleanup", function() os.execute("rm -rf " .. T.quote(d)) end)

T.run()
