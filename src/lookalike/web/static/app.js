// The lookalike search page: show a photo, see the catalogue's look-alikes, steer them.
//
// This module holds the page's state and wires the ways in (upload, camera, drop, paste, link, a result's
// "more like this") to one search function; address.js keeps the search in the address bar, api.js talks
// to the server, cards.js draws products, filters.js the filter controls, crop.js the region chooser,
// downscale.js shrinks phone photos, messages.js words failures for shoppers.

import { emptyState, paramsOf, readLocation, remember } from "./address.js";
import { filterOf, getJson, postSearch } from "./api.js";
import { fillDetail, make, resultCard, setDisplay } from "./cards.js";
import { attachCrop, show as showCrop } from "./crop.js";
import { downscale } from "./downscale.js";
import { changeOf, renderFilters, syncFilters } from "./filters.js";
import { messageFor } from "./messages.js";

const $ = (selector) => document.querySelector(selector);
const el = {
  about: $("#about"), file: $("#file-input"), camera: $("#camera-input"), urlForm: $("#url-form"),
  urlInput: $("#url-input"), k: $("#k-select"), filters: $("#filters"), colour: $("#colour-input"),
  detailsToggle: $("#details-toggle"), section: $("#results-section"), frame: $("#query-frame"),
  preview: $("#query-preview"), statusText: $("#status-text"), cropHint: $("#crop-hint"),
  cropClear: $("#crop-clear"), steering: $("#steering"), steeringText: $("#steering-text"),
  steeringClear: $("#steering-clear"), error: $("#error"), errorText: $("#error-text"),
  errorDetail: $("#error-detail"), verdict: $("#verdict"), verdictText: $("#verdict-text"),
  verdictShow: $("#verdict-show"), results: $("#results"), more: $("#more-results"), detail: $("#detail"),
};

const IDLE_TEXT = "Show a photo to find similar products.";
const DETAILS_KEY = "lookalike.details";

const current = emptyState(); // what the page searches with and how (see address.js)
const shown = new Map(); // id -> result, for the detail view
let info = { colour_weight: 0 };
let inFlight = null; // the running search's AbortController: a newer search cancels it
let objectUrl = null; // preview of the last file given, revoked when another file replaces it
let nextOffset = null;
let facetsAsked = 0;

const searchHref = (id) => `?${paramsOf({ ...emptyState(), k: current.k, filters: current.filters, query: { id } })}`;

// ------------------------------------------------------------------------------------------ searching

// A search with a new picture: a region, "more/less like" and the page belong to the old one.
function searchNew(query, options = {}) {
  Object.assign(current, { crop: null, positive: [], negative: [] });
  return search(query, options);
}

// Runs a search and shows its answer. `preview` is an image already at hand for the query (a clicked
// result's thumbnail); `append` adds the next page below the results shown.
async function search(query, { push = true, preview = null, append = false } = {}) {
  inFlight?.abort();
  const controller = new AbortController();
  inFlight = controller;
  if (query.file) query = { file: await downscale(query.file) };
  if (controller.signal.aborted) return;
  current.query = query;
  if (push && !query.file) remember(current); // an upload has no address until the server names its ref
  if (!append) showQuery(query, preview);
  setState("loading");
  let data;
  try {
    data = await postSearch(current, query, { offset: append ? nextOffset : 0, signal: controller.signal });
  } catch (error) {
    if (controller.signal.aborted) return;
    // A failed upload must not leave the previous search in the address bar (it would pass for this one).
    if (query.file && push) history.pushState(null, "", `${location.pathname}?${paramsOf({ ...current, query: null })}`);
    showError(messageFor(error, query), error.message);
    return;
  }
  if (controller.signal.aborted) return; // replaced by a newer search: its answer is the one to show
  if (query.file && data.query?.ref) {
    current.query = { ref: data.query.ref };
    if (push) remember(current);
  }
  if (!el.preview.getAttribute("src")) setPreview(data.query?.image_url);
  showResults(data, append);
  setState("done");
  if (push && !append) reveal();
}

// Same query, new k, filters, colour, region or steering.
function rerun() {
  if (current.query) search(current.query, { preview: el.preview.getAttribute("src") });
}

function searchUrl(text) {
  if (isHttpUrl(text)) searchNew({ url: text });
  else showError("Enter a link to a picture that starts with http:// or https://.", "");
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
  el.frame.hidden = !src;
  if (src) el.preview.src = src;
  else el.preview.removeAttribute("src");
}

