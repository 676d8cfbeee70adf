// The lookalike search page: show a photo, see the catalogue's look-alikes.
//
// The search lives in the address bar (?id= | ?url= | ?ref=, then &k= and &f.<field>=), so a search can be
// shared, reloaded and walked with back/forward; the address bar is read back with readLocation().
// Everything from the server reaches the DOM through textContent or attributes, never as HTML.

const $ = (selector) => document.querySelector(selector);
const el = {
  about: $("#about"), file: $("#file-input"), camera: $("#camera-input"), urlForm: $("#url-form"),
  urlInput: $("#url-input"), k: $("#k-select"), filters: $("#filters"), section: $("#results-section"),
  preview: $("#query-preview"), statusText: $("#status-text"), error: $("#error"), results: $("#results"),
};

const DEFAULT_K = 12;
const MAX_K = 100;
const QUERY_KEYS = ["id", "url", "ref"];
const IDLE_TEXT = "Show a photo to find similar products.";
const EXPIRED_REF = "This search's photo is no longer on the server; upload it again.";
const OFFLINE = "Could not reach the server. Check your connection and try again.";

// What the page searches with: query is {file}, {id}, {url} or {ref} (null before the first search).
const current = { query: null, k: DEFAULT_K, filters: {} };
let inFlight = null; // the running search's AbortController: a newer search cancels it
let objectUrl = null; // preview of the last file given, revoked when another file replaces it

class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

// ------------------------------------------------------------------------------------------ address bar

function readLocation() {
  const params = new URLSearchParams(location.search);
  const key = QUERY_KEYS.find((name) => params.get(name));
  const k = Number.parseInt(params.get("k"), 10);
  const filters = {};
  for (const [name, value] of params) {
    if (name.startsWith("f.") && name.length > 2 && value !== "") filters[name.slice(2)] = value;
  }
  return { query: key ? { [key]: params.get(key) } : null, k: k >= 1 && k <= MAX_K ? k : DEFAULT_K, filters };
}

function paramsOf({ query, k, filters }) {
  const params = new URLSearchParams();
  for (const key of QUERY_KEYS) if (query?.[key]) params.set(key, query[key]);
  params.set("k", k);
  for (const [field, value] of Object.entries(filters)) params.set(`f.${field}`, value);
  return params;
}

// A new history entry per search; re-running the very same search (same address) adds none.
function remember() {
  const address = `${location.pathname}?${paramsOf(current)}`;
  if (address !== location.pathname + location.search) history.pushState(null, "", address);
}

// ------------------------------------------------------------------------------------------ talking to the API

// Facet values are strings ("true", "12") while the metadata keeps their JSON type, and filters compare
// types strictly; so a chosen value is sent as a one-of list of both readings.
function typedValues(value) {
  if (value === "true" || value === "false") return [value === "true", value];
  if (/^-?\d+(\.\d+)?$/.test(value)) return [Number(value), value];
  return value;
}

function filterOf(filters) {
  const entries = Object.entries(filters).map(([field, value]) => [field, typedValues(value)]);
  return entries.length ? Object.fromEntries(entries) : null;
}

async function postSearch(query, signal) {
  const filter = filterOf(current.filters);
  let body;
  let headers = {};
  if (query.file) {
    body = new FormData();
    body.append("image", query.file);
    body.append("k", String(current.k));
    if (filter) body.append("filter", JSON.stringify(filter));
  } else {
    body = JSON.stringify({ ...query, k: current.k, ...(filter && { filter }) });
    headers = { "content-type": "application/json" };
  }
  const response = await fetch("/api/search", { method: "POST", body, headers, signal });
  const data = await response.json().catch(() => null); // a proxy's HTML error page is not JSON
  if (!response.ok || !data) {
    throw new ApiError(data?.error?.message || `The server answered with an error (${response.status}).`, response.status);
  }
  return data;
}

async function getJson(path) {
  const response = await fetch(path);
  if (!response.ok) throw new ApiError(`${path} answered ${response.status}`, response.status);
  return response.json();
}

// ------------------------------------------------------------------------------------------ searching

// Runs a search and shows its answer. `preview` is an image already at hand for the query (a clicked
// result's thumbnail); otherwise the page shows the file given, or the server's picture of the query.
async function search(query, { push = true, preview = null } = {}) {
  inFlight?.abort();
  const controller = new AbortController();
  inFlight = controller;
  current.query = query;
  if (push && !query.file) remember(); // an upload has no address until the server names its ref
  showQuery(query, preview);
  setState("loading");
  let data;
  try {
    data = await postSearch(query, controller.signal);
  } catch (error) {
    if (!controller.signal.aborted) showError(messageFor(error, query));
    return;
  }
  if (controller.signal.aborted) return; // replaced by a newer search: its answer is the one to show
  if (query.file && data.query?.ref) {
    current.query = { ref: data.query.ref };
    if (push) remember();
  }
  if (!el.preview.getAttribute("src")) setPreview(data.query?.image_url);
  showResults(data);
  setState("done");
  if (push) reveal();
}

