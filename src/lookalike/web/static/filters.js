// The filter controls, built from GET /api/facets?filter=...: one choice list per field, whose counts
// follow the other filters chosen (the server counts each field under every filter but its own), and a
// low-high pair for numeric fields such as the price. The chosen values live in `filters` (field -> the
// value, or "low..high" for a range), which app.js keeps in the address bar.

import { make } from "./cards.js";
import { parseRange } from "./address.js";

const label = (name) => name.replaceAll("_", " ").replace(/^./, (first) => first.toUpperCase());

export function renderFilters(container, facets, filters) {
  const rows = [];
  let index = 0;
  for (const [name, values] of Object.entries(facets.fields ?? {})) {
    const select = document.createElement("select");
    select.id = `filter-${index++}`; // field names may hold any character: not fit for an id
    select.dataset.field = name;
    select.append(new Option("Any", ""));
    for (const [value, count] of Object.entries(values)) {
      const option = new Option(`${value} (${Number(count).toLocaleString()})`, value);
      option.disabled = count === 0 && filters[name] !== value; // nothing left with the other filters
      select.append(option);
    }
    rows.push(row(name, select));
  }
  for (const [name, span] of Object.entries(facets.ranges ?? {})) {
    rows.push(rangeRow(name, span, index++));
  }
  container.replaceChildren(...rows);
  syncFilters(container, filters);
}

function row(name, control) {
  const caption = make("label", "", label(name));
  caption.htmlFor = control.id;
  const wrapper = make("div", "field");
  wrapper.append(caption, control);
  return wrapper;
}

function rangeRow(name, span, index) {
  const wrapper = make("fieldset", "field range");
  wrapper.dataset.range = name;
  wrapper.append(make("legend", "", label(name)));
  const pair = make("div", "range-pair");
  for (const side of ["low", "high"]) {
    const input = document.createElement("input");
    input.type = "number";
    input.inputMode = "decimal";
    input.step = "any";
    input.id = `range-${index}-${side}`;
    input.dataset.side = side;
    input.placeholder = formatBound(side === "low" ? span.min : span.max);
    input.setAttribute("aria-label", `${label(name)}, ${side === "low" ? "from" : "up to"}`);
    pair.append(input);
    if (side === "low") pair.append(make("span", "range-dash", "–"));
  }
  wrapper.append(pair);
  return wrapper;
}

const formatBound = (value) => (Number.isInteger(value) ? String(value) : Number(value).toFixed(2));

// Sets the controls to `filters` (after an address was loaded, back/forward, or the lists were rebuilt).
export function syncFilters(container, filters) {
  for (const select of container.querySelectorAll("select[data-field]")) {
    const value = filters[select.dataset.field] ?? "";
    if (![...select.options].some((option) => option.value === value)) select.append(new Option(value, value));
    select.value = value;
  }
  for (const fieldset of container.querySelectorAll("[data-range]")) {
    const range = parseRange(filters[fieldset.dataset.range]);
    for (const input of fieldset.querySelectorAll("input")) {
      const bound = range?.[input.dataset.side];
      input.value = bound === null || bound === undefined ? "" : String(bound);
    }
  }
}

// The filter a control's change asks for: [field, value] (value "" clears the field).
export function changeOf(target) {
  if (target.dataset.field !== undefined) return [target.dataset.field, target.value];
  const fieldset = target.closest("[data-range]");
  if (!fieldset) return null;
  const [low, high] = [...fieldset.querySelectorAll("input")].map((input) => input.value.trim());
  return [fieldset.dataset.range, low || high ? `${low}..${high}` : ""];
}
