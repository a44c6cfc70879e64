// Reference tus server for bench/transfer: @tus/server with the file store,
// on loopback only. Usage: node tus-reference.mjs PORT DIRECTORY
import { Server } from "@tus/server";
import { FileStore } from "@tus/file-store";

const [port, directory] = process.argv.slice(2);
if (!port || !directory) {
  console.error("usage: node tus-reference.mjs PORT DIRECTORY");
  process.exit(2);
}
const tus = new Server({
  path: "/files",
  datastore: new FileStore({ directory }),
});
const http = tus.listen({ host: "127.0.0.1", port: Number(port) }, () => {
  console.log(`tus reference listening on http://127.0.0.1:${port}/files`);
});
// Node's default 5-minute request timeout would cut a large single PATCH.
http.requestTimeout = 0;
http.headersTimeout = 60_000;
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => http.close(() => process.exit(0)));
}