function messageFor(error, query) {
  if (!(error instanceof ApiError)) return OFFLINE; // fetch rejects only when the request got no answer
  return error.status === 404 && query.ref ? EXPIRED_REF : error.message;
}

// Same query, new k or filters.
function rerun() {
  if (current.query) search(current.query, { preview: el.preview.getAttribute("src") });
}

function searchUrl(text) {
  if (isHttpUrl(text)) search({ url: text });
  else showError("Enter a link to an image that starts with http:// or https://.");
}

// Only a first sieve: the server checks the link properly (and refuses internal addresses).
const isHttpUrl = (text) => /^https?:\/\/\S/i.test(text);

// ------------------------------------------------------------------------------------------ showing

function setState(state) {
  document.body.dataset.state = state;
  el.results.setAttribute("aria-busy", String(state === "loading"));
  if (state !== "error") el.error.hidden = true;
  if (state === "loading") el.statusText.textContent = "Searching…";
}

function showQuery(query, preview) {
  if (query.file) {
    if (objectUrl) URL.revokeObjectURL(objectUrl);
    objectUrl = URL.createObjectURL(query.file);
    preview = objectUrl;
  }
  el.urlInput.value = query.url ?? "";
  setPreview(preview);
}

function setPreview(src) {
  el.preview.hidden = !src;
  if (src) el.preview.src = src;
  else el.preview.removeAttribute("src");
}

function showResults(data) {
  const hits = data.results ?? [];
  el.results.replaceChildren(...hits.map(resultCard));
  if (!hits.length) el.results.append(make("p", "empty", "No matches. Try another photo or remove a filter."));
  const count = `${hits.length} result${hits.length === 1 ? "" : "s"}`;
  const took = data.took_ms?.total;
  const timing = typeof took === "number" ? ` in ${took.toFixed(1)} ms` : "";
  el.statusText.textContent = `${count}${timing}${data.model ? ` · ${data.model}` : ""}`;
}

function showError(message) {
  el.error.textContent = message;
  el.error.hidden = false;
  el.results.replaceChildren(); // results of an earlier query would pass for this one's
  el.statusText.textContent = "Search failed.";
  setState("error");
}

// Brings a new answer into view (on a phone it sits below the controls); when the focused result was
// replaced by the new ones, the keyboard goes on from the top of the results.
function reveal() {
  const top = el.section.getBoundingClientRect().top;
  if (document.activeElement === document.body) el.section.focus();
  else if (top < 0 || top > innerHeight * 0.7) el.section.scrollIntoView({ block: "start" });
}

function showIdle() {
  inFlight?.abort();
  current.query = null;
  el.urlInput.value = "";
  setPreview(null);
  el.results.replaceChildren();
  el.statusText.textContent = IDLE_TEXT;
  setState("idle");
}

// A result is a real link to its own "more like this" search: keyboard-focusable, and it can be opened
// in a new tab; a plain click searches in place (see onResultClick).
function resultCard(hit) {
  const label = nameOf(hit.metadata ?? {});
  const score = Number(hit.score).toFixed(2);
  const link = make("a", "result");
  link.href = `?${paramsOf({ ...current, query: { id: hit.id } })}`;
  link.dataset.id = hit.id;
  link.dataset.score = String(hit.score);
  link.title = "Find more like this";
  link.setAttribute("aria-label", `More like ${label ? `${label}, ` : ""}item ${hit.id} (similarity ${score})`);

  const image = document.createElement("img");
  image.src = hit.thumbnail_url ?? hit.image_url;
  image.loading = "lazy";
  image.decoding = "async";
  image.width = image.height = 320; // reserves the square before the thumbnail arrives
  image.alt = label ? `${label}, item ${hit.id}` : `Item ${hit.id}`;

  const caption = make("span", "caption");
  caption.append(make("span", "score", score));
  if (label) caption.append(make("span", "label", label));
  caption.append(make("span", "id", hit.id));
  link.append(image, caption);
  return link;
}

// The label names a product best; a catalogue without one shows its first text field instead.
function nameOf(metadata) {
  if (typeof metadata.label === "string") return metadata.label;
  return Object.values(metadata).find((value) => typeof value === "string") ?? "";
}

function make(tag, className, text = "") {
  const node = document.createElement(tag);
  if (className) node.className = className;
  node.textContent = text;
  return node;
}

// ------------------------------------------------------------------------------------------ controls

function renderFilters(fields) {
  const rows = Object.entries(fields).map(([field, values], index) => {
    const select = document.createElement("select");
    select.id = `filter-${index}`; // field names may hold any character: not fit for an id
    select.dataset.field = field;
    select.append(new Option("Any", ""));
    for (const [value, count] of Object.entries(values)) {
      select.append(new Option(`${value} (${Number(count).toLocaleString()})`, value));
    }
    const label = make("label", "", field.replaceAll("_", " "));
    label.htmlFor = select.id;
    const row = make("div", "field");
    row.append(label, select);
    return row;
  });
  el.filters.replaceChildren(...rows);
  syncControls();
}

