/** A raw HTTP/1.1 exchange over a socket, for what fetch cannot send (a lying Content-Length). */
import { connect } from "node:net";

/** Sends `head` (request line and headers, CRLF-separated, without the blank line) and returns the response text once the server answers or closes. */
export function rawRequest(port: number, head: string, body = ""): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    let data = "";
    const done = () => {
      socket.destroy();
      resolve(data);
    };
    socket.on("connect", () => socket.write(`${head}\r\n\r\n${body}`));
    socket.on("data", (chunk) => {
      data += chunk.toString("latin1");
      // One complete response with a Content-Length is enough.
      const end = data.indexOf("\r\n\r\n");
      const m = /content-length: (\d+)/i.exec(data);
      if (end >= 0 && m && data.length >= end + 4 + Number(m[1])) done();
    });
    socket.on("end", done);
    socket.on("error", reject);
  });
}