function showResults(data, append) {
  const hits = data.results ?? [];
  if (!append) {
    shown.clear();
    el.results.replaceChildren();
  }
  for (const hit of hits) shown.set(hit.id, hit);
  el.results.append(...hits.map((hit) => resultCard(hit, { searchHref })));
  nextOffset = data.next_offset ?? null;
  el.more.hidden = nextOffset === null;
  if (!append) showVerdict(data.match, hits.length);
  const count = shown.size;
  const took = data.took_ms?.total;
  const hidden = !el.verdictShow.hidden;
  el.statusText.replaceChildren(
    hidden ? "No close match" : `${count} result${count === 1 ? "" : "s"}`,
    make("span", "details-only", `${typeof took === "number" ? ` in ${took.toFixed(1)} ms` : ""}${data.model ? ` · ${data.model}` : ""}`),
  );
  showRegion(data.query?.box);
  showSteering();
}

// The catalogue's calibration says how close the best match is: "same item" is worth saying, and "no
// close match" replaces the nearest items (unrelated ones would pass for matches) until asked for.
function showVerdict(match, count) {
  el.verdict.dataset.match = match ?? "";
  const none = match === "none" && count > 0;
  el.results.hidden = none;
  el.verdictShow.hidden = !none;
  if (none) el.more.hidden = true;
  if (!count) {
    el.verdict.hidden = false;
    el.verdictText.textContent = "No matches. Try another photo or remove a filter.";
  } else if (none) {
    el.verdict.hidden = false;
    el.verdictText.textContent = "No close match: nothing in this catalogue looks much like your photo.";
  } else if (match === "same_item") {
    el.verdict.hidden = false;
    el.verdictText.textContent = "Same item found: this product is in the catalogue.";
  } else {
    el.verdict.hidden = true;
  }
}

function showRegion(box) {
  const hasPicture = !el.frame.hidden;
  if (current.crop) showCrop(el.frame, current.crop, "chosen");
  else if (box) showCrop(el.frame, box, "suggested");
  else showCrop(el.frame, null);
  el.cropHint.hidden = !hasPicture || Boolean(current.crop);
  el.cropClear.hidden = !current.crop;
}

function showSteering() {
  const parts = [];
  if (current.positive.length) parts.push(`more like ${current.positive.length} item${current.positive.length > 1 ? "s" : ""}`);
  if (current.negative.length) parts.push(`less like ${current.negative.length} item${current.negative.length > 1 ? "s" : ""}`);
  el.steering.hidden = !parts.length;
  el.steeringText.textContent = parts.length ? `Steered: ${parts.join(", ")}.` : "";
}

function showError(message, detail) {
  el.errorText.textContent = message;
  el.errorDetail.textContent = detail || "";
  el.error.querySelector("details").hidden = !detail || detail === message;
  el.error.hidden = false;
  el.results.replaceChildren(); // results of an earlier query would pass for this one's
  shown.clear();
  el.verdict.hidden = true;
  el.more.hidden = true;
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
  shown.clear();
  el.verdict.hidden = el.more.hidden = el.cropHint.hidden = el.cropClear.hidden = el.steering.hidden = true;
  el.statusText.textContent = IDLE_TEXT;
  setState("idle");
}

// ------------------------------------------------------------------------------------------ results

function onResultClick(event) {
  const target = event.target.closest("[data-action]");
  const card = event.target.closest(".result");
  if (!target || !card) return;
  const id = card.dataset.id;
  const action = target.dataset.action;
  if (action === "open") {
    // Modified clicks keep the browser's meaning (a new tab with this item's search).
    if (event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    openDetail(shown.get(id));
  } else if (action === "more" || action === "less") {
    const [add, drop] = action === "more" ? ["positive", "negative"] : ["negative", "positive"];
    current[drop] = current[drop].filter((other) => other !== id);
    if (!current[add].includes(id)) current[add] = [...current[add], id];
    rerun();
  }
}

function openDetail(hit) {
  if (!hit) return;
  fillDetail(el.detail, hit, { searchHref });
  el.detail.showModal();
}

function onDetailSearch(event) {
  if (event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey || event.altKey) return;
  event.preventDefault();
  const id = event.currentTarget.dataset.id;
  el.detail.close();
  searchNew({ id }, { preview: shown.get(id)?.thumbnail_url });
}

// ------------------------------------------------------------------------------------------ controls

function onFilterChange(event) {
  const change = changeOf(event.target);
  if (!change) return;
  const [field, value] = change;
  if (value) current.filters[field] = value;
  else delete current.filters[field];
  loadFacets();
  rerun();
}

function syncControls() {
  el.k.value = String(current.k);
  if (el.k.value !== String(current.k)) {
    el.k.append(new Option(String(current.k), String(current.k)));
    el.k.value = String(current.k);
  }
  el.colour.value = String(current.colour ?? info.colour_weight ?? 0);
  syncFilters(el.filters, current.filters);
}

function setDetails(on) {
  document.body.classList.toggle("show-details", on);
  el.detailsToggle.checked = on;
  try {
    localStorage.setItem(DETAILS_KEY, on ? "1" : "");
  } catch {
    // storage may be off: the toggle still works for this page
  }
}

// ------------------------------------------------------------------------------------------ ways in

function onFileChosen(event) {
  const [file] = event.target.files;
  event.target.value = ""; // choosing the same file again must search again
  if (file) searchNew({ file });
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
    searchNew({ file: image });
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
    searchNew({ file });
    return;
  }
  if (!data || isEditable(event.target)) return; // dropping text into the link field is ordinary typing
  event.preventDefault();
  const link = data.getData("text/uri-list").split("\n").find((line) => line && !line.startsWith("#"));
  const text = (link || data.getData("text/plain")).trim();
  if (text) searchUrl(text);
}

