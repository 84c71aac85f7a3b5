// User photo validation: PNG or JPEG only, at most 2 MB and 1600x1200 (the spec's INVALID_PHOTO).
export const PHOTO_MAX_BYTES = 2 * 1024 * 1024;
export const PHOTO_MAX_WIDTH = 1600;
export const PHOTO_MAX_HEIGHT = 1200;

export interface ImageInfo { type: 'png' | 'jpg'; width: number; height: number }

const PNG_SIG = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** Reads the format and dimensions from the header; undefined when it is neither PNG nor JPEG. */
export function imageInfo(b: Buffer): ImageInfo | undefined {
  if (b.length >= 24 && b.subarray(0, 8).equals(PNG_SIG) && b.toString('latin1', 12, 16) === 'IHDR') {
    const width = b.readUInt32BE(16);
    const height = b.readUInt32BE(20);
    if (width === 0 || height === 0) return undefined;
    return { type: 'png', width, height };
  }
  if (b.length >= 4 && b[0] === 0xff && b[1] === 0xd8) {
    let i = 2;
    while (i + 3 < b.length) {
      if (b[i] !== 0xff) return undefined;
      while (b[i] === 0xff && i < b.length) i++; // fill bytes
      const m = b[i]!;
      i++;
      if (m === 0xd8 || m === 0x01 || (m >= 0xd0 && m <= 0xd7)) continue; // no length
      if (m === 0xd9 || m === 0xda) return undefined; // end / scan data before a frame header
      if (i + 2 > b.length) return undefined;
      const len = b.readUInt16BE(i);
      if (len < 2) return undefined;
      const isSof = m >= 0xc0 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc;
      if (isSof) {
        if (i + 7 > b.length) return undefined;
        const height = b.readUInt16BE(i + 3);
        const width = b.readUInt16BE(i + 5);
        if (width === 0 || height === 0) return undefined;
        return { type: 'jpg', width, height };
      }
      i += len;
    }
  }
  return undefined;
}

export function validPhoto(b: Buffer): ImageInfo | undefined {
  if (b.length === 0 || b.length > PHOTO_MAX_BYTES) return undefined;
  const info = imageInfo(b);
  if (!info || info.width > PHOTO_MAX_WIDTH || info.height > PHOTO_MAX_HEIGHT) return undefined;
  return info;
}
