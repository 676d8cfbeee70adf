// Product cards and the detail view: what a shopper needs (title, price, brand or category, a link to the
// product), from the metadata fields the server's display setting names (GET /api/info: display.fields).
// Scores, ids and tiers are there too, shown only with "Show scores" (body.show-details).
// Everything from the server reaches the DOM through textContent or attributes, never as HTML.

let display = { fields: {}, currency_code: null };

export function setDisplay(value) {
  if (value?.fields) display = value;
}

const field = (metadata, role) => {
  const name = display.fields[role];
  return name === undefined ? undefined : metadata[name];
};

export function titleOf(hit) {
  const metadata = hit.metadata ?? {};
  const title = field(metadata, "title") ?? field(metadata, "category");
  if (title !== undefined && title !== null && title !== "") return String(title);
  const text = Object.values(metadata).find((value) => typeof value === "string");
  return text ?? `Item ${hit.id}`;
}

export function priceOf(metadata) {
  const price = Number(field(metadata, "price"));
  if (field(metadata, "price") === undefined || field(metadata, "price") === null || !Number.isFinite(price)) return "";
  const currency = field(metadata, "currency") ?? display.currency_code;
  if (typeof currency === "string" && /^[A-Za-z]{3}$/.test(currency)) {
    try {
      return new Intl.NumberFormat(undefined, { style: "currency", currency: currency.toUpperCase() }).format(price);
    } catch {
      // an unknown code: the number and the code as they are
    }
    return `${price.toFixed(2)} ${currency}`;
  }
  return price.toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
}

// Only web links become "open product" links: a javascript: or data: value must never be clickable.
export function productLink(metadata) {
  const url = field(metadata, "url");
  return typeof url === "string" && /^https?:\/\//i.test(url) ? url : null;
}

function subtitleOf(metadata) {
  const title = field(metadata, "title");
  const parts = [field(metadata, "brand"), title !== undefined ? field(metadata, "category") : undefined];
  return parts.filter((part) => part !== undefined && part !== null && part !== "").map(String).join(" · ");
}

export function make(tag, className, text = "") {
  const node = document.createElement(tag);
  if (className) node.className = className;
  node.textContent = text;
  return node;
}

const TIER_WORDS = { same_item: "Same item", similar: "Similar", none: "Not a close match" };

// A card: the picture and title open the detail view; "More like this" / "Less like this" steer the
// search (app.js handles the clicks by their data-action); "View product" is an ordinary link out.
export function resultCard(hit, { searchHref }) {
  const metadata = hit.metadata ?? {};
  const title = titleOf(hit);
  const card = make("article", "result");
  card.dataset.id = hit.id;
  card.dataset.score = String(hit.score);
  if (hit.tier) card.dataset.tier = hit.tier;

  const open = make("a", "card-open");
  open.href = searchHref(hit.id);
  open.dataset.action = "open";
  open.setAttribute("aria-label", `${title}: details`);
  const image = document.createElement("img");
  image.src = hit.thumbnail_url ?? hit.image_url;
  image.loading = "lazy";
  image.decoding = "async";
  image.width = image.height = 320; // reserves the square before the thumbnail arrives
  image.alt = title;
  open.append(image);
  if (hit.tier === "same_item") open.append(make("span", "badge same", "Same item"));

  const body = make("div", "card-body");
  body.append(make("h3", "card-title", title));
  const price = priceOf(metadata);
  if (price) body.append(make("p", "card-price", price));
  const subtitle = subtitleOf(metadata);
  if (subtitle) body.append(make("p", "card-meta", subtitle));
  if (hit.duplicates?.length) {
    const copies = hit.duplicates.length;
    body.append(make("p", "card-copies", `+${copies} near-identical ${copies === 1 ? "copy" : "copies"}`));
  }
  const details = make("p", "card-details details-only");
  details.append(make("span", "score", Number(hit.score).toFixed(3)));
  if (hit.tier) details.append(make("span", "tier", TIER_WORDS[hit.tier] ?? hit.tier));
  details.append(make("span", "id", hit.id));
  body.append(details);

  const link = productLink(metadata);
  if (link) {
    const out = make("a", "product-link", "View product");
    out.href = link;
    out.target = "_blank";
    out.rel = "noopener noreferrer";
    body.append(out);
  }
  const actions = make("div", "card-actions");
  const more = make("button", "chip more-like", "More like this");
  more.type = "button";
  more.dataset.action = "more";
  more.setAttribute("aria-label", `More like ${title}`);
  const less = make("button", "chip less-like", "Less like this");
  less.type = "button";
  less.dataset.action = "less";
  less.setAttribute("aria-label", `Less like ${title}`);
  actions.append(more, less);
  body.append(actions);
  card.append(open, body);
  return card;
}

// The detail view: the large picture, every metadata field, "Open product" and "Search with this item".
export function fillDetail(dialog, hit, { searchHref }) {
  const metadata = hit.metadata ?? {};
  const title = titleOf(hit);
  dialog.querySelector(".detail-title").textContent = title;
  const image = dialog.querySelector(".detail-image");
  image.src = hit.image_url;
  image.alt = title;
  dialog.querySelector(".detail-price").textContent = priceOf(metadata);
  const list = dialog.querySelector(".detail-fields");
  list.replaceChildren();
  for (const [name, value] of Object.entries(metadata)) {
    list.append(make("dt", "", name.replaceAll("_", " ")), make("dd", "", typeof value === "object" ? JSON.stringify(value) : String(value)));
  }
  const scores = dialog.querySelector(".detail-scores");
  scores.textContent = `Similarity ${Number(hit.score).toFixed(3)}${hit.tier ? ` · ${TIER_WORDS[hit.tier] ?? hit.tier}` : ""} · id ${hit.id}`;
  const out = dialog.querySelector(".detail-product");
  const link = productLink(metadata);
  out.hidden = !link;
  if (link) out.href = link;
  const search = dialog.querySelector(".detail-search");
  search.href = searchHref(hit.id);
  search.dataset.id = hit.id;
}
