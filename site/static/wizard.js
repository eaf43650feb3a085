// The wizard: choices live in the URL query, the schematic and its ID are computed here
// (schematic.js), links are checked against the published tree with HEAD requests.
import { canonicalYAML, schematicID, sha256Hex } from "./schematic.js";

const root = new URL("../../", import.meta.url);
const $ = (id) => document.getElementById(id);
const form = $("wizard");
const cache = new Map();
let data;
// A published schematic the config does not list (`?schematic-id=`): shown as published, byte for
// byte, until a choice changes.
let fixed = null;

async function getJSON(path) {
  if (!cache.has(path)) {
    cache.set(path, fetch(new URL(path, root), { cache: "no-cache" }).then((r) => (r.ok ? r.json() : null)));
  }
  return cache.get(path);
}

const fill = (template, values) =>
  template.replace("{id}", values.id ?? "").replace("v{version}", values.version ?? "")
    .replace("{asset}", values.asset ?? "");

function option(select, value, text, selected) {
  const o = document.createElement("option");
  o.value = value;
  o.textContent = text;
  o.selected = selected;
  select.append(o);
}

// ---- state <-> URL query ----------------------------------------------------------------------

function readQuery() {
  const q = new URLSearchParams(location.search);
  const state = {
    target: q.get("target"), version: q.get("version"), platform: q.get("platform"),
    board: q.get("board"), arch: q.get("arch"), secureboot: q.get("secureboot") === "true",
    extensions: q.getAll("extensions"), cmdline: q.get("cmdline") ?? "",
    bootloader: q.get("bootloader") ?? "auto", meta: q.getAll("meta").join("\n"),
    overlayOptions: q.get("overlay-options") ?? "",
  };
  const prefill = data.public[q.get("schematic-id")];
  if (prefill) {
    const s = prefill.schematic, c = s.customization;
    state.extensions = c.systemExtensions?.officialExtensions ?? [];
    state.cmdline = (c.extraKernelArgs ?? []).join(" ");
    state.meta = (c.meta ?? []).map((m) => `${m.key}=${m.value}`).join("\n");
    state.bootloader = c.bootloader ?? "auto";
    state.embedded = c.embeddedMachineConfiguration ?? "";
    if (s.overlay) {
      state.target = "sbc";
      state.board = s.overlay.name;
      state.overlayOptions = s.overlay.options ? JSON.stringify(s.overlay.options) : "";
    }
    if (!state.version && prefill.versions.length) state.version = prefill.versions[0];
  }
  return state;
}

function writeQuery(state) {
  const q = new URLSearchParams();
  q.set("target", state.target);
  q.set("version", state.version);
  if (state.target === "cloud") q.set("platform", state.platform);
  if (state.target === "sbc") q.set("board", state.board);
  q.set("arch", state.arch);
  if (state.secureboot) q.set("secureboot", "true");
  for (const e of state.extensions) q.append("extensions", e);
  if (state.cmdline) q.set("cmdline", state.cmdline);
  if (state.bootloader !== "auto") q.set("bootloader", state.bootloader);
  for (const line of state.meta.split("\n").filter((l) => l.trim())) q.append("meta", line.trim());
  if (state.overlayOptions) q.set("overlay-options", state.overlayOptions);
  if (fixed) q.set("schematic-id", fixed.id);
  history.replaceState(null, "", "?" + q.toString());
}

// ---- parsing free-form fields -----------------------------------------------------------------

function parseMeta(text) {
  return text.split("\n").filter((l) => l.trim()).map((line) => {
    const m = /^\s*(\d{1,3})\s*=(.*)$/.exec(line);
    if (!m || Number(m[1]) > 255) throw new Error(`META line "${line.trim()}": want key=value, key 0 to 255`);
    return { key: Number(m[1]), value: m[2] };
  });
}

function scalar(text) {
  const t = text.trim();
  const quoted = /^'(.*)'$|^"(.*)"$/.exec(t);
  if (quoted) return quoted[1] !== undefined ? quoted[1].replaceAll("''", "'") : JSON.parse(t);
  if (/^(true|True|TRUE)$/.test(t)) return true;
  if (/^(false|False|FALSE)$/.test(t)) return false;
  if (/^(|~|null|Null|NULL)$/.test(t)) return null;
  if (/^[-+]?[0-9]+$/.test(t) && Number.isSafeInteger(Number(t))) return Number(t);
  if (/^[-+]?(\.[0-9]+|[0-9]+\.[0-9]*)([eE][-+]?[0-9]+)?$/.test(t)) return Number(t);
  return t;
}

