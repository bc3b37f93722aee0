// A seekable image on a drive larger than itself (--size beyond the image): the bytes past the
// image's end read as zeros and count as a hole (a new drive already holds zeros there).
import type { ImageSource } from "../chunks/image.ts";

export function paddedTo(source: ImageSource, size: number): ImageSource {
  const end = source.size;
  const inner = source.dataMap;
  return {
    ...source,
    size,
    // reads past the end must not go to the file: the 2.0 POSTs read through read(), not the fd
    fd: undefined,
    dataMap: {
      nextData(from) {
        if (from >= end) return size;
        const next = inner ? inner.nextData(from) : from;
        return next >= end ? size : next;
      },
    },
    async read(buffer, length, position) {
      const inside = Math.max(0, Math.min(length, end - position));
      if (inside > 0) await source.read(buffer, inside, position);
      buffer.fill(0, inside, length);
    },
    reopen: source.reopen && (async () => paddedTo(await source.reopen!(), size)),
  };
}
