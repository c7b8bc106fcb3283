-- editflow.experiment.gallery_rate: the second half of an experiment page's script (after
-- editflow.experiment.gallery_page's state, controls and sheet, in the same closure): the
-- ratings, the detail view with its before/after, the keys, and the start.
--
-- Ratings are keyed by request id (a job never accepted has none and cannot be rated), as in
-- DIR/ratings.json. The page shows the folder's file (D.ratings) under the browser's own,
-- kept in localStorage under D.key (the experiment's name and the folder's first run): an
-- entry the browser changed replaces the file's whole, so a cleared star stays cleared. The
-- export writes every entry, the browser's with null for a field it cleared (as
-- `editflow rate --import` reads null: remove it), as a download and in a read-only text box.
local M = {}

M.SCRIPT = [==[
// --- ratings: the folder's file under the browser's own
var fileRatings = D.ratings || {}, mine = loadMine();
function loadMine() {
  try {
    var o = JSON.parse(localStorage.getItem(D.key) || "{}");
    return o && typeof o === "object" && !Array.isArray(o) ? o : {};
  } catch (e) { return {}; }
}
function saveMine() {
  try { localStorage.setItem(D.key, JSON.stringify(mine)); } catch (e) { /* private mode: this page only */ }
}
function rating(id) { return has(mine, id) ? mine[id] : has(fileRatings, id) ? fileRatings[id] : null; }
// change: {stars: 0..5} (0 clears), {best: true|false|"toggle"}, {note: text}; redraw: false
// while a note is typed (a redraw would take the text box away from under the keys)
function rate(j, change, redraw) {
  if (!j || !j.request_id) return;
  var cur = rating(j.request_id) || {}, e = { stars: cur.stars || null, best: !!cur.best, note: cur.note || "" };
  if ("stars" in change) e.stars = change.stars >= 1 && change.stars <= 5 ? change.stars : null;
  if ("note" in change) e.note = change.note;
  if ("best" in change) {
    e.best = change.best === "toggle" ? !e.best : !!change.best;
    // one best per row of the view: marking one takes the mark from the others in its row
    if (e.best) (rowOf[keyOf(j)] || []).forEach(function (k) {
      var o = byKey[k];
      if (o && o !== j && o.request_id && rating(o.request_id) && rating(o.request_id).best) {
        var r = rating(o.request_id);
        mine[o.request_id] = { stars: r.stars || null, best: false, note: r.note || "" };
      }
    });
  }
  mine[j.request_id] = e;
  saveMine();
  if (redraw !== false) draw();
  else ratingBar();
}
// The ratings as ratings.json holds them: the file's entries, the browser's over them.
function exported() {
  var ids = Object.keys(fileRatings).filter(function (k) { return !has(mine, k); }).concat(Object.keys(mine)).sort(), out = {};
  ids.forEach(function (id) {
    var r = rating(id), e = {};
    if (has(mine, id)) {
      e.stars = r.stars || null;
      e.best = !!r.best;
      e.note = r.note ? r.note : null;
    } else {
      ["stars", "best", "note"].forEach(function (k) { if (r[k] != null) e[k] = r[k]; });
    }
    out[id] = e;
  });
  return JSON.stringify(out, null, 1) + "\n";
}
function ratingBar() {
  var n = Object.keys(mine).length, f = Object.keys(fileRatings).length;
  $("rating-count").textContent = (n ? n + " job" + (n === 1 ? "" : "s") + " rated in this browser" : "nothing rated in this browser yet") +
    (f ? " \u00b7 " + f + " in ratings.json" : "");
  if (!$("export-json").hidden) $("export-json").value = exported();
}
function exportRatings() {
  var text = exported(), box = $("export-json");
  box.value = text;
  box.hidden = false;
  try {
    var url = URL.createObjectURL(new Blob([text], { type: "application/json" }));
    var a = el("a", { href: url, download: "ratings.json", hidden: "" });
    document.body.appendChild(a);
    a.click();
    document.body.removeChild(a);
    setTimeout(function () { URL.revokeObjectURL(url); }, 60000);
  } catch (e) { /* the text box still holds it */ }
}

// --- the detail view of one job: before and after, its rating, everything the manifest knows
function fact(dl, id, name, value) {
  if (value == null || value === "") return;
  dl.appendChild(el("dt", { text: name }));
  dl.appendChild(el("dd", { id: id }, [value]));
}
var reveal = 50;
function compare(input, o) {
  var top = el("img", { src: o.src, alt: "after", cls: "top" }), edge = el("span", { cls: "edge" });
  var box = el("div", { cls: "compare", id: "d-compare" }, [el("img", { src: input.src, alt: "before" }), top, edge]);
  if (o.width && o.height) box.style.aspectRatio = o.width + " / " + o.height;
  var slider = el("input", { type: "range", id: "d-slider", min: 0, max: 100, step: 1, value: reveal,
    "aria-label": "how much of the output covers the input" });
  function show() {
    reveal = +slider.value;
    top.style.clipPath = "inset(0 " + (100 - reveal) + "% 0 0)";
    edge.style.left = "calc(" + reveal + "% - 1px)";
    slider.setAttribute("aria-valuetext", reveal + "% output, " + (100 - reveal) + "% input");
    box.setAttribute("data-reveal", reveal);
  }
  slider.addEventListener("input", show);
  show();
  return [box, el("label", { cls: "slider" }, ["input", slider, "output"])];
}
function figure(j) {
  var fig = clear($("d-figure"));
  if (!j.outputs.length) { fig.appendChild(cell(j).firstChild); return; }
  var before = null, pair = el("div", { cls: "pair", id: "d-pair" });
  j.inputs.forEach(function (n) { if (!before && D.inputs[n].src) before = D.inputs[n]; });
  if (before) pair.appendChild(el("figure", { id: "d-before" }, [el("img", { src: before.src, alt: "input " + before.name }),
    el("figcaption", { text: "before: " + before.name + (j.inputs.length > 1 ? " (first of " + j.inputs.length + " inputs)" : "") })]));
  j.outputs.forEach(function (o, i) {
    pair.appendChild(el("figure", { cls: "after" }, [el("a", { href: o.src, target: "_blank" }, [
      el("img", { src: o.src, alt: j.slug || o.name, width: o.width, height: o.height })]),
      el("figcaption", { text: "after" + (j.outputs.length > 1 ? " #" + (i + 1) : "") + (o.score != null ? " \u00b7 judge " + o.score : "") })]));
  });
  fig.appendChild(pair);
  if (before) compare(before, j.outputs[0]).forEach(function (n) { fig.appendChild(n); });
  else fig.appendChild(el("p", { text: "No local input to compare with (inputs given as URLs are not loaded)." }));
}
function rateBox(j) {
  var r = j.request_id ? rating(j.request_id) : null, can = !!j.request_id;
  $("d-rate").setAttribute("data-can", can ? "1" : "0");
  $("d-norate").hidden = can;
  $("d-rating").hidden = !can;
  document.querySelectorAll("#d-rate .starbtn").forEach(function (b) {
    b.setAttribute("aria-pressed", String(!!(r && r.stars >= +b.getAttribute("data-stars"))));
  });
  $("d-rate").setAttribute("data-stars", r && r.stars ? r.stars : 0);
  $("d-best").setAttribute("aria-pressed", String(!!(r && r.best)));
  if (document.activeElement !== $("d-note")) $("d-note").value = r && r.note ? r.note : "";
}
function detail() {
  var box = $("detail"), j = byKey[state.open];
  if (!state.open || !j) { box.hidden = true; return; }
  figure(j);
  rateBox(j);
  var vars = [];
  axes.forEach(function (d) { if (d !== runDim || runs.length > 1) vars.push(dims[d].label + " = " + valueOf(j, d).label); });
  $("d-title").textContent = "job " + j.index + (vars.length ? " \u00b7 " + vars.join(" \u00b7 ") : "");
  var dl = clear($("d-facts"));
  fact(dl, "d-status", "status", j.status + (j.reused ? " (reused from an earlier run, nothing paid)" : "") + (j.interrupted ? " (the run was stopped first)" : ""));
  if (j.error) fact(dl, "d-error", "error", [j.error.code, j.error.type].filter(Boolean).join(" \u00b7 ") + "\n" + (j.error.message || ""));
  if (j.judge) fact(dl, "d-judge", "judge", (j.judge.score != null ? (+j.judge.score).toFixed(1) + " of 10" : "no score") +
    (j.judge.n > 1 ? " (mean of " + j.judge.n + " outputs)" : "") + (j.judge.endpoint ? " \u00b7 " + j.judge.endpoint : "") +
    (j.judge.error ? "\n" + j.judge.error : "") + (j.judge.text ? "\n" + j.judge.text : ""));
  fact(dl, "d-prompt", "prompt", j.prompt);
  if (promptDim >= 0 && valueOf(j, promptDim).title) fact(dl, "d-template", "template", valueOf(j, promptDim).title);
  fact(dl, "d-seed", "seed", j.seed);
  var ps = Object.keys(j.params).sort().map(function (k) { return k + ": " + JSON.stringify(j.params[k], null, 1).replace(/\n\s*/g, " "); });
  fact(dl, "d-params", "parameters", ps.length ? el("pre", { text: ps.join("\n") }) : "(none)");
  fact(dl, "d-run", "run", runOf(j).id + (runOf(j).started ? " \u00b7 started " + runOf(j).started : ""));
  fact(dl, "d-rid", "request id", j.request_id);
  fact(dl, "d-cost", "cost", money(j.cost) + (j.reused ? " (reused)" : " estimated") + (j.spent != null ? " \u00b7 this run paid " + money(j.spent) : "") +
    (j.price ? " \u00b7 " + j.price : ""));
  var t = j.timings ? Object.keys(j.timings).sort().map(function (k) {
    var v = j.timings[k];
    return k + " " + (typeof v === "number" ? v.toFixed(3) + " s" : JSON.stringify(v));
  }) : [];
  if (j.elapsed != null) t.push("wall " + (+j.elapsed).toFixed(3) + " s");
  fact(dl, "d-timings", "timings", t.join("\n"));
  if (j.nsfw) fact(dl, "d-nsfw", "nsfw", [].concat(j.nsfw).join(", "));
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
    return o.name + "  " + (o.width || "?") + "\u00d7" + (o.height || "?") + (o.bytes != null ? "  " + o.bytes + " bytes" : "") +
      (o.score != null ? "  judge " + o.score : "");
  }).join("\n"));
  box.hidden = false;
}
function step(by) {
  var i = shownOrder.indexOf(state.open);
  if (i < 0 || !shownOrder.length) return;
  set({ open: shownOrder[(i + by + shownOrder.length) % shownOrder.length] });
}

