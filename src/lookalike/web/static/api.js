// Talking to the lookalike API: one search call for every way in, and the filter's wire form.

import { parseRange } from "./address.js";

export class ApiError extends Error {
  constructor(message, status, code = null, reason = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.reason = reason;
  }
}

// Choice values arrive as strings ("true", "12") while the metadata keeps their JSON type, and filters
// compare types strictly; so a chosen value is sent as a one-of list of both readings.
function typedValues(value) {
  if (value === "true" || value === "false") return [value === "true", value];
  if (/^-?\d+(\.\d+)?$/.test(value)) return [Number(value), value];
  return value;
}

export function filterOf(filters) {
  const entries = Object.entries(filters).map(([field, value]) => {
    const range = parseRange(value);
    if (!range) return [field, typedValues(value)];
    const bounds = {};
    if (range.low !== null) bounds.gte = range.low;
    if (range.high !== null) bounds.lte = range.high;
    return [field, bounds];
  });
  return entries.length ? Object.fromEntries(entries) : null;
}

// One search: `state` says how (k, filters, crop, colour, more/less like), `query` with what
// ({file} uploads as multipart; {id}, {url}, {ref} go as JSON), `offset` which page.
export async function postSearch(state, query, { offset = 0, signal } = {}) {
  const options = {
    k: state.k,
    filter: filterOf(state.filters),
    crop: state.crop,
    colour: state.colour,
    offset: offset || null,
  };
  let body;
  let headers = {};
  if (query.file) {
    body = new FormData();
    body.append("image", query.file);
    for (const [name, value] of Object.entries(options)) {
      if (value === null) continue;
      body.append(name, typeof value === "object" ? (name === "crop" ? value.join(",") : JSON.stringify(value)) : String(value));
    }
  } else {
    const json = { ...query, positive: state.positive, negative: state.negative };
    for (const [name, value] of Object.entries(options)) if (value !== null) json[name] = value;
    body = JSON.stringify(json);
    headers = { "content-type": "application/json" };
  }
  const response = await fetch("api/search", { method: "POST", body, headers, signal });
  const data = await response.json().catch(() => null); // a proxy's HTML error page is not JSON
  if (!response.ok || !data) {
    const error = data?.error ?? {};
    throw new ApiError(error.message || `The server answered ${response.status}.`, response.status, error.code, error.reason);
  }
  return data;
}

export async function getJson(path) {
  const response = await fetch(path);
  if (!response.ok) throw new ApiError(`${path} answered ${response.status}`, response.status);
  return response.json();
}