function parseOptions(text) {
  const t = text.trim();
  if (!t) return {};
  if (t.startsWith("{")) {
    const parsed = JSON.parse(t);
    if (typeof parsed !== "object" || Array.isArray(parsed) || parsed === null) throw new Error("overlay options: want an object");
    return parsed;
  }
  const out = {};
  for (const line of t.split("\n").filter((l) => l.trim() && !l.trim().startsWith("#"))) {
    const m = /^([^:]+):(?:\s(.*))?$/.exec(line.trim());
    if (!m) throw new Error(`overlay options line "${line.trim()}": want key: value`);
    out[m[1].trim()] = scalar(m[2] ?? "");
  }
  return out;
}

// ---- the form ---------------------------------------------------------------------------------

function currentState() {
  const fd = new FormData(form);
  return {
    target: fd.get("target"), version: fd.get("version"), platform: fd.get("platform"),
    board: fd.get("board"), arch: fd.get("arch"), secureboot: $("secureboot").checked && !$("secureboot-field").hidden,
    extensions: [...form.querySelectorAll("#extensions input:checked")].map((i) => i.value),
    cmdline: fd.get("cmdline") ?? "", bootloader: fd.get("bootloader") ?? "auto",
    meta: fd.get("meta") ?? "", overlayOptions: fd.get("overlay-options") ?? "",
    embedded: $("embedded").value,
  };
}

async function renderControls(state) {
  for (const input of form.querySelectorAll("input[name=target]")) input.checked = input.value === state.target;
  const sbcOnly = state.target === "sbc";
  for (const o of $("version").options) o.disabled = sbcOnly && !data.sbcVersions.includes(o.value);
  if (sbcOnly && !data.sbcVersions.includes(state.version) && data.sbcVersions.length) {
    state.version = data.sbcVersions.includes(data.defaultVersion) ? data.defaultVersion : data.sbcVersions[0];
  }
  $("version").value = state.version;
  const v = await getJSON(fill(data.paths.version, { version: state.version }));
  const sbc = state.target === "sbc", cloud = state.target === "cloud";
  $("cloud-field").hidden = !cloud;
  $("board-field").hidden = !sbc;
  $("overlay-field").hidden = !sbc;
  $("bootloader-field").hidden = !v.bootloader;
  $("config-field").hidden = !v.embeddedConfig;

  const platform = $("platform");
  platform.replaceChildren();
  const clouds = Object.entries(v.platforms).filter(([name]) => name !== "metal");
  const chosen = v.platforms[state.platform] && state.platform !== "metal" ? state.platform : "aws";
  for (const [name, p] of clouds) option(platform, name, p.label, name === chosen);
  const board = $("board");
  board.replaceChildren();
  for (const b of v.boards) option(board, b.name, b.name, b.name === state.board);
  if (sbc && !v.boards.length) option(board, "", "no boards for this version", true);

  const name = sbc ? "metal" : cloud ? platform.value : "metal";
  const p = v.platforms[name];
  const archs = sbc ? ["arm64"] : p.archs;
  const arch = $("arch");
  arch.replaceChildren();
  for (const a of archs) option(arch, a, a, a === state.arch);
  $("secureboot-field").hidden = sbc || !p.secureboot;
  $("secureboot").checked = state.secureboot;

  if (renderedVersion !== state.version) await renderExtensions(state);
  return v;
}

let renderedVersion = null;

async function renderExtensions(state) {
  renderedVersion = state.version;
  const catalog = (await getJSON(fill(data.paths.extensions, { version: state.version }))) ?? [];
  const list = $("extensions");
  const picked = new Set(state.extensions);
  list.replaceChildren();
  for (const e of catalog) {
    if (data.hiddenExtensions.includes(e.name)) continue;
    const li = document.createElement("li");
    li.dataset.search = `${e.name} ${e.author} ${e.description}`.toLowerCase();
    const label = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.value = e.name;
    box.checked = picked.has(e.name);
    label.append(box, " ", e.name);
    const desc = document.createElement("span");
    desc.className = "desc";
    desc.textContent = `${e.author}: ${e.description}`;
    li.append(label, desc);
    list.append(li);
  }
  filterExtensions();
}

