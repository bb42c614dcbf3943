"""The upload page `gemstone serve` answers GET / with: one self-contained HTML file (no network but this server).

For a gemmologist checking photos: the API key first (kept in sessionStorage, for
this browser session only), then photos dropped or chosen, several at once. Each
photo is sent to `:explain` and shown as a card: the verdict first, whether and why
it needs review, the photo beside where the model looked, the top 3 as bars, the
family, and reference photos of the named variety from the model's gallery. The
model's name, version and date, and the varieties it knows, come from
`/metadata`. A model exported without `explain` is asked `:predict` instead.
"""
from __future__ import annotations

import html
import json

# The Content-Security-Policy sent with the page: nothing but this server, inline code and images made here.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                           "img-src 'self' data: blob:; connect-src 'self'; base-uri 'none'; form-action 'none'")


def render(model_path: str, model_name: str) -> bytes:
    """The page for the model served at `model_path` (/v1/models/<name>)."""
    return (PAGE.replace("__MODEL_PATH_JSON__", json.dumps(model_path))
            .replace("__MODEL_NAME__", html.escape(model_name))).encode("utf-8")


PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Gemstone identification: __MODEL_NAME__</title>
<style>
:root{--ink:#1c2230;--muted:#5f6675;--line:#dfe3ea;--bg:#f5f6f8;--card:#fff;--accent:#285fab;--alert:#a61f1f;
  --alert-bg:#fdf0f0;--ok:#1d6b3a;--track:#e4e8ef}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
  color:var(--ink);background:var(--bg)}
header.top{background:var(--card);border-bottom:1px solid var(--line);padding:14px 24px;display:flex;
  flex-wrap:wrap;gap:8px 24px;align-items:baseline;justify-content:space-between}
h1{font-size:20px;margin:0;font-weight:600}
#model-info{color:var(--muted);font-size:13px}
#model-info b{color:var(--ink);font-weight:600}
main{max-width:1080px;margin:0 auto;padding:20px 24px 40px}
.panel{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:14px 16px;margin-bottom:16px}
.key-row{display:flex;flex-wrap:wrap;gap:8px 12px;align-items:center}
.key-row label{font-weight:600}
#key{font:inherit;padding:6px 10px;border:1px solid #b9c0cc;border-radius:6px;min-width:18em}
#key.needed{border-color:var(--alert);box-shadow:0 0 0 3px #f4d4d4}
#key-state{font-size:13px;color:var(--muted)}
#key-state.bad{color:var(--alert);font-weight:600}
#key-state.good{color:var(--ok)}
#drop{border:2px dashed #aab3c2;border-radius:8px;background:var(--card);padding:28px 16px;text-align:center;
  color:var(--muted);cursor:pointer;margin-bottom:16px}
#drop.over{border-color:var(--accent);background:#eef3fb;color:var(--ink)}
#drop strong{color:var(--ink)}
.pick{color:var(--accent);text-decoration:underline;cursor:pointer}
#notice{display:none;margin-bottom:16px;padding:10px 14px;border-radius:6px;background:var(--alert-bg);
  color:var(--alert);border:1px solid #efc6c6;font-weight:600}
