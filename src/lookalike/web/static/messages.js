// What a shopper reads when a search fails: plain sentences for the API's error codes. The API's own,
// precise message stays available under "Technical details" (see app.js).

import { ApiError } from "./api.js";

export const OFFLINE = "We could not reach the shop's search. Check your connection and try again.";
const FALLBACK = "Something went wrong with that search. Please try again.";

const BY_REASON = {
  not_an_image: "That link is a web page, not a picture. Open the picture itself and copy its address.",
  not_found: "Nothing is at that link any more (the site says it was not found).",
  http_error: "The site behind that link answered with an error. Try another picture.",
  timeout: "The site behind that link took too long to answer. Try again, or save the picture and upload it.",
  unreachable: "We could not reach the site behind that link. Check the address, or upload the picture.",
  too_large: "The picture behind that link is too large. Save it and upload it instead.",
};

const BY_CODE = {
  bad_image: "That file is not a picture we can read. Try a JPEG, PNG or WebP photo.",
  too_large: "That picture is too large. Try a smaller photo.",
  fetch_failed: "We could not get a picture from that link. Try another one, or upload the picture.",
  blocked_url: "That link cannot be used here. Try a picture from a public web site.",
  bad_filter: "Those filters do not fit this catalogue. Clear them and try again.",
  busy: "The search is busy right now. Please try again in a moment.",
  rate_limited: "That was a lot of searches at once. Please wait a moment and try again.",
  backend_unavailable: "The search is unavailable right now. Please try again in a moment.",
  bad_request: "The search could not use that request. Please try again.",
};

export function messageFor(error, query) {
  if (!(error instanceof ApiError)) return OFFLINE; // fetch rejects only when the request got no answer
  if (error.code === "not_found" || (error.status === 404 && !error.code)) {
    if (query?.ref) return "This search's photo is no longer on the server. Please upload it again.";
    if (query?.id) return "That product is no longer in the catalogue.";
  }
  return BY_REASON[error.reason] ?? BY_CODE[error.code] ?? FALLBACK;
}