function filterExtensions() {
  const words = $("ext-search").value.toLowerCase().split(/\s+/).filter(Boolean);
  let shown = 0;
  for (const li of $("extensions").children) {
    li.hidden = !words.every((w) => li.dataset.search.includes(w));
    if (!li.hidden) shown += 1;
  }
  $("ext-count").textContent = `${shown} extensions shown`;
}

function buildSchematic(state, v) {
  const c = {};
  if (v.embeddedConfig && state.embedded) c.embeddedMachineConfiguration = state.embedded;
  const args = state.cmdline.split(/\s+/).filter(Boolean);
  if (args.length) c.extraKernelArgs = args;
  const meta = parseMeta(state.meta);
  if (meta.length) c.meta = meta;
  // Upstream's UI sorts the extensions (Go sort.Strings: byte order).
  const extensions = [...state.extensions].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  if (extensions.length) c.systemExtensions = { officialExtensions: extensions };
  if (v.bootloader && state.bootloader !== "auto") c.bootloader = state.bootloader;
  const s = {};
  if (state.target === "sbc") {
    const b = v.boards.find((x) => x.name === state.board);
    if (b) {
      s.overlay = { image: b.image, name: b.name };
      const options = parseOptions(state.overlayOptions);
      if (Object.keys(options).length) s.overlay.options = options;
    }
  }
  s.customization = c;
  return s;
}

// ---- the result -------------------------------------------------------------------------------

async function published(path) {
  try {
    const r = await fetch(new URL(path, root), { method: "HEAD", cache: "no-store" });
    return r.ok;
  } catch {
    return false;
  }
}

function linkItem(name, path, state, committed) {
  const li = document.createElement("li");
  li.className = state;
  const badge = document.createElement("span");
  badge.className = "badge";
  if (state === "published") {
    const a = document.createElement("a");
    a.href = new URL(path, root).href;
    a.textContent = name;
    a.setAttribute("download", "");
    badge.textContent = "published";
    li.append(a, " ", badge);
    for (const suffix of [...data.checksums, data.signature]) {
      const side = document.createElement("a");
      side.className = "side";
      side.href = new URL(path + suffix, root).href;
      side.textContent = suffix.slice(1);
      li.append(" ", side);
    }
  } else if (state === "on-demand") {
    const a = document.createElement("a");
    a.href = data.serverURL.replace(/\/$/, "") + "/" + path;
    a.textContent = name;
    badge.textContent = "built on demand";
    li.append(a, " ", badge);
  } else {
    const span = document.createElement("span");
    span.textContent = name;
    // A published schematic is in schematics/ already: the asset is outside the build targets.
    badge.textContent = committed
      ? "not built: not among this factory's targets"
      : "not built yet: commit this file to schematics/";
    li.append(span, " ", badge);
  }
  return li;
}

let generation = 0;

// On-demand builds need the server to know the schematic: POST it (a simple CORS request).
async function register(yaml, id) {
  const note = $("server-note");
  try {
    const r = await fetch(data.serverURL.replace(/\/$/, "") + "/schematics", { method: "POST", body: yaml });
    const answer = r.ok ? await r.json() : null;
    note.textContent = answer && answer.id === id
      ? "The build server knows this schematic: the on-demand links build it."
      : `The build server refused this schematic (HTTP ${r.status}).`;
  } catch {
    note.textContent = "The build server could not be reached: on-demand links may fail.";
  }
  note.hidden = false;
}

