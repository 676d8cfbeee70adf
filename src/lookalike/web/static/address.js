// The search in the address bar, so it can be shared, reloaded and walked with back/forward:
// ?id= | ?url= | ?ref=, then &k=, &f.<field>=<value> (or <low>..<high> for a range), &crop=l,t,r,b,
// &colour=0..1, &more=<ids> and &less=<ids> (the shopper's "more/less like this").

export const DEFAULT_K = 12;
export const MAX_K = 100;
export const QUERY_KEYS = ["id", "url", "ref"];
const IDS_SEPARATOR = "\n"; // ids may hold commas; a newline is never in an id the API accepts

// A fresh search state: what the page searches with and how.
export function emptyState() {
  return { query: null, k: DEFAULT_K, filters: {}, crop: null, colour: null, positive: [], negative: [] };
}

export function readLocation(search = location.search) {
  const params = new URLSearchParams(search);
  const state = emptyState();
  const key = QUERY_KEYS.find((name) => params.get(name));
  if (key) state.query = { [key]: params.get(key) };
  const k = Number.parseInt(params.get("k"), 10);
  if (k >= 1 && k <= MAX_K) state.k = k;
  for (const [name, value] of params) {
    if (name.startsWith("f.") && name.length > 2 && value !== "") state.filters[name.slice(2)] = value;
  }
  state.crop = parseCrop(params.get("crop"));
  const colour = Number.parseFloat(params.get("colour"));
  if (colour >= 0 && colour <= 1) state.colour = colour;
  state.positive = idsOf(params.get("more"));
  state.negative = idsOf(params.get("less"));
  return state;
}

export function paramsOf(state) {
  const params = new URLSearchParams();
  for (const key of QUERY_KEYS) if (state.query?.[key]) params.set(key, state.query[key]);
  params.set("k", state.k);
  for (const [field, value] of Object.entries(state.filters)) params.set(`f.${field}`, value);
  if (state.crop) params.set("crop", state.crop.map((value) => value.toFixed(3)).join(","));
  if (state.colour !== null) params.set("colour", String(state.colour));
  if (state.positive.length) params.set("more", state.positive.join(IDS_SEPARATOR));
  if (state.negative.length) params.set("less", state.negative.join(IDS_SEPARATOR));
  return params;
}

// A new history entry per search; the very same search (same address) adds none.
export function remember(state) {
  const address = `${location.pathname}?${paramsOf(state)}`;
  if (address !== location.pathname + location.search) history.pushState(null, "", address);
}

function parseCrop(text) {
  const values = (text ?? "").split(",").map(Number);
  if (values.length !== 4 || values.some((value) => !(value >= 0 && value <= 1))) return null;
  const [left, top, right, bottom] = values;
  return right > left && bottom > top ? values : null;
}

function idsOf(text) {
  return text ? text.split(IDS_SEPARATOR).filter(Boolean) : [];
}

// A range filter's address form, "10..50" (either side may be empty): the API's {gte, lte}.
export function parseRange(text) {
  const match = /^(-?[\d.]*)\.\.(-?[\d.]*)$/.exec(text ?? "");
  if (!match) return null;
  const [low, high] = [match[1], match[2]].map((side) => (side === "" ? null : Number(side)));
  if ([low, high].some((side) => side !== null && !Number.isFinite(side)) || (low === null && high === null)) return null;
  return { low, high };
}
