// Cropping a region of the query photo: the shopper drags a box on the preview (mouse, pen or finger) and
// the page searches with that region. A box is fractions of the picture (left, top, right, bottom), so it
// means the same region at any size and travels in the address bar; the server crops (POST crop=...).
// Where the server's focus stage found the product, its box is drawn as the starting crop.

const MIN_SIDE = 0.05; // the server refuses smaller regions: nothing a model could recognise

export function attachCrop(frame, { onCrop }) {
  const box = frame.querySelector(".crop-box");
  let start = null;

  const point = (event) => {
    const rect = frame.querySelector("img").getBoundingClientRect();
    const x = Math.min(1, Math.max(0, (event.clientX - rect.left) / rect.width));
    const y = Math.min(1, Math.max(0, (event.clientY - rect.top) / rect.height));
    return [x, y];
  };
  const boxOf = ([x0, y0], [x1, y1]) => [Math.min(x0, x1), Math.min(y0, y1), Math.max(x0, x1), Math.max(y0, y1)];

  frame.addEventListener("pointerdown", (event) => {
    if (event.button !== 0 || !frame.querySelector("img").getAttribute("src")) return;
    event.preventDefault(); // no image drag, no text selection, no scrolling under a finger
    frame.setPointerCapture(event.pointerId);
    start = point(event);
    show(frame, boxOf(start, start), "drawing");
  });
  frame.addEventListener("pointermove", (event) => {
    if (start) show(frame, boxOf(start, point(event)), "drawing");
  });
  const finish = (event) => {
    if (!start) return;
    const region = boxOf(start, point(event));
    start = null;
    if (region[2] - region[0] < MIN_SIDE || region[3] - region[1] < MIN_SIDE) {
      box.hidden = true; // a click, not a drag: nothing to search
      frame.dispatchEvent(new CustomEvent("crop-cancel"));
      return;
    }
    show(frame, region, "chosen");
    onCrop(region);
  };
  frame.addEventListener("pointerup", finish);
  frame.addEventListener("pointercancel", () => {
    start = null;
    box.hidden = true;
  });
}

// Draws `region` (or hides the box for null); `kind` is chosen, suggested (the focus stage's) or drawing.
export function show(frame, region, kind = "chosen") {
  const box = frame.querySelector(".crop-box");
  box.hidden = !region;
  if (!region) return;
  const [left, top, right, bottom] = region;
  Object.assign(box.style, {
    left: `${left * 100}%`,
    top: `${top * 100}%`,
    width: `${(right - left) * 100}%`,
    height: `${(bottom - top) * 100}%`,
  });
  box.dataset.kind = kind;
}