// Sets the controls to `current`: after loading an address, going back, or building the filters.
function syncControls() {
  choose(el.k, String(current.k));
  for (const select of el.filters.querySelectorAll("select[data-field]")) {
    choose(select, current.filters[select.dataset.field] ?? "");
  }
}

// Selects a value, adding it first when the list lacks it (a shared address may carry any k or value).
function choose(select, value) {
  if (![...select.options].some((option) => option.value === value)) select.append(new Option(value, value));
  select.value = value;
}

function onFilterChange(event) {
  const field = event.target.dataset.field;
  if (field === undefined) return;
  if (event.target.value) current.filters[field] = event.target.value;
  else delete current.filters[field];
  rerun();
}

// ------------------------------------------------------------------------------------------ ways in

function onFileChosen(event) {
  const [file] = event.target.files;
  event.target.value = ""; // choosing the same file again must search again
  if (file) search({ file });
}

function onUrlSubmit(event) {
  event.preventDefault();
  searchUrl(el.urlInput.value.trim());
}

function isEditable(target) {
  return target instanceof HTMLElement && (target.isContentEditable || target.matches("input, textarea, select"));
}

// Ctrl/Cmd+V anywhere: an image searches; a link searches by URL, except while typing in a field.
function onPaste(event) {
  const data = event.clipboardData;
  if (!data) return;
  const fromItems = [...data.items].filter((item) => item.kind === "file").map((item) => item.getAsFile());
  const image = [...data.files, ...fromItems].find((file) => file?.type.startsWith("image/"));
  if (image) {
    event.preventDefault();
    search({ file: image });
    return;
  }
  const text = data.getData("text").trim();
  if (!isEditable(event.target) && isHttpUrl(text)) {
    event.preventDefault();
    searchUrl(text);
  }
}

// Dragging over the page lights up the drop zone; dragenter/dragleave fire for every child, hence a count.
let dragDepth = 0;

function onDragEnterOrLeave(event) {
  dragDepth = Math.max(0, dragDepth + (event.type === "dragenter" ? 1 : -1));
  document.body.classList.toggle("dragging", dragDepth > 0);
}

function onDragOver(event) {
  event.preventDefault(); // without this the browser would open the dropped file instead
  if (event.dataTransfer) event.dataTransfer.dropEffect = "copy";
}

// A dropped file searches; so does an image dragged from another web page, which arrives as a link.
function onDrop(event) {
  dragDepth = 0;
  document.body.classList.remove("dragging");
  const data = event.dataTransfer;
  const [file] = data?.files ?? [];
  if (file) {
    event.preventDefault();
    search({ file });
    return;
  }
  if (!data || isEditable(event.target)) return; // dropping text into the link field is ordinary typing
  event.preventDefault();
  const link = data.getData("text/uri-list").split("\n").find((line) => line && !line.startsWith("#"));
  const text = (link || data.getData("text/plain")).trim();
  if (text) searchUrl(text);
}

function onResultClick(event) {
  const card = event.target.closest(".result");
  // Modified clicks keep the browser's meaning (new tab, new window).
  if (!card || event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey || event.altKey) return;
  event.preventDefault();
  search({ id: card.dataset.id }, { preview: card.querySelector("img")?.src });
}

// Links answer Enter by themselves; Space is added so results act like the buttons they look like.
function onResultKey(event) {
  if (event.key === " " && event.target.matches(".result")) {
    event.preventDefault();
    event.target.click();
  }
}

// Back/forward: show the entry's search again, without adding an entry.
function onHistory() {
  const { query, k, filters } = readLocation();
  Object.assign(current, { k, filters });
  syncControls();
  if (query) search(query, { push: false });
  else showIdle();
}

// ------------------------------------------------------------------------------------------ start

function loadInfo() {
  getJson("/api/info")
    .then((info) => (el.about.textContent = `${Number(info.items).toLocaleString()} products · ${info.model}`))
    .catch(() => {}); // only a caption: the page works without it
}

function loadFacets() {
  getJson("/api/facets")
    .then(({ fields }) => renderFilters(fields ?? {}))
    .catch(() => el.filters.replaceChildren()); // no filters; searching still works
}

function wire() {
  el.file.addEventListener("change", onFileChosen);
  el.camera.addEventListener("change", onFileChosen);
  el.urlForm.addEventListener("submit", onUrlSubmit);
  el.k.addEventListener("change", () => {
    current.k = Number(el.k.value);
    rerun();
  });
  el.filters.addEventListener("change", onFilterChange);
  el.results.addEventListener("click", onResultClick);
  el.results.addEventListener("keydown", onResultKey);
  el.preview.addEventListener("error", () => (el.preview.hidden = true)); // e.g. a file that is no image
  document.addEventListener("paste", onPaste);
  document.addEventListener("dragenter", onDragEnterOrLeave);
  document.addEventListener("dragleave", onDragEnterOrLeave);
  document.addEventListener("dragover", onDragOver);
  document.addEventListener("drop", onDrop);
  window.addEventListener("popstate", onHistory);
}

wire();
onHistory(); // the address may already hold a search (a shared link, a reload)
loadInfo();
loadFacets();