#notice.show{display:block}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:16px;margin-bottom:16px}
.card .file{font-size:13px;color:var(--muted);margin-bottom:4px;word-break:break-all}
.verdict{font-size:20px;font-weight:600;margin:0 0 4px}
.verdict.alert{color:var(--alert)}
.review{font-size:14px;color:var(--muted);margin-bottom:12px}
.review.alert{color:var(--alert);background:var(--alert-bg);display:inline-block;padding:3px 8px;border-radius:4px}
.body{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr) minmax(260px,1.1fr);gap:16px;align-items:start}
@media (max-width:820px){.body{grid-template-columns:1fr 1fr}.answer{grid-column:1 / -1}}
figure{margin:0}
figure img{width:100%;max-height:320px;object-fit:contain;background:#eceff3;border-radius:6px;display:block}
figcaption{font-size:12px;color:var(--muted);margin-top:4px}
.bars{display:grid;grid-template-columns:auto 1fr auto;gap:8px 10px;align-items:center;margin-bottom:12px}
.bars .label{font-weight:500}
.bar{height:14px;background:var(--track);border-radius:7px;overflow:hidden;min-width:80px}
.bar span{display:block;height:100%;background:var(--accent)}
.pct{font-variant-numeric:tabular-nums;text-align:right}
.family{margin:0 0 6px}
.family b{font-variant-numeric:tabular-nums}
.note{font-size:13px;color:var(--muted)}
.refs{margin-top:14px;border-top:1px solid var(--line);padding-top:10px}
.refs h3{font-size:13px;font-weight:600;color:var(--muted);margin:0 0 8px}
.refs .thumbs{display:flex;gap:8px;flex-wrap:wrap}
.refs img{width:96px;height:96px;object-fit:cover;border-radius:4px;background:#eceff3}
.error{color:var(--alert);font-weight:600}
.working{display:flex;align-items:center;gap:10px;color:var(--muted)}
.spinner{width:22px;height:22px;border:3px solid var(--track);border-top-color:var(--accent);border-radius:50%;
  animation:spin .8s linear infinite}
@keyframes spin{to{transform:rotate(360deg)}}
details{font-size:14px}
summary{cursor:pointer;font-weight:600}
#variety-list{columns:4 12em;margin:10px 0 0;padding-left:18px;color:var(--muted)}
</style></head>
<body>
<header class="top">
  <h1>Gemstone identification</h1>
  <div id="model-info">Model <b>__MODEL_NAME__</b></div>
</header>
<main>
  <section class="panel key-row">
    <label for="key">API key</label>
    <input type="password" id="key" autocomplete="off" spellcheck="false" placeholder="if this server needs one">
    <span id="key-state">Kept for this browser session only.</span>
  </section>
  <section id="drop" tabindex="0" aria-label="Drop photos here or choose them">
    <strong>Drop photos here</strong>, or <label class="pick" for="files">choose photos</label>
    <input type="file" id="files" accept="image/*" multiple hidden>
    <div class="note">Several at once; JPEG, PNG, WebP, TIFF... up to 20 MB each.</div>
  </section>
  <div id="notice" role="alert"></div>
  <div id="results"></div>
  <section class="panel">
    <details id="varieties"><summary>Varieties this model knows</summary><ul id="variety-list"></ul></details>
  </section>
</main>
<script>
"use strict";
const MODEL = __MODEL_PATH_JSON__;
const REASONS = {
  not_a_gemstone: "the photo does not look like a gemstone photo",
  unfamiliar_variety: "the answer is spread over several varieties, as for one it never learned",
};
const $ = id => document.getElementById(id);
const keyInput = $("key");
let keyNeeded = false, metadata = null, pending = [], running = 0;
const thumbs = new Map();

keyInput.value = sessionStorage.getItem("gemstone-api-key") || "";

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}
function headers() {
  const h = {"Content-Type": "application/json"};
  if (keyInput.value) h["Authorization"] = "Bearer " + keyInput.value;
  return h;
}
function notice(text) {
  $("notice").textContent = text || "";
  $("notice").classList.toggle("show", !!text);
}
function keyState(text, cls) {
  const state = $("key-state");
  state.textContent = text;
  state.className = cls || "";
  keyInput.classList.toggle("needed", cls === "bad");
}
function pct(x) { return (100 * x).toFixed(1) + " %"; }
function capital(s) { return s ? s[0].toUpperCase() + s.slice(1) : s; }

async function loadMetadata() {
  let response;
  try {
    response = await fetch(MODEL + "/metadata", {headers: headers()});
  } catch (e) {
    notice("The server cannot be reached: " + e.message);
    return false;
  }
  if (response.status === 401) {
    keyNeeded = true;
    metadata = null;
    keyState(keyInput.value ? "This key was refused: check it." : "This server needs an API key: type it here.",
             "bad");
    return false;
  }
  if (!response.ok) {
    notice("The model's description is not available: " + ((await response.json()).error || response.status));
    return false;
  }
  metadata = (await response.json()).gemstone;
  if (keyInput.value) keyState("Key accepted; kept for this browser session only.", "good");
  const info = $("model-info");
  info.textContent = "";
  info.append("Model ", el("b", "", metadata.model), " \u00b7 version ", el("b", "", metadata.version),
              " \u00b7 " + metadata.date.replace("T", " ").replace(/(:\d\d)?(\+00:00|Z)$/, " UTC"));
  const list = $("variety-list");
  list.textContent = "";
  metadata.classes.forEach(name => list.append(el("li", "", name)));
  $("varieties").querySelector("summary").textContent =
    "Varieties this model knows (" + metadata.classes.length + ")";
  return true;
}

async function keyChanged() {
  sessionStorage.setItem("gemstone-api-key", keyInput.value);
  if (await loadMetadata()) {
    notice("");
    const waiting = pending;
    pending = [];
    waiting.forEach(item => queue(item.file, item.card));
  }
}
keyInput.addEventListener("change", keyChanged);
keyInput.addEventListener("keydown", e => { if (e.key === "Enter") keyInput.blur(); });

function choose(files) {
  const chosen = Array.from(files || []);
  if (!chosen.length) return;
  for (const file of chosen) {
    const card = el("article", "card");
    card.append(el("div", "file", file.name));
    $("results").prepend(card);
    if (keyNeeded && !metadata) {
      const wait = el("div", "working");
      wait.append(el("span", "", "Waiting for the API key..."));
      card.append(wait);
      pending.push({file, card});
    } else {
      queue(file, card);
    }
  }
  if (pending.length) {
    notice("This server needs an API key: type it above, and the " + pending.length +
           (pending.length === 1 ? " photo" : " photos") + " chosen will be sent.");
    keyState("This server needs an API key: type it here.", "bad");
    keyInput.focus();
  }
}

const jobs = [];
function queue(file, card) {
  const wait = card.querySelector(".working") || el("div", "working");
  wait.textContent = "";
  wait.append(el("span", "spinner"), el("span", "", "Identifying..."));
  if (!wait.parentNode) card.append(wait);
  jobs.push({file, card});
  next();
}
function next() {
  while (running < 2 && jobs.length) {
    const job = jobs.shift();
    running++;
    identify(job.file, job.card).catch(e => fail(job.card, e.message)).finally(() => { running--; next(); });
  }
}

function readDataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(new Error("cannot read " + file.name));
    reader.readAsDataURL(file);
  });
}

