-- editflow.experiment.gallery_page: the stylesheet and the script of an experiment's
-- index.html (editflow.experiment.gallery writes the page around them and the job data). The
-- script reads the data from <script type="application/json" id="data">, draws the grid with
-- createElement and textContent only (nothing from the data is ever parsed as HTML), and keeps
-- its state (axes, filters, the open job, the thumbnail size) in the URL's hash.
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
.grid th img{width:28px;height:28px;object-fit:cover;vertical-align:middle;margin-right:4px}
.key{font-weight:600;overflow-wrap:anywhere}.rest{font-size:12px;color:#555;overflow-wrap:anywhere}
.line{font-size:12px;color:#333;margin-top:4px;display:-webkit-box;-webkit-line-clamp:4;-webkit-box-orient:vertical;overflow:hidden}
.cell{display:flex;gap:4px}
a.shot{display:block;cursor:zoom-in;position:relative}
a.shot img{width:var(--t);height:var(--t);object-fit:contain;background:#eee;display:block}
a.shot:focus-visible,.state:focus-visible{outline:3px solid #2563eb}
.badge{position:absolute;right:2px;bottom:2px;font-size:10px;background:#fffc;padding:0 3px}
.state{display:block;width:var(--t);height:var(--t);overflow:hidden;text-align:left;font:12px/1.3 system-ui,sans-serif;
 padding:6px;border:0;cursor:pointer}
.state b{display:block;font-size:13px}.state span{display:block;overflow-wrap:anywhere}
.failed,.held{background:#fdecec;color:#a00}.skipped,.missing{background:#f0f0f0;color:#666}
#detail{position:fixed;inset:0;z-index:10;background:#000c;display:flex;padding:16px}
#detail[hidden]{display:none}
#detail .panel{display:flex;width:100%;height:100%;background:#fff}
#d-figure{flex:1 1 auto;min-width:0;background:#222;display:flex;align-items:center;justify-content:center;gap:8px;overflow:auto}
#d-figure img{max-width:100%;max-height:calc(100vh - 32px);object-fit:contain}
#d-figure .state{width:60%;height:auto;min-height:120px;font-size:14px}
#detail .facts{width:400px;flex:none;overflow:auto;padding:12px 16px;font-size:13px}
#detail .nav{display:flex;gap:6px;margin-bottom:8px}#detail .nav button{font:inherit}
#d-title{font-size:15px;margin:0 0 6px;overflow-wrap:anywhere}
#detail dt{font-weight:600;color:#555;margin-top:8px}#detail dd{margin:0;overflow-wrap:anywhere;white-space:pre-wrap}
#detail pre{margin:0;font:12px ui-monospace,monospace;white-space:pre-wrap}
#d-inputs img{width:64px;height:64px;object-fit:cover;margin:2px;border:1px solid #ccc}
.note{margin:8px 16px;color:#666}
table.plain{border-collapse:collapse;margin:0 16px 16px}.plain td,.plain th{border:1px solid #ddd;padding:6px;vertical-align:top;background:#fff}
.plain .vars{font:12px ui-monospace,monospace;white-space:nowrap}.plain .prompt{max-width:280px;overflow-wrap:anywhere}
.plain .out img{width:160px;height:160px;object-fit:contain;background:#eee;display:block}
.plain .fail{background:#fdecec;color:#a00;width:160px;font-size:12px}.plain .skip{background:#f4f4f4;color:#777;width:160px;font-size:12px}
]]

-- The page's script. The one state ({across, down, filter, open, size}) is changed only by
-- set(): the controls call it with what they changed, the hash (on load and on hashchange)
-- with the whole of it; set() checks it, writes it back to the hash, and draws.
M.SCRIPT = [==[
(function () {
"use strict";
var D = JSON.parse(document.getElementById("data").textContent);
var dims = D.dims, jobs = D.jobs, byIndex = {}, shownOrder = [];
jobs.forEach(function (j) { byIndex[j.index] = j; });
var axes = [];
dims.forEach(function (d, i) { if (d.axis) axes.push(i); });
var SIZE = 160, state = { across: D.across, down: D.down, filter: Object.create(null), open: 0, size: SIZE };

function $(id) { return document.getElementById(id); }
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

// --- the state and its hash: across=ID&down=ID&filter=ID:LABEL...&open=N&size=PX
function dec(s) { try { return decodeURIComponent(s); } catch (e) { return s; } }
function enc(s) { return encodeURIComponent(s).replace(/%3A/g, ":").replace(/%2C/g, ","); }
function parse(hash) {
  var s = { across: D.across, down: D.down, filter: Object.create(null), open: 0, size: SIZE };
  hash.replace(/^#/, "").split("&").forEach(function (part) {
    if (!part) return;
    var eq = part.indexOf("="), key = dec(eq < 0 ? part : part.slice(0, eq)), val = eq < 0 ? "" : dec(part.slice(eq + 1));
    if (key === "across" || key === "down") s[key] = val;
    else if (key === "open") s.open = parseInt(val, 10) || 0;
    else if (key === "size") s.size = parseInt(val, 10) || SIZE;
    else if (key === "filter") {
      var c = val.indexOf(":");
      if (c < 0) return;
      var id = val.slice(0, c), label = val.slice(c + 1);
      if (!Object.prototype.hasOwnProperty.call(s.filter, id)) s.filter[id] = [];
      if (label !== "") s.filter[id].push(label);
    }
  });
  return s;
}
function serialize(s) {
  var out = ["across=" + enc(s.across), "down=" + enc(s.down)];
  dims.forEach(function (d) {
    var f = s.filter[d.id];
    if (!f) return;
    if (f.length === 0) out.push("filter=" + enc(d.id) + ":");
    f.forEach(function (l) { out.push("filter=" + enc(d.id + ":" + l)); });
  });
  if (s.open) out.push("open=" + s.open);
  if (s.size !== SIZE) out.push("size=" + s.size);
  return out.join("&");
}
function isAxis(id) { return id === D.none || (dimIndex(id) >= 0 && dims[dimIndex(id)].axis); }

// next: the fields that change (a control), or a whole state (the hash, whole = true)
function set(next, whole) {
  var prev = state, s = {};
  ["across", "down", "filter", "open", "size"].forEach(function (k) { s[k] = k in next ? next[k] : prev[k]; });
  if (!isAxis(s.across)) s.across = D.across;
  if (!isAxis(s.down)) s.down = D.down;
  if (s.across === s.down && s.across !== D.none) {
    if (!whole && "across" in next && prev.across !== s.across) s.down = prev.across;  // a swap
    else if (!whole && "down" in next && prev.down !== s.down) s.across = prev.down;
    else s.down = D.none;
  }
  var f = Object.create(null);
  dims.forEach(function (d) {
    var want = s.filter[d.id];
    if (!want) return;
    var keep = d.values.filter(function (v) { return want.indexOf(v.label) >= 0; }).map(function (v) { return v.label; });
    if (keep.length < d.values.length) f[d.id] = keep;
  });
  s.filter = f;
  s.open = byIndex[s.open] ? s.open : 0;
  s.size = Math.max(48, Math.min(640, s.size | 0 || SIZE));
  state = s;
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
  function axisSelect(id, label, key) {
    var sel = el("select", { id: id, "aria-label": label });
    axes.forEach(function (d) { sel.appendChild(el("option", { value: dims[d].id, text: dims[d].label })); });
    sel.appendChild(el("option", { value: D.none, text: "(none)" }));
    sel.addEventListener("change", function () { var n = {}; n[key] = sel.value; set(n); });
    return el("label", {}, [label + " ", sel]);
  }
  form.appendChild(axisSelect("across", "across", "across"));
  var swap = el("button", { type: "button", id: "swap", title: "swap across and down", text: "\u21c4" });
  swap.addEventListener("click", function () { set({ across: state.down, down: state.across }); });
  form.appendChild(swap);
  form.appendChild(axisSelect("down", "down", "down"));
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
function syncControls(shown) {
  $("across").value = state.across;
  $("down").value = state.down;
  $("size").value = state.size;
  $("count").textContent = shown + " of " + jobs.length + " jobs shown";
  document.querySelectorAll("#controls fieldset").forEach(function (fs) {
    var f = state.filter[fs.getAttribute("data-dim")];
    fs.querySelectorAll("input").forEach(function (b) {
      b.checked = !f || f.indexOf(b.value) >= 0;
      b.toggleAttribute("checked", b.checked);  // so the DOM, serialised, says it too
    });
  });
}

// --- the sheet: one column per value across, one row per combination of the other
// variables (the one down first, so its values group the rows), one job per cell
function header(d, v) {
  var kids = [];
  if (v.input != null && D.inputs[v.input].src) kids.push(el("img", { src: D.inputs[v.input].src, alt: "", loading: "lazy" }));
  kids.push(v.label);
  return el("span", { title: (dims[d].label + " = " + (v.title || v.label)) }, kids);
}
function cell(j) {
  var what = j.prompt + (j.seed != null ? "\nseed " + j.seed : "");
  if (j.outputs.length) {
    return j.outputs.map(function (o) {
      return el("a", { cls: "shot", href: o.src, "data-job": j.index, title: what }, [
        el("img", { src: o.src, loading: "lazy", alt: j.slug, width: o.width, height: o.height }),
        j.reused ? el("span", { cls: "badge", text: "reused" }) : null]);
    });
  }
  var msg = j.error ? j.error.message || j.error.code : j.status === "missing" ? "no record" : "no result";
  return [el("button", { type: "button", cls: "state " + j.status, "data-job": j.index, title: what }, [
    el("b", { text: j.status }), j.error && j.error.code ? el("span", { text: j.error.code }) : null, el("span", { text: msg })])];
}
function draw() {
  var t0 = performance.now();
  var a = dimIndex(state.across), b = dimIndex(state.down), allow = [];
  dims.forEach(function (d, i) {
    var f = state.filter[d.id];
    if (f) allow.push([i, d.values.map(function (v) { return f.indexOf(v.label) >= 0; })]);
  });
  var shown = jobs.filter(function (j) {
    return allow.every(function (r) { return r[1][j.k[r[0]]]; });
  });
  var rowDims = b >= 0 ? [b] : [];
  axes.forEach(function (d) { if (d !== a && d !== b) rowDims.push(d); });
  shown.sort(function (x, y) {
    for (var i = 0; i < rowDims.length; i++) { var c = x.k[rowDims[i]] - y.k[rowDims[i]]; if (c) return c; }
    return (a >= 0 ? x.k[a] - y.k[a] : 0) || x.index - y.index;
  });
  var cols = [], seen = Object.create(null), rows = [], last = null;
  shown.forEach(function (j) {
    var c = a >= 0 ? j.k[a] : -1;
    if (!seen[c]) { seen[c] = true; cols.push(c); }
    var key = rowDims.map(function (d) { return j.k[d]; }).join(",");
    if (!last || last.key !== key) { last = { key: key, first: j, cells: Object.create(null) }; rows.push(last); }
    (last.cells[c] = last.cells[c] || []).push(j);
  });
  cols.sort(function (x, y) { return x - y; });
  shownOrder = [];
  rows.forEach(function (r) { cols.forEach(function (c) { (r.cells[c] || []).forEach(function (j) { shownOrder.push(j.index); }); }); });

  var corner = (b >= 0 ? dims[b].label + " \u2193" : "") + (a >= 0 ? "  " + dims[a].label + " \u2192" : "");
  var head = el("tr", {}, [el("th", { cls: "corner", text: corner })]);
  cols.forEach(function (c) {
    head.appendChild(el("th", { "data-value": c >= 0 ? dims[a].values[c].label : "" }, [c >= 0 ? header(a, dims[a].values[c]) : "result"]));
  });
  var body = el("tbody"), prevDown = null;
  rows.forEach(function (r) {
    var j = r.first, lead = b >= 0 ? valueOf(j, b) : null, th = el("th");
    if (lead) th.appendChild(el("div", { cls: "key" }, [dims[b].label + " = ", header(b, lead)]));
    var rest = rowDims.filter(function (d) { return d !== b; }).map(function (d) { return dims[d].label + " = " + valueOf(j, d).label; });
    if (rest.length) th.appendChild(el("div", { cls: "rest", text: rest.join(" \u00b7 ") }));
    var prompts = Object.create(null);
    for (var c in r.cells) r.cells[c].forEach(function (x) { prompts[x.prompt] = true; });
    if (Object.keys(prompts).length === 1) th.appendChild(el("div", { cls: "line", text: j.prompt, title: j.prompt }));
    var tr = el("tr", { cls: lead && prevDown !== null && prevDown !== j.k[b] ? "group" : null }, [th]);
    prevDown = b >= 0 ? j.k[b] : null;
    cols.forEach(function (c) {
      var td = el("td");
      if (r.cells[c]) {
        var box = el("div", { cls: "cell" });
        r.cells[c].forEach(function (x) { cell(x).forEach(function (n) { box.appendChild(n); }); });
        td.appendChild(box);
      }
      tr.appendChild(td);
    });
    body.appendChild(tr);
  });
  var table = el("table", { cls: "grid", id: "grid", "data-across": state.across, "data-down": state.down,
    "data-rows": rows.length, "data-cols": cols.length, "data-jobs": shown.length }, [el("thead", {}, [head]), body]);
  var sheet = clear($("sheet"));
  sheet.style.setProperty("--t", state.size + "px");
  sheet.appendChild(shown.length ? table : el("p", { cls: "note", id: "grid", "data-jobs": 0, text: "No job matches the filters." }));
  syncControls(shown.length);
  detail();
  document.documentElement.setAttribute("data-drawn-ms", Math.round(performance.now() - t0));
}

// --- the detail view of one job: the full images, then everything the manifest knows
function fact(dl, id, name, value) {
  if (value == null || value === "") return;
  dl.appendChild(el("dt", { text: name }));
  dl.appendChild(el("dd", { id: id }, [value]));
}
function detail() {
  var box = $("detail"), j = byIndex[state.open];
  if (!j) { box.hidden = true; return; }
  var fig = clear($("d-figure"));
  if (j.outputs.length) {
    j.outputs.forEach(function (o) {
      fig.appendChild(el("a", { href: o.src, target: "_blank" }, [el("img", { src: o.src, alt: j.slug, width: o.width, height: o.height })]));
    });
  } else {
    cell(j).forEach(function (n) { fig.appendChild(n); });
  }
  var vars = [];
  axes.forEach(function (d) { vars.push(dims[d].label + " = " + (valueOf(j, d).title || valueOf(j, d).label)); });
  $("d-title").textContent = "job " + j.index + (vars.length ? " \u00b7 " + vars.join(" \u00b7 ") : "");
  var dl = clear($("d-facts"));
  fact(dl, "d-status", "status", j.status + (j.reused ? " (reused from an earlier run, nothing paid)" : ""));
  if (j.error) fact(dl, "d-error", "error", [j.error.code, j.error.type].filter(Boolean).join(" \u00b7 ") + "\n" + (j.error.message || ""));
  fact(dl, "d-prompt", "prompt", j.prompt);
  fact(dl, "d-seed", "seed", j.seed);
  var p = Object.keys(j.params).sort().map(function (k) { return k + ": " + JSON.stringify(j.params[k], null, 1).replace(/\n\s*/g, " "); });
  fact(dl, "d-params", "parameters", p.length ? el("pre", { text: p.join("\n") }) : "(none)");
  fact(dl, "d-rid", "request id", j.request_id);
  fact(dl, "d-cost", "cost", money(j.cost) + (j.reused ? " (reused)" : " estimated") + " \u00b7 " + D.price);
  var t = j.timings ? Object.keys(j.timings).sort().map(function (k) {
    var v = j.timings[k];
    return k + " " + (typeof v === "number" ? v.toFixed(3) + " s" : JSON.stringify(v));
  }) : [];
  if (j.elapsed != null) t.push("wall " + (+j.elapsed).toFixed(3) + " s");
  fact(dl, "d-timings", "timings", t.join("\n"));
  if (j.nsfw) fact(dl, "d-nsfw", "nsfw", j.nsfw.join(", "));
  if (j.inputs.length) {
    var ins = el("div");
    j.inputs.forEach(function (n) {
      var i = D.inputs[n];
      ins.appendChild(i.src ? el("img", { src: i.src, alt: i.name, title: "#" + (n + 1) + " " + i.title })
        : el("span", { text: "#" + (n + 1) + " " + i.title + " " }));
    });
    fact(dl, "d-inputs", "inputs", ins);
  }
  fact(dl, "d-files", "files", j.outputs.map(function (o) {
    return o.name + "  " + (o.width || "?") + "\u00d7" + (o.height || "?") + (o.bytes != null ? "  " + o.bytes + " bytes" : "");
  }).join("\n"));
  box.hidden = false;
}
function step(by) {
  var i = shownOrder.indexOf(state.open);
  if (i < 0 || !shownOrder.length) return;
  set({ open: shownOrder[(i + by + shownOrder.length) % shownOrder.length] });
}

controls();
$("sheet").addEventListener("click", function (e) {
  var t = e.target.closest("[data-job]");
  if (!t || e.button !== 0 || e.ctrlKey || e.metaKey || e.shiftKey || e.altKey) return;
  e.preventDefault();
  set({ open: +t.getAttribute("data-job") });
});
$("d-close").addEventListener("click", function () { set({ open: 0 }); });
$("d-prev").addEventListener("click", function () { step(-1); });
$("d-next").addEventListener("click", function () { step(1); });
$("detail").addEventListener("click", function (e) { if (e.target === $("detail")) set({ open: 0 }); });
document.addEventListener("keydown", function (e) {
  if (!state.open) return;
  if (e.key === "Escape") set({ open: 0 });
  else if (e.key === "ArrowLeft") step(-1);
  else if (e.key === "ArrowRight") step(1);
});
window.addEventListener("hashchange", function () { set(parse(location.hash), true); });
set(parse(location.hash), true);
})();
]==]

return M
