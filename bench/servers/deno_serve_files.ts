// The file handler a Deno user writes: Deno.serve, Deno.open, stat, and the
// file's readable stream as the body. Serves ROOT on 127.0.0.1:PORT.
//   deno run --allow-net --allow-read bench/servers/deno_serve_files.ts ROOT PORT

import { contentType } from "@std/media-types";

const [root, port] = [Deno.args[0], Number(Deno.args[1] ?? 0)];

Deno.serve({
  hostname: "127.0.0.1",
  port,
  onListen: (addr) => console.log(`listening on 127.0.0.1:${addr.port}`),
}, async (request) => {
  const path = decodeURIComponent(new URL(request.url).pathname);
  if (path.includes("..")) return new Response("bad request", { status: 400 });
  try {
    const file = await Deno.open(root + path);
    const info = await file.stat();
    const dot = path.lastIndexOf(".");
    return new Response(file.readable, {
      headers: {
        "content-length": String(info.size),
        "content-type": contentType(dot >= 0 ? path.slice(dot) : "") ??
          "application/octet-stream",
      },
    });
  } catch {
    return new Response("not found", { status: 404 });
  }
});