async function renderResult(state, v, s) {
  const mine = ++generation;
  const yaml = fixed ? fixed.yaml : canonicalYAML(s);
  const id = fixed ? fixed.id : schematicID(s);
  $("schematic-id").textContent = id;
  $("schematic-yaml").textContent = yaml;
  const download = $("yaml-download");
  if (download.href.startsWith("blob:")) URL.revokeObjectURL(download.href);
  download.href = URL.createObjectURL(new Blob([yaml], { type: "application/yaml" }));
  download.download = `${id.slice(0, 12)}.yaml`;
  const pub = data.public[id];
  $("public-note").hidden = !pub && !fixed;
  if (fixed) {
    $("public-note").textContent = "Showing the published schematic of the link; change any choice to make a new one.";
  }
  if (pub) {
    $("public-note").replaceChildren("This is the published schematic ");
    const a = document.createElement("a");
    a.href = new URL(fill(data.paths.page, { id, version: pub.versions.includes(state.version) ? state.version : pub.versions[0] }), root).href;
    a.textContent = pub.label;
    $("public-note").append(a, ".");
  }

  const name = state.target === "cloud" ? state.platform : "metal";
  const p = v.platforms[name];
  const key = state.secureboot ? `${state.arch}-secureboot` : state.arch;
  const assets = p.assets[key] ?? [];
  const paths = assets.map((asset) => fill(data.paths.image, { id, version: state.version, asset }));
  const states = await Promise.all(paths.map(async (path) => {
    if (await published(path)) return "published";
    return data.serverURL ? "on-demand" : "not-built";
  }));
  if (mine !== generation) return;
  const committed = Boolean(pub || fixed);
  $("links").replaceChildren(...assets.map((asset, i) => linkItem(asset, paths[i], states[i], committed)));
  $("yaml-note").hidden = committed || states.every((x) => x === "published");
  if (data.serverURL && !states.every((x) => x === "published")) await register(yaml, id);

  $("pxe-block").hidden = !p.pxe;
  const pxeName = `${name}-${state.arch}${state.secureboot ? "-secureboot" : ""}`;
  $("pxe-url").textContent = new URL(fill(data.paths.pxe, { id, version: state.version, asset: pxeName }), root).href;
  const image = name !== "metal" && v.platformInstaller ? `${name}-installer` : "installer";
  $("installer").textContent = `${data.registryHost}/${image}${state.secureboot ? "-secureboot" : ""}/${id}:${state.version}\n`;
  $("mirror").textContent = data.mirror;
  const minor = "v" + state.version.slice(1).split(".").slice(0, 2).join(".");
  for (const [anchor, page] of [["doc-whatsnew", "introduction/what-is-new/"], ["doc-support", "introduction/support-matrix/"],
    ["doc-start", "introduction/getting-started/"], ["doc-upgrade", "talos-guides/upgrading-talos/"]]) {
    $(anchor).href = `https://www.talos.dev/${minor}/${page}`;
  }
  $("result").hidden = false;
  document.body.dataset.ready = id;
}

async function update(state) {
  const v = await renderControls(state);
  const now = { ...currentState(), embedded: state.embedded ?? $("embedded").value };
  writeQuery(now);
  let s;
  try {
    s = buildSchematic(now, v);
    $("form-error").textContent = "";
  } catch (e) {
    $("form-error").textContent = e.message;
    return;
  }
  await renderResult(now, v, s);
}

async function publishedSchematic(id) {
  const note = $("public-note");
  note.hidden = false;
  const r = /^[0-9a-f]{64}$/.test(id) ? await fetch(new URL(fill(data.paths.schematic, { id }), root)) : null;
  if (!r || !r.ok) {
    note.textContent = `Schematic ${id} is not published here.`;
    return null;
  }
  const bytes = new Uint8Array(await r.arrayBuffer());
  if (sha256Hex(bytes) !== id) {
    note.textContent = `The published file for ${id} does not hash to its ID.`;
    return null;
  }
  return { id, yaml: new TextDecoder().decode(bytes) };
}

async function main() {
  data = await getJSON("ui/data.json");
  const state = readQuery();
  const wanted = new URLSearchParams(location.search).get("schematic-id");
  if (wanted && !data.public[wanted]) fixed = await publishedSchematic(wanted);
  state.target = ["metal", "cloud", "sbc"].includes(state.target) ? state.target : "metal";
  const versions = data.groups.flatMap((g) => g.versions);
  if (!versions.includes(state.version)) state.version = data.defaultVersion;
  $("cmdline").value = state.cmdline;
  $("bootloader").value = state.bootloader;
  $("meta").value = state.meta;
  $("overlay-options").value = state.overlayOptions;
  $("embedded").value = state.embedded ?? "";
  form.hidden = false;
  await update(state);
  form.addEventListener("input", (event) => {
    if (event.target.id === "ext-search") {
      filterExtensions();
      return;
    }
    fixed = null;
    update(currentState());
  });
}

main().catch((e) => {
  document.body.dataset.error = String(e);
  $("form-error").textContent = `The wizard could not start: ${e.message}`;
  form.hidden = false;
});