// --- the keys. In the detail view: 1-5 stars, 0 clears them, b best in this row, n the note,
// arrows the previous and next job, Esc closes. On the sheet a focused image takes 1-5, 0
// and b for its job (Enter opens it). Keys typed into a text box or a slider stay theirs.
function rateKey(j, e) {
  if (/^[0-5]$/.test(e.key)) rate(j, { stars: +e.key });
  else if (e.key === "b" || e.key === "B") rate(j, { best: "toggle" });
  else return false;
  return true;
}
document.addEventListener("keydown", function (e) {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  var t = e.target, typing = t && (t.tagName === "TEXTAREA" || t.tagName === "INPUT" || t.tagName === "SELECT");
  if (typing) {
    if (e.key === "Escape" && t === $("d-note")) { t.blur(); e.preventDefault(); }
    return;
  }
  if (state.open) {
    var j = byKey[state.open];
    if (e.key === "Escape") set({ open: "" });
    else if (e.key === "ArrowLeft") step(-1);
    else if (e.key === "ArrowRight") step(1);
    else if ((e.key === "n" || e.key === "N") && j && j.request_id) { e.preventDefault(); $("d-note").focus(); }
    else if (!rateKey(j, e)) return;
    e.preventDefault();
    return;
  }
  var at = t && t.closest && t.closest("#sheet [data-job]");
  if (at && rateKey(byKey[at.getAttribute("data-job")], e)) e.preventDefault();
});