async function post(verb, b64) {
  const response = await fetch(MODEL + ":" + verb, {method: "POST", headers: headers(),
    body: JSON.stringify({instances: [{b64: b64}]})});
  let body = {};
  try { body = await response.json(); } catch (e) { body = {error: "HTTP " + response.status}; }
  return {response, body};
}

async function identify(file, card) {
  if (file.size > 20 * 1024 * 1024) return fail(card, "over 20 MB: the server takes photos up to 20 MB");
  const url = await readDataUrl(file);
  const b64 = url.slice(url.indexOf(",") + 1);
  let {response, body} = await post("explain", b64);
  let explained = true;
  if (response.status === 501) {  // a model exported without the explain signature
    ({response, body} = await post("predict?output=compact", b64));
    explained = false;
  }
  if (response.status === 401) {  // sent again once a key is typed
    keyNeeded = true;
    metadata = null;
    const wait = card.querySelector(".working");
    wait.textContent = "";
    wait.append(el("span", "", "Waiting for the API key..."));
    pending.push({file, card});
    notice("This server needs an API key" + (keyInput.value ? " and refused this one" : "") +
           ": type it above, and the photos chosen will be sent.");
    keyState(keyInput.value ? "This key was refused: check it." : "This server needs an API key: type it here.",
             "bad");
    keyInput.focus();
    return;
  }
  if (!response.ok) return fail(card, body.error || ("HTTP " + response.status));
  show(card, url, body.predictions[0], explained);
}

