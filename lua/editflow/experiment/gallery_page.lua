-- editflow.experiment.gallery_page: the stylesheet and the script of an experiment's
-- index.html (editflow.experiment.gallery writes the page around them and the job data). The
-- script reads the data from <script type="application/json" id="data">, draws the sheet with
-- createElement and textContent only (nothing from the data is ever parsed as HTML), and keeps
-- its state (run, axes, group, filters, sort, colour, the open job, the thumbnail size) in the
-- URL's hash. This file holds the state, the controls, the summary and the sheet; the detail
-- view and the ratings are editflow.experiment.gallery_rate's part of the same script.
local rate = require "editflow.experiment.gallery_rate"

local M = {}

M.CSS = [[
:root{--t:160px}
*{box-sizing:border-box}
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
header{padding:16px 16px 4px}h1{font-size:20px;margin:0 0 4px}.meta{color:#666;margin:0}
#inputs{display:flex;flex-wrap:wrap;gap:8px;padding:8px 16px 12px;align-items:flex-start}
#inputs h2{font-size:13px;margin:0;width:100%;color:#555}
#inputs figure{margin:0;font-size:11px;color:#555;width:100px;overflow-wrap:anywhere}
#inputs img{width:100px;height:100px;object-fit:cover;border:1px solid #ccc;display:block;background:#eee}
#summary{display:flex;flex-wrap:wrap;gap:8px 16px;padding:4px 16px 10px;align-items:flex-start}
#summary[hidden]{display:none}
#summary table{border-collapse:collapse;font-size:12px;background:#fff}
#summary caption{text-align:left;font-weight:600;color:#555;padding:2px 0}
#summary th,#summary td{border:1px solid #ddd;padding:2px 6px;text-align:right;white-space:nowrap}
#summary th{background:#eef0f3;font-weight:600}
#summary td:first-child,#summary th:first-child{text-align:left;max-width:260px;overflow:hidden;text-overflow:ellipsis}
#summary tbody tr:first-child td{background:#eef7ee}
#rating-bar{display:flex;flex-wrap:wrap;gap:6px 12px;align-items:center;padding:0 16px 8px;font-size:13px;color:#555}
#rating-bar textarea{width:100%;height:120px;font:12px ui-monospace,monospace}
#rating-bar textarea[hidden]{display:none}
#controls{display:flex;flex-wrap:wrap;gap:6px 16px;align-items:center;padding:8px 16px;background:#fff;
 border-top:1px solid #ddd;border-bottom:1px solid #ddd;position:sticky;left:0;width:100vw}
#controls[hidden]{display:none}#controls select,#controls button{font:inherit}
#controls fieldset{border:1px solid #ddd;padding:2px 8px;margin:0;display:flex;flex-wrap:wrap;gap:2px 10px;align-items:center}
#controls legend{font-size:12px;font-weight:600;padding:0 4px}#controls fieldset label{font-size:13px;white-space:nowrap}
#count{color:#666}
#sheet{padding:12px 16px 24px}
.grid{border-collapse:separate;border-spacing:0;background:#fff}
.grid th,.grid td{border-right:1px solid #ddd;border-bottom:1px solid #ddd;padding:4px;vertical-align:top;background:#fff}
.grid thead th{position:sticky;top:0;z-index:2;background:#eef0f3;font-weight:600;text-align:left;white-space:nowrap}
.grid tbody th{position:sticky;left:0;z-index:1;background:#f6f7f9;text-align:left;font-weight:400;width:230px;min-width:230px;max-width:230px}
.grid thead th.corner{left:0;z-index:3;font-weight:400;color:#555}
.grid tr.group>*{border-top:2px solid #8a94a6}
.grid tr.section>th{background:#dfe3ea;font-weight:600;width:auto;max-width:none;border-top:2px solid #8a94a6}
.grid th img{width:28px;height:28px;object-fit:cover;vertical-align:middle;margin-right:4px}
.key{font-weight:600;overflow-wrap:anywhere}.rest{font-size:12px;color:#555;overflow-wrap:anywhere}
.line{font-size:12px;color:#333;margin-top:4px;display:-webkit-box;-webkit-line-clamp:4;-webkit-box-orient:vertical;overflow:hidden}
.cell{display:flex;gap:4px;flex-wrap:wrap}.job{display:flex;flex-direction:column;gap:2px}
a.shot{display:block;cursor:zoom-in;position:relative}
a.shot img{width:var(--t);height:var(--t);object-fit:contain;background:#eee;display:block}
a.shot:focus-visible,.state:focus-visible{outline:3px solid #2563eb}
.badge{position:absolute;right:2px;bottom:2px;font-size:10px;background:#fffc;padding:0 3px}
.marks{display:flex;gap:4px;align-items:center;font-size:12px;min-height:17px;max-width:var(--t);flex-wrap:wrap}
.stars{color:#b86e00;letter-spacing:1px}.best{background:#1d7a32;color:#fff;padding:0 4px;border-radius:3px;font-size:11px}
.score{padding:0 4px;border-radius:3px;font-size:11px;color:#fff;font-weight:600}
.state{display:block;width:var(--t);height:var(--t);overflow:hidden;text-align:left;font:12px/1.3 system-ui,sans-serif;
 padding:6px;border:0;cursor:pointer}
.state b{display:block;font-size:13px}.state span{display:block;overflow-wrap:anywhere}
.failed,.held{background:#fdecec;color:#a00}.skipped,.missing{background:#f0f0f0;color:#666}
#detail{position:fixed;inset:0;z-index:10;background:#000c;display:flex;padding:16px}
#detail[hidden]{display:none}
#detail .panel{display:flex;width:100%;height:100%;background:#fff}
#d-figure{flex:1 1 auto;min-width:0;background:#222;color:#ddd;display:flex;flex-direction:column;align-items:center;gap:10px;overflow:auto;padding:8px}
#d-figure .pair{display:flex;gap:8px;justify-content:center;align-items:flex-start;width:100%}
#d-figure figure{margin:0;min-width:0;flex:1 1 0;font-size:12px;text-align:center}
#d-figure .pair img{width:100%;height:calc(50vh - 48px);object-fit:contain;display:block;background:#111}
#d-figure .state{width:60%;height:auto;min-height:120px;font-size:14px}
.compare{position:relative;flex:none;width:min(100%,60vh);background:#111}
.compare img{position:absolute;inset:0;width:100%;height:100%;object-fit:contain}
.compare .edge{position:absolute;top:0;bottom:0;width:2px;background:#fff;pointer-events:none}
.slider{display:flex;gap:8px;align-items:center;font-size:12px}.slider input{width:240px}
#detail .facts{width:400px;flex:none;overflow:auto;padding:12px 16px;font-size:13px}
#detail .nav{display:flex;gap:6px;margin-bottom:8px}#detail .nav button{font:inherit}
#d-title{font-size:15px;margin:0 0 6px;overflow-wrap:anywhere}
#d-rate{border:1px solid #ddd;padding:6px 8px;margin:6px 0}
#d-rate .starbtn{font-size:22px;line-height:1;border:0;background:none;cursor:pointer;color:#bbb;padding:0 1px}
#d-rate .starbtn[aria-pressed="true"]{color:#b86e00}
#d-best[aria-pressed="true"]{background:#1d7a32;color:#fff}
#d-rate textarea{width:100%;height:60px;font:inherit;margin-top:4px}.hint{font-size:11px;color:#777;margin:2px 0}
#detail dt{font-weight:600;color:#555;margin-top:8px}#detail dd{margin:0;overflow-wrap:anywhere;white-space:pre-wrap}
#detail pre{margin:0;font:12px ui-monospace,monospace;white-space:pre-wrap}
#d-inputs img{width:64px;height:64px;object-fit:cover;margin:2px;border:1px solid #ccc}
.note{margin:8px 16px;color:#666}
table.plain{border-collapse:collapse;margin:0 16px 16px}.plain td,.plain th{border:1px solid #ddd;padding:6px;vertical-align:top;background:#fff}
.plain .vars{font:12px ui-monospace,monospace;white-space:nowrap}.plain .prompt{max-width:280px;overflow-wrap:anywhere}
.plain .out img{width:160px;height:160px;object-fit:contain;background:#eee;display:block}
.plain .fail{background:#fdecec;color:#a00;width:160px;font-size:12px}.plain .skip{background:#f4f4f4;color:#777;width:160px;font-size:12px}
]]

-- The state, its hash and the controls. The one state ({run, across, down, group, filter,
-- sort, color, open, size}) is changed only by set(): the controls call it with what they
-- changed, the hash (on load and on hashchange) with the whole of it; set() checks it, writes
-- it back to the hash, and draws.
local STATE = [==[
(function () {
"use strict";
var D = JSON.parse(document.getElementById("data").textContent);
var dims = D.dims, jobs = D.jobs, runs = D.runs, byKey = Object.create(null), shownOrder = [], rowOf = Object.create(null);
var axes = [], runDim = -1, promptDim = -1;
dims.forEach(function (d, i) { if (d.axis) axes.push(i); if (d.kind === "run") runDim = i; if (d.kind === "prompt") promptDim = i; });
var anyScore = jobs.some(function (j) { return j.judge && j.judge.score != null; });
var SIZE = 160, SORTS = ["judge", "stars"];
var state = fresh();

function fresh() {
  return { run: D.run, across: D.across, down: D.down, group: D.none, filter: Object.create(null),
    sort: "", color: "", open: "", size: SIZE };
}
function $(id) { return document.getElementById(id); }
function has(o, k) { return Object.prototype.hasOwnProperty.call(o, k); }
function dimIndex(id) { for (var i = 0; i < dims.length; i++) if (dims[i].id === id) return i; return -1; }
function el(tag, props, kids) {
  var e = document.createElement(tag);
  for (var k in props) {
    if (props[k] == null) continue;
    if (k === "text") e.textContent = props[k];
    else if (k === "cls") e.className = props[k];
    else e.setAttribute(k, props[k]);
  }
  (kids || []).forEach(function (c) { if (c != null) e.appendChild(typeof c === "string" ? document.createTextNode(c) : c); });
  return e;
}
function clear(e) { while (e.firstChild) e.removeChild(e.firstChild); return e; }
function valueOf(j, d) { return dims[d].values[j.k[d]]; }
function money(x) { return "$" + (+x || 0).toFixed(4); }
function runOf(j) { return runs[j.run - 1]; }
// A job's name in the hash (open=): its number in its run; with every run shown, RUN:N.
function keyOf(j) { return state.run === "all" ? runOf(j).id + ":" + j.index : String(j.index); }
function inRun(j, run) { return run === "all" ? !!j.all : runOf(j).id === run; }
// A colour for a judge's 0..10: red through yellow to green.
function scoreColour(s, light) {
  var h = Math.max(0, Math.min(10, +s)) * 12;
  return light ? "hsl(" + h + ",70%,90%)" : "hsl(" + h + ",65%,34%)";
}

// --- the state and its hash:
// run=ID|all&across=ID&down=ID&group=ID&filter=ID:LABEL...&sort=judge|stars&color=judge&open=N&size=PX
function dec(s) { try { return decodeURIComponent(s); } catch (e) { return s; } }
function enc(s) { return encodeURIComponent(s).replace(/%3A/g, ":").replace(/%2C/g, ","); }
function parse(hash) {
  var s = fresh();
  hash.replace(/^#/, "").split("&").forEach(function (part) {
    if (!part) return;
    var eq = part.indexOf("="), key = dec(eq < 0 ? part : part.slice(0, eq)), val = eq < 0 ? "" : dec(part.slice(eq + 1));
    if (key === "across" || key === "down" || key === "group" || key === "run" || key === "sort" || key === "color" || key === "open") s[key] = val;
    else if (key === "size") s.size = parseInt(val, 10) || SIZE;
    else if (key === "filter") {
      var c = val.indexOf(":");
      if (c < 0) return;
      var id = val.slice(0, c), label = val.slice(c + 1);
      if (!has(s.filter, id)) s.filter[id] = [];
      if (label !== "") s.filter[id].push(label);
    }
  });
  return s;
}
function serialize(s) {
  var out = [];
  if (s.run !== D.run) out.push("run=" + enc(s.run));
  out.push("across=" + enc(s.across), "down=" + enc(s.down));
  if (s.group !== D.none) out.push("group=" + enc(s.group));
  dims.forEach(function (d) {
    var f = s.filter[d.id];
    if (!f) return;
    if (f.length === 0) out.push("filter=" + enc(d.id) + ":");
    f.forEach(function (l) { out.push("filter=" + enc(d.id + ":" + l)); });
  });
  if (s.sort) out.push("sort=" + s.sort);
  if (s.color) out.push("color=" + s.color);
  if (s.open) out.push("open=" + enc(s.open));
  if (s.size !== SIZE) out.push("size=" + s.size);
  return out.join("&");
}
function isAxis(id) { return id === D.none || (dimIndex(id) >= 0 && dims[dimIndex(id)].axis); }
function isRun(id) { return (id === "all" && runs.length > 1) || runs.some(function (r) { return r.id === id; }); }

// next: the fields that change (a control), or a whole state (the hash, whole = true)
function set(next, whole) {
  var prev = state, s = {};
  ["run", "across", "down", "group", "filter", "sort", "color", "open", "size"].forEach(function (k) { s[k] = k in next ? next[k] : prev[k]; });
  if (!isRun(s.run)) s.run = D.run;
  if (!isAxis(s.across)) s.across = D.across;
  if (!isAxis(s.down)) s.down = D.down;
  if (!isAxis(s.group)) s.group = D.none;
  if (s.across === s.down && s.across !== D.none) {
    if (!whole && "across" in next && prev.across !== s.across) s.down = prev.across;  // a swap
    else if (!whole && "down" in next && prev.down !== s.down) s.across = prev.down;
    else s.down = D.none;
  }
  if (s.group === s.across || s.group === s.down) s.group = D.none;
  var f = Object.create(null);
  dims.forEach(function (d) {
    var want = has(s.filter, d.id) ? s.filter[d.id] : null;
    if (!want) return;
    var keep = d.values.filter(function (v) { return want.indexOf(v.label) >= 0; }).map(function (v) { return v.label; });
    if (keep.length < d.values.length) f[d.id] = keep;
  });
  s.filter = f;
  if (SORTS.indexOf(s.sort) < 0) s.sort = "";
  if (s.color !== "judge") s.color = "";
  s.size = Math.max(48, Math.min(640, s.size | 0 || SIZE));
  state = s;
  byKey = Object.create(null);
  jobs.forEach(function (j) { if (inRun(j, s.run)) byKey[keyOf(j)] = j; });
  s.open = has(byKey, String(s.open)) ? String(s.open) : "";
  var h = serialize(s);
  document.documentElement.setAttribute("data-state", h);  // for a reader of the DOM (the tests)
  if (location.hash.replace(/^#/, "") !== h) {
    try { history.replaceState(null, "", "#" + h); } catch (e) { location.hash = h; }
  }
  draw();
}

// --- the controls: they only ever call set()
function controls() {
  var form = $("controls");
  function select(id, label, options, key) {
    var sel = el("select", { id: id, "aria-label": label });
    options.forEach(function (o) { sel.appendChild(el("option", { value: o[0], text: o[1], title: o[2] })); });
    sel.addEventListener("change", function () { var n = {}; n[key] = sel.value; set(n); });
    form.appendChild(el("label", {}, [label + " ", sel]));
    return sel;
  }
  if (runs.length > 1) {
    var opts = runs.slice().reverse().map(function (r) {
      return [r.id, r.id + (r.started ? " \u00b7 " + r.started : "") + " \u00b7 " + r.jobs + " jobs", r.started];
    });
    opts.push(["all", "all runs (the latest record of each job)"]);
    select("run", "run", opts, "run");
  }
  var axisOpts = axes.map(function (d) { return [dims[d].id, dims[d].label]; }).concat([[D.none, "(none)"]]);
  select("across", "across", axisOpts, "across");
  var swap = el("button", { type: "button", id: "swap", title: "swap across and down", text: "\u21c4" });
  swap.addEventListener("click", function () { set({ across: state.down, down: state.across }); });
  form.appendChild(swap);
  select("down", "down", axisOpts, "down");
  select("group", "sections", axisOpts, "group");
  select("sort", "order", [["", "as planned"], ["judge", "judge score, best first"], ["stars", "stars, best first"]], "sort");
  if (anyScore) {
    var colour = el("input", { type: "checkbox", id: "color" });
    colour.addEventListener("change", function () { set({ color: colour.checked ? "judge" : "" }); });
    form.appendChild(el("label", { title: "colour each cell by its judge score" }, [colour, " colour by score"]));
  }
  var size = el("input", { type: "range", id: "size", min: 48, max: 640, step: 16, "aria-label": "thumbnail size" });
  size.addEventListener("input", function () { set({ size: +size.value }); });
  form.appendChild(el("label", {}, ["size ", size]));
  form.appendChild(el("span", { id: "count" }));
  dims.forEach(function (d) {
    if (d.values.length < 2) return;
    var fs = el("fieldset", { "data-dim": d.id }, [el("legend", { text: d.label })]);
    d.values.forEach(function (v) {
      var box = el("input", { type: "checkbox", value: v.label });
      fs.appendChild(el("label", { title: v.title }, [box, " " + v.label]));
    });
    var all = el("button", { type: "button", text: "all" });
    fs.appendChild(all);
    fs.addEventListener("change", function () {
      var f = Object.create(null), on = [];
      for (var k in state.filter) f[k] = state.filter[k];
      fs.querySelectorAll("input").forEach(function (b) { if (b.checked) on.push(b.value); });
      f[d.id] = on;
      set({ filter: f });
    });
    all.addEventListener("click", function () {
      var f = Object.create(null);
      for (var k in state.filter) if (k !== d.id) f[k] = state.filter[k];
      set({ filter: f });
    });
    form.appendChild(fs);
  });
  form.addEventListener("submit", function (e) { e.preventDefault(); });
  form.hidden = false;
}
function syncControls(shown, total) {
  ["run", "across", "down", "group", "sort", "size"].forEach(function (k) { if ($(k)) $(k).value = state[k]; });
  if ($("color")) $("color").checked = state.color === "judge";
  $("count").textContent = shown + " of " + total + " jobs shown";
  document.querySelectorAll("#controls fieldset").forEach(function (fs) {
    var f = state.filter[fs.getAttribute("data-dim")];
    fs.querySelectorAll("input").forEach(function (b) {
      b.checked = !f || f.indexOf(b.value) >= 0;
      b.toggleAttribute("checked", b.checked);  // so the DOM, serialised, says it too
    });
  });
}

// --- the summary: report.lua's numbers for the run shown (computed when the page was written,
// with the stars in ratings.json), one table per dimension, best first
function fixed(x, n, unit) { return x == null ? "-" : (+x).toFixed(n) + (unit || ""); }
function summary() {
  var box = clear($("summary")), s = D.summaries[state.run];
  if (!s) { box.hidden = true; return; }
  var t = s.total;
  $("meta").textContent = (state.run === "all" ? "every run: " : "run " + state.run + ": ") + t.jobs + " jobs: " + t.done + " done, " +
    t.failed + " failed" + (t.skipped ? ", " + t.skipped + " skipped" : "") + (t.held ? ", " + t.held + " in doubt" : "") +
    " \u00b7 cost " + money(t.cost) + (t.unpriced ? " + ? (" + t.unpriced + " not priced)" : "") +
    (state.run === "all" ? " (the runs paid " : " (this run paid ") + money(t.spent) + ")" +
    (t.judge_cost ? " \u00b7 judging " + money(t.judge_cost) : "") +
    (t.judge_n ? " \u00b7 judge " + fixed(t.judge_mean, 1) + " of " + t.judge_n : "") +
    (t.stars_n ? " \u00b7 " + fixed(t.stars_mean, 1, "\u2605") + " of " + t.stars_n + " rated" : "");
  var heads = ["value", "jobs", "done", "failed", "cost", "stars", "judge", "p50", "p95", "best"];
  s.dims.forEach(function (name) {
    var list = s.by[name];
    // a dimension with one value tells nothing a total does not (editflow report lists it)
    if (!list || list.length < 2) return;
    var d = dims[dimIndex(name)], titles = Object.create(null);
    if (d) d.values.forEach(function (v) { titles[v.label] = v.title; });
    var body = el("tbody");
    list.forEach(function (e) {
      var v = String(e.value);
      body.appendChild(el("tr", {}, [el("td", { text: v, title: titles[v] || v }), el("td", { text: String(e.jobs) }),
        el("td", { text: String(e.done) }), el("td", { text: String(e.failed) }), el("td", { text: money(e.cost) }),
        el("td", { text: e.stars_mean == null ? "-" : fixed(e.stars_mean, 1, "\u2605") + " (" + e.stars_n + ")" }),
        el("td", { text: fixed(e.judge_mean, 1) }), el("td", { text: fixed(e.latency_p50, 1, "s") }),
        el("td", { text: fixed(e.latency_p95, 1, "s") }), el("td", { text: e.best ? String(e.best) : "" })]));
    });
    box.appendChild(el("table", { "data-dim": name }, [el("caption", { text: "per " + name }),
      el("thead", {}, [el("tr", {}, heads.map(function (h) { return el("th", { text: h }); }))]), body]));
  });
  box.hidden = false;
}
]==]

-- The sheet: one column per value across, one row per combination of the other dimensions
-- (the section's first, then the one down, so their values group the rows), one job per cell,
-- each with its marks (stars, best, the judge's score).
local SHEET = [==[
function header(d, v) {
  var kids = [];
  if (v.input != null && D.inputs[v.input].src) kids.push(el("img", { src: D.inputs[v.input].src, alt: "", loading: "lazy" }));
  kids.push(v.label);
  return el("span", { title: (dims[d].label + " = " + (v.title || v.label)) }, kids);
}
function stars(n) { return n ? "\u2605\u2605\u2605\u2605\u2605".slice(0, n) + "\u2606\u2606\u2606\u2606\u2606".slice(n) : ""; }
function marks(j) {
  var r = j.request_id ? rating(j.request_id) : null, kids = [];
  if (r && r.stars) kids.push(el("span", { cls: "stars", "data-stars": r.stars, title: r.stars + " of 5 stars", text: stars(r.stars) }));
  if (r && r.best) kids.push(el("span", { cls: "best", title: "the best in its row", text: "best" }));
  if (j.judge && j.judge.score != null) {
    var b = el("span", { cls: "score", "data-score": j.judge.score, title: "judge score " + j.judge.score + " of 10", text: (+j.judge.score).toFixed(1) });
    b.style.background = scoreColour(j.judge.score);
    kids.push(b);
  }
  if (r && r.note) kids.push(el("span", { title: r.note, text: "\u270e" }));
  return el("div", { cls: "marks" }, kids);
}
function cell(j) {
  var what = j.prompt + (j.seed != null ? "\nseed " + j.seed : ""), key = keyOf(j), shots;
  if (j.outputs.length) {
    shots = j.outputs.map(function (o) {
      return el("a", { cls: "shot", href: o.src, "data-job": key, title: what }, [
        el("img", { src: o.src, loading: "lazy", alt: j.slug || o.name, width: o.width, height: o.height }),
        j.reused ? el("span", { cls: "badge", text: "reused" }) : null]);
    });
  } else {
    var msg = j.error ? j.error.message || j.error.code : j.status === "missing" ? "no record" : "no result";
    shots = [el("button", { type: "button", cls: "state " + j.status, "data-job": key, title: what }, [
      el("b", { text: j.status }), j.error && j.error.code ? el("span", { text: j.error.code }) : null, el("span", { text: msg })])];
  }
  return el("div", { cls: "job" }, shots.concat([marks(j)]));
}
// The mean of a score over jobs (judge or stars); null when none has one.
function meanOf(list, how) {
  var sum = 0, n = 0;
  list.forEach(function (j) {
    var v = how === "judge" ? (j.judge ? j.judge.score : null) : (j.request_id && rating(j.request_id) ? rating(j.request_id).stars : null);
    if (v != null && v !== "") { sum += +v; n++; }
  });
  return n ? sum / n : null;
}
function byMean(x, y) { return x.mean === y.mean ? x.pos - y.pos : x.mean == null ? 1 : y.mean == null ? -1 : y.mean - x.mean; }
function draw() {
  var t0 = performance.now(), focused = document.activeElement && document.activeElement.getAttribute("data-job");
  var a = dimIndex(state.across), b = dimIndex(state.down), g = dimIndex(state.group), allow = [];
  dims.forEach(function (d, i) {
    var f = state.filter[d.id];
    if (f) allow.push([i, d.values.map(function (v) { return f.indexOf(v.label) >= 0; })]);
  });
  var inView = jobs.filter(function (j) { return inRun(j, state.run); });
  var shown = inView.filter(function (j) {
    return allow.every(function (r) { return r[1][j.k[r[0]]]; });
  });
  var rowDims = [];
  if (g >= 0) rowDims.push(g);
  if (b >= 0) rowDims.push(b);
  axes.forEach(function (d) { if (d !== a && d !== b && d !== g && (d !== runDim || state.run === "all")) rowDims.push(d); });
  shown.sort(function (x, y) {
    for (var i = 0; i < rowDims.length; i++) { var c = x.k[rowDims[i]] - y.k[rowDims[i]]; if (c) return c; }
    return (a >= 0 ? x.k[a] - y.k[a] : 0) || x.run - y.run || x.index - y.index;
  });
  // a dimension whose value is the same in every job shown says nothing in a row's heading
  var varies = Object.create(null);
  rowDims.forEach(function (d) { varies[d] = shown.some(function (j) { return j.k[d] !== shown[0].k[d]; }); });
  var cols = [], seen = Object.create(null), rows = [], last = null;
  shown.forEach(function (j) {
    var c = a >= 0 ? j.k[a] : -1;
    if (!seen[c]) { seen[c] = true; cols.push(c); }
    var key = rowDims.map(function (d) { return j.k[d]; }).join(",");
    if (!last || last.key !== key) { last = { key: key, first: j, cells: Object.create(null), all: [], pos: rows.length }; rows.push(last); }
    (last.cells[c] = last.cells[c] || []).push(j);
    last.all.push(j);
  });
  cols.sort(function (x, y) { return x - y; });
  if (state.sort) {
    // best first: columns by the mean of their jobs, rows within a section likewise
    cols = cols.map(function (c, i) {
      return { c: c, pos: i, mean: meanOf(shown.filter(function (j) { return (a >= 0 ? j.k[a] : -1) === c; }), state.sort) };
    }).sort(byMean).map(function (x) { return x.c; });
    rows.forEach(function (r) { r.mean = meanOf(r.all, state.sort); r.section = g >= 0 ? r.first.k[g] : 0; });
    rows.sort(function (x, y) { return x.section - y.section || byMean(x, y); });
  }
  shownOrder = [];
  rowOf = Object.create(null);
  rows.forEach(function (r) {
    var keys = r.all.map(keyOf);
    keys.forEach(function (k) { rowOf[k] = keys; });
    cols.forEach(function (c) { (r.cells[c] || []).forEach(function (j) { shownOrder.push(keyOf(j)); }); });
  });

  var corner = (b >= 0 ? dims[b].label + " \u2193" : "") + (a >= 0 ? "  " + dims[a].label + " \u2192" : "");
  var head = el("tr", {}, [el("th", { cls: "corner", text: corner })]);
  cols.forEach(function (c) {
    head.appendChild(el("th", { "data-value": c >= 0 ? dims[a].values[c].label : "" }, [c >= 0 ? header(a, dims[a].values[c]) : "result"]));
  });
  var body = el("tbody"), prevDown = null, prevSection = null, sections = 0;
  rows.forEach(function (r) {
    var j = r.first;
    if (g >= 0 && j.k[g] !== prevSection) {
      prevSection = j.k[g];
      prevDown = null;
      sections++;
      body.appendChild(el("tr", { cls: "section", "data-group": valueOf(j, g).label }, [
        el("th", { colspan: cols.length + 1 }, [dims[g].label + " = ", header(g, valueOf(j, g))])]));
    }
    var lead = b >= 0 ? valueOf(j, b) : null, th = el("th");
    if (lead) th.appendChild(el("div", { cls: "key" }, [dims[b].label + " = ", header(b, lead)]));
    var rest = rowDims.filter(function (d) { return d !== b && d !== g && varies[d]; }).map(function (d) { return dims[d].label + " = " + valueOf(j, d).label; });
    if (rest.length) th.appendChild(el("div", { cls: "rest", text: rest.join(" \u00b7 ") }));
    var prompts = Object.create(null);
    r.all.forEach(function (x) { prompts[x.prompt] = true; });
    if (Object.keys(prompts).length === 1) th.appendChild(el("div", { cls: "line", text: j.prompt, title: j.prompt }));
    var tr = el("tr", { cls: lead && prevDown !== null && prevDown !== j.k[b] ? "group" : null }, [th]);
    prevDown = b >= 0 ? j.k[b] : null;
    cols.forEach(function (c) {
      var td = el("td");
      if (r.cells[c]) {
        var box = el("div", { cls: "cell" });
        r.cells[c].forEach(function (x) { box.appendChild(cell(x)); });
        td.appendChild(box);
        var m = state.color ? meanOf(r.cells[c], "judge") : null;
        if (m != null) td.style.background = scoreColour(m, true);
      }
      tr.appendChild(td);
    });
    body.appendChild(tr);
  });
  var table = el("table", { cls: "grid", id: "grid", "data-across": state.across, "data-down": state.down, "data-group": state.group,
    "data-rows": rows.length, "data-cols": cols.length, "data-jobs": shown.length, "data-sections": sections }, [el("thead", {}, [head]), body]);
  var sheet = clear($("sheet"));
  sheet.style.setProperty("--t", state.size + "px");
  sheet.appendChild(shown.length ? table : el("p", { cls: "note", id: "grid", "data-jobs": 0, text: "No job matches the filters." }));
  syncControls(shown.length, inView.length);
  summary();
  ratingBar();
  detail();
  if (focused && !state.open) {
    var again = sheet.querySelector("[data-job=\"" + focused.replace(/["\\]/g, "") + "\"]");
    if (again) again.focus();
  }
  document.documentElement.setAttribute("data-drawn-ms", Math.round(performance.now() - t0));
}
]==]

M.SCRIPT = STATE .. SHEET .. rate.SCRIPT

return M