controls();
document.querySelectorAll("#d-rate .starbtn").forEach(function (b) {
  b.addEventListener("click", function () {
    var j = byKey[state.open], n = +b.getAttribute("data-stars"), r = j && j.request_id ? rating(j.request_id) : null;
    rate(j, { stars: r && r.stars === n ? 0 : n });  // the same star again takes it back
  });
});
$("d-best").addEventListener("click", function () { rate(byKey[state.open], { best: "toggle" }); });
$("d-clear").addEventListener("click", function () { rate(byKey[state.open], { stars: 0, best: false, note: "" }); });
$("d-note").addEventListener("input", function () { rate(byKey[state.open], { note: $("d-note").value }, false); });
$("d-note").addEventListener("change", function () { draw(); });
$("export").addEventListener("click", exportRatings);
$("rating-bar").hidden = false;
$("sheet").addEventListener("click", function (e) {
  var t = e.target.closest("[data-job]");
  if (!t || e.button !== 0 || e.ctrlKey || e.metaKey || e.shiftKey || e.altKey) return;
  e.preventDefault();
  set({ open: t.getAttribute("data-job") });
});
$("d-close").addEventListener("click", function () { set({ open: "" }); });
$("d-prev").addEventListener("click", function () { step(-1); });
$("d-next").addEventListener("click", function () { step(1); });
$("detail").addEventListener("click", function (e) { if (e.target === $("detail")) set({ open: "" }); });
window.addEventListener("hashchange", function () { set(parse(location.hash), true); });
set(parse(location.hash), true);
})();
]==]

return M