// Back/forward: show the entry's search again, without adding an entry.
function onHistory() {
  Object.assign(current, readLocation());
  syncControls();
  loadFacets();
  if (current.query) search(current.query, { push: false });
  else showIdle();
}

// ------------------------------------------------------------------------------------------ start

function loadInfo() {
  return getJson("api/info")
    .then((answer) => {
      info = answer;
      setDisplay(answer.display);
      el.about.textContent = `${Number(answer.items).toLocaleString()} products`;
      el.about.append(make("span", "details-only", ` · ${answer.model}`));
      syncControls();
      // Drawn before the display was known: draw the titles and prices again.
      if (shown.size) for (const card of el.results.querySelectorAll(".result")) card.replaceWith(resultCard(shown.get(card.dataset.id), { searchHref }));
    })
    .catch(() => {}); // only captions: the page works without them
}

function loadFacets() {
  const asked = ++facetsAsked;
  const filter = filterOf(current.filters);
  const query = filter ? `?filter=${encodeURIComponent(JSON.stringify(filter))}` : "";
  getJson(`api/facets${query}`)
    .then((facets) => {
      if (asked === facetsAsked) renderFilters(el.filters, facets, current.filters);
    })
    .catch(() => {
      if (asked === facetsAsked && !el.filters.childElementCount) el.filters.replaceChildren(); // searching still works
    });
}

function wire() {
  el.file.addEventListener("change", onFileChosen);
  el.camera.addEventListener("change", onFileChosen);
  el.urlForm.addEventListener("submit", onUrlSubmit);
  el.k.addEventListener("change", () => {
    current.k = Number(el.k.value);
    rerun();
  });
  el.colour.addEventListener("change", () => {
    current.colour = Number(el.colour.value);
    rerun();
  });
  el.detailsToggle.addEventListener("change", () => setDetails(el.detailsToggle.checked));
  el.filters.addEventListener("change", onFilterChange);
  el.results.addEventListener("click", onResultClick);
  el.more.addEventListener("click", () => current.query && search(current.query, { push: false, append: true }));
  el.verdictShow.addEventListener("click", () => {
    el.verdictShow.hidden = true;
    el.results.hidden = false;
    el.statusText.firstChild.textContent = `${shown.size} nearest items`;
    el.more.hidden = nextOffset === null;
  });
  el.cropClear.addEventListener("click", () => {
    current.crop = null;
    rerun();
  });
  el.steeringClear.addEventListener("click", () => {
    current.positive = [];
    current.negative = [];
    rerun();
  });
  el.detail.querySelector(".detail-search").addEventListener("click", onDetailSearch);
  el.detail.addEventListener("click", (event) => event.target === el.detail && el.detail.close()); // the backdrop
  attachCrop(el.frame, {
    onCrop: (region) => {
      current.crop = region;
      rerun();
    },
  });
  el.frame.addEventListener("crop-cancel", () => showRegion(null));
  el.preview.addEventListener("error", () => (el.frame.hidden = true)); // e.g. a file that is no image
  document.addEventListener("paste", onPaste);
  document.addEventListener("dragenter", onDragEnterOrLeave);
  document.addEventListener("dragleave", onDragEnterOrLeave);
  document.addEventListener("dragover", onDragOver);
  document.addEventListener("drop", onDrop);
  window.addEventListener("popstate", onHistory);
}

let details = false;
try {
  details = localStorage.getItem(DETAILS_KEY) === "1";
} catch {
  // no storage: details start hidden
}
setDetails(details);
if (matchMedia("(max-width: 720px)").matches) $("#refine").open = false;
wire();
loadInfo(); // the display (which field is the title, the price) arrives once; cards are redrawn with it
onHistory(); // the address may already hold a search (a shared link, a reload)
