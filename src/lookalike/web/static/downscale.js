// Phone photos are large (8000x6000, several MB): they are scaled down here before the upload, with
// their EXIF orientation applied, so the upload is quick and the picture arrives the right way up. The
// model sees a few hundred pixels; MAX_SIDE keeps enough for a crop of one shoe out of an outfit.

export const MAX_SIDE = 2048;
const SMALL_ENOUGH_BYTES = 1_500_000;
const QUALITY = 0.9;

// The file to upload: `file` itself when it is small already (or not something the browser can draw, in
// which case the server says what is wrong with it), else a JPEG at most MAX_SIDE pixels on its long side.
export async function downscale(file) {
  if (!file.type.startsWith("image/") || file.type === "image/gif") return file;
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
  } catch {
    return file;
  }
  try {
    const scale = Math.min(1, MAX_SIDE / Math.max(bitmap.width, bitmap.height));
    if (scale === 1 && file.size <= SMALL_ENOUGH_BYTES) return file;
    const width = Math.max(1, Math.round(bitmap.width * scale));
    const height = Math.max(1, Math.round(bitmap.height * scale));
    const canvas = document.createElement("canvas");
    canvas.width = width;
    canvas.height = height;
    canvas.getContext("2d").drawImage(bitmap, 0, 0, width, height);
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", QUALITY));
    if (!blob) return file;
    const name = file.name ? file.name.replace(/\.[^.]*$/, "") + ".jpg" : "photo.jpg";
    return new File([blob], name, { type: "image/jpeg" });
  } finally {
    bitmap.close();
  }
}