function fail(card, message) {
  const wait = card.querySelector(".working");
  if (wait) wait.remove();
  card.append(el("p", "error", "Not identified: " + message));
}

function verdictOf(p) {
  if (p.verdict) return capital(p.verdict);
  if (p.review_reason === "not_a_gemstone") return "Not a gemstone photo (closest variety: " + p.label + ")";
  if (p.review_reason === "unfamiliar_variety") return "Not a variety this model knows (closest: " + p.label + ")";
  if (p.needs_review) return p.label + ", low confidence: needs expert review";
  return p.label;
}
function reviewOf(p) {
  if (p.review) return p.review;
  if (!p.needs_review) return "No review needed";
  return "Needs review: " + (REASONS[p.review_reason] ||
    "confidence " + Math.round(100 * p.confidence) + "% is under the review threshold");
}

function figure(src, caption, cls) {
  const fig = el("figure", cls);
  const img = el("img");
  img.src = src;
  img.alt = caption;
  fig.append(img, el("figcaption", "", caption));
  return fig;
}

function show(card, photoUrl, p, explained) {
  const wait = card.querySelector(".working");
  if (wait) wait.remove();
  card.append(el("div", "verdict" + (p.needs_review ? " alert" : ""), verdictOf(p)));
  card.append(el("div", "review" + (p.needs_review ? " alert" : ""), reviewOf(p)));
  const body = el("div", "body");
  body.append(figure(photoUrl, "Photo", "photo"));
  if (explained && p.overlay_png) {
    body.append(figure("data:image/png;base64," + p.overlay_png.b64, "Where the model looked (red: most)", "overlay"));
  } else {
    const none = el("figure", "overlay-missing");
    none.append(el("p", "note", "No overlay: this model was exported without explanations."));
    body.append(none);
  }
  const answer = el("div", "answer");
  const bars = el("div", "bars");
  for (const entry of p.top_k) {
    const bar = el("div", "bar");
    const fill = el("span");
    fill.style.width = Math.max(0.5, 100 * entry.score).toFixed(1) + "%";
    bar.append(fill);
    bars.append(el("span", "label", entry.label), bar, el("span", "pct", pct(entry.score)));
  }
  const family = el("p", "family", "Family: " + p.family + " ");
  family.append(el("b", "", pct(p.family_confidence)));
  answer.append(bars, family);
  body.append(answer);
  card.append(body);
  references(card, p.label);
}

async function references(card, label) {
  const urls = (metadata && metadata.gallery && metadata.gallery[label]) || [];
  if (!urls.length) return;
  const refs = el("div", "refs");
  refs.append(el("h3", "", "Reference photos of " + label + " (typical training photos)"));
  const row = el("div", "thumbs");
  refs.append(row);
  card.append(refs);
  for (const url of urls) {
    if (!thumbs.has(url)) {
      thumbs.set(url, fetch(url, {headers: headers()}).then(r => r.ok ? r.blob() : Promise.reject(r.status))
        .then(blob => URL.createObjectURL(blob)).catch(() => { thumbs.delete(url); return null; }));
    }
    const src = await thumbs.get(url);
    if (src) {
      const img = el("img");
      img.src = src;
      img.alt = "Reference photo of " + label;
      row.append(img);
    }
  }
}

const drop = $("drop");
$("files").addEventListener("change", e => { choose(e.target.files); e.target.value = ""; });
drop.addEventListener("click", e => { if (e.target === drop) $("files").click(); });
drop.addEventListener("keydown", e => { if (e.key === "Enter" || e.key === " ") $("files").click(); });
["dragenter", "dragover"].forEach(t => drop.addEventListener(t, e => { e.preventDefault();
  drop.classList.add("over"); }));
["dragleave", "drop"].forEach(t => drop.addEventListener(t, e => { e.preventDefault();
  drop.classList.remove("over"); }));
drop.addEventListener("drop", e => choose(e.dataTransfer.files));
loadMetadata();
</script>
</body></html>
"""
