// Baseline: a Node `net` echo server.
//   node bench/servers/node_echo.mjs PORT
import net from "node:net";
import process from "node:process";

const port = Number(process.argv[2] ?? 0);
const server = net.createServer({ noDelay: true }, (socket) => {
  socket.on("error", () => socket.destroy());
  socket.pipe(socket);
});
server.listen({ host: "127.0.0.1", port, backlog: 1024 }, () => {
  console.log(`listening on 127.0.0.1:${server.address().port}`);
});
